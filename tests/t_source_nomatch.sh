#!/usr/bin/env bash
# A source whose glob matches no file bills nothing; often the service cannot see a directory the
# admin's shell sees (the unit's ProtectHome= and PrivateTmp=, docs/systemd.md). It is never
# silent:
#   - `check` warns, naming the source and whether its directory exists (exit 0: the
#     configuration is valid);
#   - `run` warns once at start in the same words;
#   - `status` (text and --json) shows the source with 0 files and why, and the number of files
#     once they appear.
. "$(dirname "$0")/lib.sh"
lm_init source_nomatch
double_start

CONF=$T/logmeter.conf
write_config "$CONF"
mkdir -p "$T/logs"
config_apache_bytes "$CONF" "$T/logs/*.log"
cat >>"$CONF" <<CONF
[source gone]
path = $T/missing/dir/app.log
[rule gone-bytes]
source = gone
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
CONF
# Not started by systemd (no INVOCATION_ID): no remark about the unit, whatever the directory.
unset INVOCATION_ID
missing="source gone: $T/missing/dir/app.log matches no file: its directory $T/missing/dir does not exist"
empty="source apache: $T/logs/*.log matches no file: its directory $T/logs has no file it matches"

# As the service (systemd sets INVOCATION_ID), under /tmp: a missing directory may be hidden by
# the unit's PrivateTmp=, and the warning says so; a directory it reads is merely empty, and the
# warning does not blame the unit.
case "$T" in /tmp/*)
	note "check as a systemd service"
	INVOCATION_ID=0123456789abcdef0123456789abcdef "$LOGMETER" check -c "$CONF" >"$T/check_unit.out" 2>"$T/check_unit.err" ||
		fail "check exited $?: $(cat "$T/check_unit.err")"
	grep -qF "warning: $missing (the systemd unit may hide /tmp from the service: ProtectHome=, PrivateTmp=; docs/systemd.md says how to allow it)" "$T/check_unit.err" ||
		fail "check as a service, a missing directory: $(cat "$T/check_unit.err")"
	grep -qxF "warning: $empty" "$T/check_unit.err" ||
		fail "check as a service, an empty directory: $(cat "$T/check_unit.err")"
	;;
esac

note "check"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" || fail "check exited $?: $(cat "$T/check.err")"
grep -qxF "warning: $missing" "$T/check.err" || fail "check warned: $(cat "$T/check.err")"
grep -qxF "warning: $empty" "$T/check.err" || fail "check warned: $(cat "$T/check.err")"

note "run"
agent_start "$CONF"
wait_until 30 grep -qF "warning: $missing; nothing is read from it until a file appears" "$T/agent.log" ||
	fail "no warning from run: $(cat "$T/agent.log")"
wait_until 30 grep -qF "warning: $empty; nothing is read from it until a file appears" "$T/agent.log" || fail "no warning from run: $(cat "$T/agent.log")"

note "status"
"$LOGMETER" status -c "$CONF" >"$T/status.out" 2>&1 || true
grep -qxF "  $missing (0 files)" "$T/status.out" || fail "status: $(sed -n '/^sources:/,/^files:/p' "$T/status.out")"
head -n 30 "$LOGS/elastic_apache_logs.log" >"$T/logs/access.log"
sed -n 31,40p "$LOGS/elastic_apache_logs.log" >"$T/logs/other.log"
want=$(cat "$T/logs/access.log" "$T/logs/other.log" | LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' | wc -l)
wait_until 60 accepted_at_least "$want" || fail "events: $(accepted_count) of $want"
"$LOGMETER" status -c "$CONF" >"$T/status.out" 2>&1 || true
grep -qxF "  source apache: $T/logs/*.log: 2 files" "$T/status.out" ||
	fail "status: $(sed -n '/^sources:/,/^files:/p' "$T/status.out")"
"$LOGMETER" status -c "$CONF" --json >"$T/status.json" || true
"$PYTHON3" -c '
import json, sys
s = {x["name"]: x for x in json.load(open(sys.argv[1]))["sources"]}
assert s["apache"]["files"] == 2 and s["apache"]["problem"] is None, s
assert s["gone"]["files"] == 0 and s["gone"]["problem"] == sys.argv[2], s
' "$T/status.json" "$missing" || fail "status --json: $(cat "$T/status.json")"
# Warned once, at start, not at every rescan.
assert_eq 1 "$(grep -cF "$missing" "$T/agent.log")" "warnings about source gone"
agent_stop || fail "the agent did not stop cleanly"
echo "t_source_nomatch: check, run and status name a source whose glob matches no file, and why"

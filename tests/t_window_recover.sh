#!/usr/bin/env bash
# One window's trouble must not stop every window from closing. When `spool recover` loses a
# window's row (here deleted before the recover, as a damaged page would lose it) but keeps its
# meter event, the windows made after it start their ids again, so a new window's place among the
# events (file, -window id) can be taken: it closes into a free place instead, is sent, and
# `run --once` ends.
. "$(dirname "$0")/lib.sh"
lm_init window_recover
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
printf '%s cus_A 1\n' "$(date +%s)" > "$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 2s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"

agent_once "$conf" || fail "the first run --once exited $?"
assert_eq 1 "$(accepted_count)" "events accepted by the first run"
sqlite3 "$T/state/spool.db" "DELETE FROM window_lines; DELETE FROM windows;" ||
	fail "cannot delete the window rows"
"$LOGMETER" spool recover -c "$conf" >> "$T/recover.out" 2>&1 || fail "spool recover failed: $(cat "$T/recover.out")"

printf '%s cus_B 3\n' "$(date +%s)" >> "$log"
rc=0
timeout 60 "$LOGMETER" run --once -c "$conf" >>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
assert_eq 0 "$rc" "run --once after spool recover"
expected=$(awk '{s[$2] += $3} END {for (c in s) print c, s[c]}' "$log" | sort)
got=$(awk -F'\t' '{s[$3] += $4} END {for (c in s) print c, s[c]}' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "totals accepted"
grep -q "its place in the spool was taken" "$T/agent.log" ||
	fail "test bug: the new window's place was free: $(tail -n 5 "$T/agent.log")"
if grep -q 'cannot close aggregation windows' "$T/agent.log"; then
	fail "closing windows failed: $(grep -m1 'cannot close' "$T/agent.log")"
fi

#!/usr/bin/env bash
# A spool in which two sources read the same file (written by a logmeter that did not keep
# sources apart, or by two configurations in turn): one source read it further than the other.
# The one that read it further goes on; the other's record, left behind, is never resumed, not
# even once the first one let the file go (rotated to a name only the other's glob matches):
# resumed, it would bill again every line the first one read since (docs/tailing.md, "One file,
# one source"). `status` shows the record left behind as left to the other source, without a lag.
#   setup: source all (app.log*) alone reads rids 1-100, then source live (app.log) alone, which
#          has no record of app.log, takes it over at all's checkpoint and reads rids 101-150;
#   then both sources: rids 151-200 appended, app.log rotated to app.log.1 (which only all's
#   glob matches), rids 201-220 in the new app.log, app.log.1 drained by live; a restart.
# Every rid must be accepted exactly once.
. "$(dirname "$0")/lib.sh"
lm_init source_stale
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0

mkdir -p "$T/logs"
L=$T/logs/app.log
# conf_with FILE SOURCE...: a configuration (the same state directory) with these sources.
conf_with() {
	write_config "$1"
	sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 1s/' "$1"
	sed -i 's/^rescan_interval = .*/rescan_interval = 1s/' "$1"
	local f=$1
	shift
	local s
	for s in "$@"; do
		case $s in
		all) rule_conf all "$L*" >>"$f" ;;
		live) rule_conf live "$L" >>"$f" ;;
		esac
	done
}
conf_with "$T/all.conf" all
conf_with "$T/live.conf" live
conf_with "$T/both.conf" live all
conf=$T/both.conf

put_rids "$L" 100
agent_once "$T/all.conf" || fail "run --once (all) exited $?"
put_rids "$L" 50
agent_once "$T/live.conf" || fail "run --once (live) exited $?"
assert_eq 150 "$(accepted_count)" "events of the setup (1-100 under all, 101-150 under live)"
grep -qF "$L: read up to offset $(head -n 100 "$L" | wc -c) by source all (its record is reading): source live goes on from there" \
	"$T/agent.log" || fail "live did not take app.log over: $(grep -F "$L" "$T/agent.log" | tail -3)"
billed=150

agent_start "$conf"
put_rids "$L" 50
billed=$((billed + 50))
wait_until 60 accepted_at_least "$billed" || fail "rids 151-200: $(accepted_count) of $billed"
mv "$L" "$L.1"
put_rids "$L" 20
billed=$((billed + 20))
wait_until 60 accepted_at_least "$billed" || fail "rids 201-220: $(accepted_count) of $billed"
drained() { [ "$(status_state "$conf" live "$L.1")" = drained ]; }
wait_until 60 drained || fail "app.log.1 never drained: $(status_state "$conf" live "$L.1")"
agent_stop || fail "agent exit $?"
# A restart scans every source's glob at once: all's glob matches app.log.1, of which all's
# record, left behind at rid 100, still describes the head and checkpoint.
agent_once "$conf" || fail "run --once (both) exited $?"

# Expected, computed apart: 1-220 once.
seq 1 220 >"$T/expected_rids"
cut -f4 "$T/accepted.tsv" | sort -n >"$T/accepted_rids"
diff -u "$T/expected_rids" "$T/accepted_rids" >"$T/diff_rids" ||
	fail "accepted rids differ (- lost, + billed again): $(grep '^[-+][0-9]' "$T/diff_rids" | head -10 | tr '\n' ' ')"
rids_of "$L.1" "$L" | sort -n | tr '\n' ' ' >"$T/file_rids"
assert_eq "$(seq 1 220 | tr '\n' ' ')" "$(cat "$T/file_rids")" "rids in the files (python)"

# status: all's record of app.log.1, left behind, is shown left to source live, with no lag.
"$LOGMETER" status -c "$conf" >"$T/status.txt" 2>&1 || true
uid=$(uid_of "$conf" all "$L.1")
[ -n "$uid" ] || fail "no record of source all for app.log.1"
awk -v u="$uid" '$0 ~ "identity " u { f = 1; next } f && /^  \// { f = 0 } f' "$T/status.txt" >"$T/rec.txt"
grep -q "lag 0 bytes" "$T/rec.txt" || fail "all's record left behind shows a lag: $(cat "$T/rec.txt")"
grep -qF "left to source live" "$T/rec.txt" || fail "all's record not shown left to live: $(cat "$T/rec.txt")"
echo "t_source_stale: rids 1-220 billed once; a record left behind by another source is not resumed and shows no lag"

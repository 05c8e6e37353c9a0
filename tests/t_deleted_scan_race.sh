#!/usr/bin/env bash
# A tailed log appended to and deleted while a scan (at start, or a rescan) reads it: the scan
# reads the file, then looks whether it was deleted and, if it was, released it as read to its
# end. Lines written between that read and that look were never read: the events that tell of
# them are handled after the release, when nothing holds the file any longer (seen in CI in
# unit/test_tail's test_watch: a rescan a rotation asked for came as the test appended to a file
# and deleted it). Here the moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_scan_read, docs/crash-testing.md): the agent stops itself after its scan
# at start read the log; a line is appended and the log deleted while it is stopped; SIGCONT.
# Every rid is billed once, the last one too, and the log is released.
. "$(dirname "$0")/lib.sh"
lm_init deleted_scan_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

# No periodic rescan during the test: the scan stopped at is the one at start.
race_conf g "$T/g/*.log"
G=$T/g/app.log
race_writer "$G" 20

note "the scan at start reads the log; stopped before it looks whether it was deleted"
LOGMETER_STOP_AT=watch_scan_read agent_start "$conf" 7>&-
stopped_at watch_scan_read 1
grep -q "g/app.log: tailing for source g" "$T/agent.log" || fail "the log was not opened"
writer_put 1
exec 7>&-
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" g "$G"
rm "$G"
kill -CONT "$AGENT_PID"
wait_until 60 delivered ||
	fail "the line written before the deletion was not billed: $(accepted_count) of $written accepted"
wait_until 60 grep -q "g/app.log: deleted and read to its end: released" "$T/agent.log" ||
	fail "the deleted log was not released"
agent_stop || fail "agent did not stop cleanly"

assert_eq 21 "$(wc -l < "$T/expected_rids")" "rids in the log"
check_accepted
echo "t_deleted_scan_race: $written rids each accepted once; the line written between a scan's read and the deletion was read before the release"

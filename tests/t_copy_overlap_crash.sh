#!/usr/bin/env bash
# copytruncate of app.log, read by source live, whose copy app.log.1 only another source's glob
# (old: app.log.*) matches, opened empty by source old (cp and cat create their output empty
# first): old's empty record of the copy, and an agent that dies after live read the original's
# rest from the copy and before old's tail read the copy (docs/tailing.md, copytruncate). The
# copy is live's record then, and old's empty record of it was left in the spool: old's tail,
# which deletes it at its first read (t_copy_overlap_race.sh), never ran. The next start must find
# the copy live's alone: no record of source old, every rid billed once under live's identifiers,
# and status without a record "left to" live. And the copy's record done at that start: the
# agent died after the copy was read to its end, and it was marked drained before that.
# The moments are made certain with the stop point watch_first_read (the agent stops after judging
# the empty copy; the copy is filled and the original truncated meanwhile) and the crash point
# tail_copy_read (the agent dies right after reading the copy as the original's rest), as in
# docs/crash-testing.md. The rescan is an hour away, so the agent reads the files in the order of
# their first inotify event: the original's (it grew before the copy was filled) first; the empty
# copy is renamed into place, so no event of its making is left in the queue at the stop.
. "$(dirname "$0")/lib.sh"
lm_init copy_overlap_crash
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf live "$T/r/app.log" old "$T/r/app.log.*"
R=$T/r/app.log
race_writer "$R" 20 # app.log has a record from the start: no file is opened empty but the copy

note "1: the copy opened empty by source old; the agent dies after live read the copy"
LOGMETER_STOP_AT=watch_first_read:1 LOGMETER_CRASH_AT=tail_copy_read:1 agent_start "$conf" 7>&-
wait_until 60 delivered || fail "first lines: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "first lines: the agent did not catch up"
# The copy made empty elsewhere and renamed in: one inotify event (IN_MOVED_TO), handled before
# the stop. `: >"$R.1"` makes three (IN_CREATE, IN_OPEN, IN_CLOSE_WRITE): one left in the queue
# at the stop, ahead of the original's, had source old's tail judge the filled copy first.
: >"$T/empty"
mv "$T/empty" "$R.1"
stopped() { grep -q "stop point watch_first_read reached (1)" "$T/agent.log"; }
wait_until 60 stopped || fail "the agent did not stop at its first read of the empty copy"
wait_until 30 agent_frozen || fail "the agent did not stop"
grep -q "r/app.log.1: tailing for source old from offset 0" "$T/agent.log" ||
	fail "the empty copy was not opened by source old"
writer_put 10 # lines the agent has not read: the original's event is the first in the queue
cat "$R" >>"$R.1"
truncate -s 0 "$R"
writer_put 5
kill -CONT "$AGENT_PID"
crashed() { grep -q "crash point tail_copy_read reached (1)" "$T/agent.log"; }
wait_until 60 crashed || fail "the agent did not die after reading the copy"
agent_kill9 # reaps it
grep -q "r/app.log: truncated in place: reading the .* from its copy .*/r/app.log.1" "$T/agent.log" ||
	fail "the original's rest was not read from the copy"
! grep -q -e "r/app.log.1: matched by the glob of source old" -e "r/app.log.1: holds what" \
	"$T/agent.log" || fail "test bug: source old's tail judged the filled copy before the crash"

note "2: the next start, then a restart, find the copy live's alone"
agent_start "$conf" 7>&-
wait_until 60 delivered || fail "2: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "2: the agent did not catch up"
# The copy was read to its end before the crash: its record is done (drained at its end), as
# after a copytruncate the agent lived through, not a file rotated away that status shows being
# read until rotate_wait (5 min here) has passed.
uid=$(uid_of "$conf" live "$R.1")
status_tsv "$conf" >"$T/status2.tsv"
assert_eq "drained $(stat -c %s "$R.1")" \
	"$(awk -F'\t' -v u="$uid" '$2 == u { print $3, $4 }' "$T/status2.tsv")" \
	"state and checkpoint of live's record of the copy at the next start"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-
agent_once "$conf" || fail "run --once exited $?"

: >"$T/expected_ids"
: >"$T/expected_rids"
expect_file "$conf" live "$R" "$R.1"
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids in the files"
check_accepted
# live's record of the copy read all of it, and stays done.
assert_eq "$uid" "$(uid_of "$conf" live "$R.1")" "live's record of the copy after the restart"
assert_eq "drained $(stat -c %s "$R.1")" \
	"$(status_tsv "$conf" | awk -F'\t' -v u="$uid" '$2 == u { print $3, $4 }')" \
	"state and checkpoint of live's record of the copy"
"$LOGMETER" status -c "$conf" >"$T/status.txt" 2>&1 || true
! grep -n "left to" "$T/status.txt" || fail "status shows a record of the copy left to live"
"$LOGMETER" status -c "$conf" --json >"$T/status.json" || true
"$PYTHON3" -c '
import json, sys
left = [f for f in json.load(open(sys.argv[1]))["files"] if f["left_to"] is not None]
sys.exit("records left to another source: %r" % left if left else 0)' "$T/status.json" ||
	fail "status --json shows a record left to another source"
[ -z "$(uid_of "$conf" old "$R.1")" ] || fail "source old has a record of the copy: $(spool_sql "$conf" "SELECT id, source, path, offset, state FROM files")"
"$LOGMETER" check -c "$conf" >"$T/check.out" 2>&1 || fail "check exited $?: $(cat "$T/check.out")"
echo "t_copy_overlap_crash: $written rids each accepted once, a copy opened empty by another source and the agent dead after reading it"

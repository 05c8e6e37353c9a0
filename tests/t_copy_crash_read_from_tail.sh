#!/usr/bin/env bash
# copytruncate of app.log (source live), its rest read from the copy app.log.1, and the agent dead
# before the truncated original got its new record (docs/tailing.md, copytruncate; docs/crash-
# testing.md): the original, truncated and written again, must be read from its start at the next
# start, also with `read_from = tail` (a file without a record is read from its end). Its record
# is made in the transaction that moves the old record onto the copy; without it, the lines
# written to the original after the truncation were never billed, with nothing logged.
# The crash point is COPY_CRASH_AT (default tail_copy_read:1: the copy read and its record
# drained; spool_commit_after:2: the copy's lines committed, the record not yet drained, see
# t_copy_crash_commit.sh), `read_from` of live at the next start COPY_READ_FROM (default tail).
# The moments are made certain as in t_copy_overlap_crash.sh, whose setup this is: the stop point
# watch_first_read (the agent stops after source old, whose glob app.log.* matches the copy,
# judged the copy empty; the copy is filled and the original truncated meanwhile). The rescan is
# an hour away, so the agent reads the files in the order of their first inotify event: the
# original's first; the empty copy is renamed into place, so no event of its making is left in
# the queue at the stop.
. "$(dirname "$0")/lib.sh"
crash_at=${COPY_CRASH_AT:-tail_copy_read:1}
read_from=${COPY_READ_FROM:-tail}
lm_init "copy_crash_${crash_at%%:*}_$read_from"
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf live "$T/r/app.log" old "$T/r/app.log.*"
R=$T/r/app.log
race_writer "$R" 20 # app.log has a record from the start: no file is opened empty but the copy

note "1: the agent dies at $crash_at while live reads the original's rest from its copy"
LOGMETER_STOP_AT=watch_first_read:1 LOGMETER_CRASH_AT=$crash_at agent_start "$conf" 7>&-
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
crashed() { grep -q "crash point ${crash_at%%:*} reached (${crash_at#*:})" "$T/agent.log"; }
wait_until 60 crashed || fail "the agent did not die after reading the copy"
agent_kill9 # reaps it
grep -q "r/app.log: truncated in place: reading the .* from its copy .*/r/app.log.1" "$T/agent.log" ||
	fail "the original's rest was not read from the copy"
# The crash came while the copy was read: after the read began, and before the original got
# the record reset() gives it (it logs that it reads it from its start).
sed -n '/truncated in place: reading the/,$p' "$T/agent.log" | grep -q "crash point ${crash_at%%:*}" ||
	fail "test bug: the agent died before it read the copy"
! grep -q "r/app.log: truncated after a copy" "$T/agent.log" ||
	fail "test bug: the agent died after the original's new record"
! grep -q -e "r/app.log.1: matched by the glob of source old" -e "r/app.log.1: holds what" \
	"$T/agent.log" || fail "test bug: source old's tail judged the filled copy before the crash"

note "2: the next start, read_from = $read_from, reads the original from its start"
# read_from of live from here: with tail, a file without a record is read from its end. The
# original, truncated and written again, must not be taken for one.
sed -i "s#^path = $T/r/app.log\$#&\nread_from = $read_from#" "$conf"
grep -q "^read_from = $read_from\$" "$conf" || fail "test bug: read_from not set"
agent_start "$conf" 7>&-
wait_until 60 delivered || fail "2: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "2: the agent did not catch up"
# The copy was read to its end before the crash: its record is at its end, drained if the crash
# came after read_copy marked it so (tail_copy_read), else still reading (a file rotated away,
# until rotate_wait, 5 min here, has passed).
copy_state=reading
[ "${crash_at%%:*}" != tail_copy_read ] || copy_state=drained
uid=$(uid_of "$conf" live "$R.1")
status_tsv "$conf" >"$T/status2.tsv"
assert_eq "$copy_state $(stat -c %s "$R.1")" \
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
# The original has one record of live: the one made with the move onto the copy, read from 0.
ino=$(stat -c %i "$R")
assert_eq 1 "$(spool_sql "$conf" "SELECT count(*) FROM files WHERE source = 'live' AND ino = ?" "$ino")" \
	"records of live of the original"
# live's record of the copy read all of it, and stays done.
assert_eq "$uid" "$(uid_of "$conf" live "$R.1")" "live's record of the copy after the restart"
assert_eq "$copy_state $(stat -c %s "$R.1")" \
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
echo "t_copy_crash_read_from_tail: $written rids each accepted once, the agent dead at $crash_at while reading the copy and started again with read_from = $read_from"

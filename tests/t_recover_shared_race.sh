#!/usr/bin/env bash
# A file another source reads is noted "shared" (matched by the globs of two sources: logged,
# counted in status, which says degraded, docs/tailing.md) only if it is the file the agent means
# to open. At start, a rename rotation while logmeter was stopped has left the file source rr was
# reading as app.log.1; the agent finds it there by its inode and opens it by that name, only if
# the name still leads to it (t_recover_rotated_race.sh). Between that look and the open, the file
# moved on to app.log.2 and another source's log (x.log, source x) was moved under the name. The
# agent asked which source reads the file under the name before it checked that it was the one
# it meant: it logged app.log.1 as matched by the glob of source rr (it is not: rr's glob is
# app.log), counted it as shared in status, and said degraded, for a file it never meant to
# open. The moment is made certain with a stop point (LOGMETER_STOP_AT=watch_recover_open,
# docs/crash-testing.md): the agent stops itself after finding the rotated file, before opening
# it; the files are moved while it is stopped; SIGCONT. No file is matched by two sources' globs
# (counted by python's fnmatch over the directory), so status counts none; the move is logged as
# such, and every rid is accepted once.
. "$(dirname "$0")/lib.sh"
lm_init recover_shared_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf rr "$T/rr/app.log" x "$T/rr/x.log"
L=$T/rr/app.log X=$T/rr/x.log
writer_init # lines appended by name (put_rids): the rotation moves the file written

put_rids "$L" 20
put_rids "$X" 5
# Written long before the record of app.log was last updated: not changed since, so the look for
# rotations never read beside the file found (t_unread_rotated_race.sh) leaves it alone, whatever
# the second the first run ends in.
touch -d '1 hour ago' "$X"
race_first_run

put_rids "$L" 10 # not read before the rotation
mv "$L" "$L.1"   # the rotation, while stopped
put_rids "$L" 5

LOGMETER_STOP_AT=watch_recover_open:1 agent_start "$conf"
stopped_at watch_recover_open 1 # after finding app.log.1, before opening it
grep -qF "$X: tailing for source x" "$T/agent.log" || fail "test bug: x.log is not read by source x"
mv "$L.1" "$L.2" # the file found moved on, between the look and the open
mv "$X" "$L.1"   # and source x's log, which its tail holds, under its former name
kill -CONT "$AGENT_PID"
settle "after the moves"

# Files matched by more than one source's glob, apart from the agent: none.
shared=$("$PYTHON3" -c '
import fnmatch, os, sys
d, globs = sys.argv[1], sys.argv[2:]
print(sum(1 for n in os.listdir(d)
          if sum(fnmatch.fnmatchcase(os.path.join(d, n), g) for g in globs) > 1))' \
	"$T/rr" "$T/rr/app.log" "$T/rr/x.log")
"$LOGMETER" status -c "$conf" --json >"$T/status.json" || true
assert_eq "$shared ok" "$("$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["guard"]["shared_files"], d["health"]["status"])' "$T/status.json")" \
	"status --json: files shared by two sources, health"
! grep -q "matched by the glob of source" "$T/agent.log" ||
	fail "a file logged as shared: $(grep "matched by the glob of source" "$T/agent.log")"
grep -q "rr/app.log.1: leads to another file .* (rotated meanwhile: looked for again)" \
	"$T/agent.log" || fail "the file moved under the name was not refused as another file"
grep -q "rr/app.log.2: rotated while logmeter was stopped: read to its end" "$T/agent.log" ||
	fail "the file found was not read under its new name"
agent_stop || fail "agent did not stop cleanly"

: >"$T/expected_ids"
: >"$T/expected_rids"
expect_file "$conf" rr "$L.2" "$L"
expect_file "$conf" x "$L.1"
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids in the files"
check_accepted
echo "t_recover_shared_race: $written rids each accepted once; the file moved under the name between the look and the open was not noted shared"

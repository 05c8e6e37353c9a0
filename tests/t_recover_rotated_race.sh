#!/usr/bin/env bash
# A rename rotation while logmeter is stopped leaves the file it was reading as app.log.1, with
# lines it has not read; at start the agent finds it there by its inode and opens it by that name
# to read it to its end. A second rotation at that moment (logrotate's daily run as the agent
# starts) moves it on to app.log.2 and the new app.log into app.log.1: the agent opened whatever
# app.log.1 led to then, the new file its glob tail already reads, and the rotated file's last
# lines were never read (lost). Here the moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_recover_open, docs/crash-testing.md): the agent stops itself after
# finding the rotated file, before opening it; the second rotation is made while it is stopped;
# SIGCONT. Every rid is accepted once.
. "$(dirname "$0")/lib.sh"
lm_init recover_rotated_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf rr "$T/rr/app.log"
L=$T/rr/app.log
writer_init # lines appended by name (put_rids): the rotations move the file written

put_rids "$L" 20
race_first_run

put_rids "$L" 10 # not read before the rotation
mv "$L" "$L.1"   # rotation 1, while stopped
put_rids "$L" 5

LOGMETER_STOP_AT=watch_recover_open:1 agent_start "$conf"
stopped_at watch_recover_open 1 # after finding the rotated file, before opening it
mv "$L.1" "$L.2" # rotation 2, between the look and the open
mv "$L" "$L.1"
put_rids "$L" 3
kill -CONT "$AGENT_PID"
settle "after the second rotation"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rr "$L.2" "$L.1" "$L"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
grep -q "rr/app.log.1: leads to another file .* (rotated meanwhile: looked for again)" \
	"$T/agent.log" || fail "the second rotation was not noticed"
echo "t_recover_rotated_race: $written rids each accepted once; the file rotated again between its look and its open was read to its end"

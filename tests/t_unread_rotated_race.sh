#!/usr/bin/env bash
# Two rename rotations while logmeter is stopped: the file it was reading is app.log.2, with lines
# it has not read, and app.log.1 is the log that came after it, never read. At start the agent
# finds app.log.2 by its inode, judges app.log.1 a rotation never read (no record, content no
# record describes) and opens it by that name to read it to its end. Rotations at that moment
# (logrotate's runs as the agent starts) move it on to app.log.3 and another file into app.log.1:
# the agent opened whatever app.log.1 led to then, and the file it had judged was never read
# (its lines lost). Here the moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_unread_open, docs/crash-testing.md): the agent stops itself after
# judging app.log.1, before opening it; two more rotations are made while it is stopped (the
# judged file then has a name the directory did not hold when the agent began to look through
# it, whatever order readdir gives); SIGCONT. Every rid is accepted once.
. "$(dirname "$0")/lib.sh"
lm_init unread_rotated_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf ur "$T/ur/app.log"
L=$T/ur/app.log
writer_init # lines appended by name (put_rids): the rotations move the file written

put_rids "$L" 20
race_first_run

put_rids "$L" 10 # not read before the rotations
mv "$L" "$L.1"   # rotation 1, while stopped
put_rids "$L" 5  # never read: judged at start
rotate_numbered "$L"
mv "$L" "$L.1" # rotation 2, while stopped
put_rids "$L" 4

LOGMETER_STOP_AT=watch_unread_open:1 agent_start "$conf"
stopped_at watch_unread_open 1 # after judging app.log.1, before opening it
grep -q "ur/app.log.1: leads to another file" "$T/agent.log" &&
	fail "test bug: a rotation before the stop point"
rotate_numbered "$L" # rotation 3, between the look and the open
mv "$L" "$L.1"
put_rids "$L" 2
rotate_numbered "$L" # rotation 4
mv "$L" "$L.1"
put_rids "$L" 3
kill -CONT "$AGENT_PID"
settle "after the rotations at start"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" ur "$L.4" "$L.3" "$L.2" "$L.1" "$L"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
grep -q "ur/app.log.1: leads to another file .* (rotated meanwhile: looked for again)" \
	"$T/agent.log" || fail "the rotations at start were not noticed"
grep -q "ur/app.log.3: rotated from .*ur/app.log while logmeter was stopped, and never read" \
	"$T/agent.log" || fail "the rotation never read was not read under its new name"
echo "t_unread_rotated_race: $written rids each accepted once; the rotation never read, moved on between its look and its open, was read to its end"

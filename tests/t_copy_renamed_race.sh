#!/usr/bin/env bash
# A copy of a tailed log under the glob (`*.log`), made by cp while the agent runs and renamed
# before the agent's first read of it: `cp app.log tmp.log && mv tmp.log app.log.1`, or a rotation
# that shifts the copy while the agent is behind. cp creates its output empty, so the agent opens
# the copy empty and judges it (is it the copy of a file it tails?) when its first bytes come.
# That judgement looked at what the copy's name led to at that moment, not at the file the tail
# holds open: a copy renamed between the event and the look was judged by its former name (gone,
# or another file there now), found no copy, and read as a new file, every line of it billed a
# second time. Here the moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_first_look, docs/crash-testing.md): the agent stops itself when the copy
# it opened empty has bytes, before it judges them; the copy is renamed while it is stopped;
# SIGCONT.
#   1. the copy renamed to a name the glob does not match (copy.old)
#   2. the copy renamed to another name the glob matches (copy3.log), a new empty file created
#      under its former name (copy2.log)
# Every rid is billed once, under the original's identifiers, and no line is read from a copy.
. "$(dirname "$0")/lib.sh"
lm_init copy_renamed_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf g "$T/g/*.log"
G=$T/g/app.log
race_writer "$G" 20
# The original has a record after the first run: no file but the copies is opened empty, so every
# stop below is a copy's.
race_first_run watch_first_look:1,watch_first_look:2 "$G"

stops() { grep -c "stop point watch_first_look reached" "$T/agent.log"; }
# copy_stopped NAME N: NAME made empty and opened so by the agent, then filled with what the
# original holds; the agent stopped at the N-th look at a file opened empty, and frozen.
copy_stopped() {
	local name=$1 n=$2
	: > "$T/g/$name"
	wait_until 60 grep -q "g/$name: tailing for source g from offset 0" "$T/agent.log" ||
		fail "$name was not opened empty"
	cat "$G" >> "$T/g/$name"
	at_stop() { [ "$(stops)" -ge "$n" ]; }
	wait_until 60 at_stop || fail "the agent did not stop at its look at $name ($n)"
	wait_until 30 agent_frozen || fail "the agent did not stop"
	cmp -s "$G" "$T/g/$name" || fail "test bug: $name is no copy of the original"
}

note "1: the copy renamed out of the glob before the agent looked at its bytes"
copy_stopped copy.log 1
mv "$T/g/copy.log" "$T/g/copy.old"
kill -CONT "$AGENT_PID"
writer_put 10
settle "1, after the copy"

note "2: the copy renamed within the glob, a new empty file under its former name"
copy_stopped copy2.log 2
mv "$T/g/copy2.log" "$T/g/copy3.log"
: > "$T/g/copy2.log"
kill -CONT "$AGENT_PID"
writer_put 5
settle "2, after the copy"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" g "$G"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the original"
check_accepted
grep -q "g/copy.log (inode [0-9]*, renamed since): holds what .*/g/app.log held" "$T/agent.log" ||
	fail "1: copy.old not taken for a copy"
grep -q "g/copy3.log: holds what .*/g/app.log held" "$T/agent.log" ||
	fail "2: copy3.log not taken for a copy"
assert_eq 0 "$(status_sum "$conf" 8 '$1 ~ /\/copy[0-9]*\.(log|old)$/')" "lines matched in the copies"
echo "t_copy_renamed_race: $written rids each accepted once; copies renamed before the agent looked at them were taken for copies"

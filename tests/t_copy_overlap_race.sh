#!/usr/bin/env bash
# copytruncate of app.log, read by source live, whose copy app.log.1 only another source's glob
# (old: app.log.*) matches, with the copy opened empty (cp and cat create their output empty
# first) by source old. The copy's lines are app.log's, read by live (docs/tailing.md, "One file,
# one source"), and billed once whichever of the two files the agent reads first. Before, when
# the original's truncation was seen first, live read its rest from the copy (the copy became
# live's record) while old's tail of the empty copy, waiting for its first bytes, then read the
# whole copy as a new file of source old: every line of the copy billed twice (about once in three
# runs of t_source_overlap.sh under ASan). The moment is made certain with the stop point
# LOGMETER_STOP_AT=watch_first_read (docs/crash-testing.md): the agent stops itself right after
# judging the empty copy, before its first read; the copy is filled and the original truncated
# while it is stopped; SIGCONT. The rescan is an hour away, so the agent reads the files in the
# order of their first inotify event (as in t_copy_empty_race.sh).
#   1. the original's event first (it grew before the copy was made): live reads the original,
#      finds it truncated and reads its rest from the copy; old's tail of the copy reads nothing
#   2. the copy's event first (the agent was up to date): the copy is judged first, taken for the
#      original's copy, and the original's truncation seen after it
# Then a restart (run --once): the copies are found read by live, not read again by old. Every rid
# is billed once, under live's identifiers (tests/identifiers.py from the offsets in the files),
# and source old has no record of either copy.
. "$(dirname "$0")/lib.sh"
lm_init copy_overlap_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf live "$T/r/app.log" old "$T/r/app.log.*"
R=$T/r/app.log
race_writer "$R" 20 # app.log has a record from the start: no file is opened empty but the copy

# stopped_at_empty_copy N: the copy app.log.1 made empty, the agent stopped at its first read of
# it (the N-th stop line in the log: one per agent start).
stops() { grep -c "stop point watch_first_read reached (1)" "$T/agent.log"; }
stopped_at_empty_copy() {
	local n=$1
	# Made empty elsewhere and renamed in: one inotify event (IN_MOVED_TO), handled before the
	# stop. `: >"$R.1"` makes three (IN_CREATE, IN_OPEN, IN_CLOSE_WRITE), and one left in the
	# queue at the stop came before the original's: in 1 the copy was judged first.
	: >"$T/empty"
	mv "$T/empty" "$R.1"
	stopped() { [ "$(stops)" -ge "$n" ]; }
	wait_until 60 stopped || fail "the agent did not stop at its first read of the empty copy"
	wait_until 30 agent_frozen || fail "the agent did not stop"
	grep -q "r/app.log.1: tailing for source old from offset 0" "$T/agent.log" ||
		fail "the empty copy was not opened by source old"
}

note "1: the copy filled while the agent stopped at its first read; the original read first"
LOGMETER_STOP_AT=watch_first_read:1 agent_start "$conf" 7>&-
settle "1, first lines"
stopped_at_empty_copy 1
writer_put 10 # lines the agent has not read: the original's event is the first in the queue
cat "$R" >>"$R.1"
truncate -s 0 "$R"
writer_put 5
kill -CONT "$AGENT_PID"
settle "1, after the copy"
mv "$R.1" "$T/r/app.log.2" # still matched by old: the restart below must not read it either
agent_stop || fail "agent did not stop cleanly"
cp "$T/agent.log" "$T/agent1.log"

note "2: the copy filled while the agent stopped at its first read; the copy usually judged first"
LOGMETER_STOP_AT=watch_first_read:1 agent_start "$conf" 7>&-
settle "2, first lines"
stopped_at_empty_copy 2
cat "$R" >>"$R.1" # the agent read all of the original: the copy's event is the first
truncate -s 0 "$R"
writer_put 5
kill -CONT "$AGENT_PID"
settle "2, after the copy"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

note "3: a restart finds both copies read by live"
agent_once "$conf" || fail "run --once exited $?"

: >"$T/expected_ids"
: >"$T/expected_rids"
expect_file "$conf" live "$R" "$T/r/app.log.2" "$R.1"
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids in the files"
check_accepted
for f in "$T/r/app.log.2" "$R.1"; do
	[ -z "$(uid_of "$conf" old "$f")" ] || fail "source old has a record of $f"
	assert_eq drained "$(status_state "$conf" live "$f")" "the state of live's record of $f"
done
grep -q "r/app.log: truncated in place: reading the .* from its copy .*/r/app.log.1" "$T/agent1.log" ||
	fail "1: the original's rest was not read from the copy"
grep -q "r/app.log.1: matched by the glob of source old .* but read by source live" "$T/agent1.log" ||
	fail "1: source old's tail did not leave the copy to live: $(grep 'app.log.1' "$T/agent1.log")"
tail -n +"$(($(wc -l <"$T/agent1.log") + 1))" "$T/agent.log" |
	grep -q -e "r/app.log.1: holds what .*/r/app.log held" -e "from its copy .*/r/app.log.1" ||
	fail "2: the copy was not recognised as one"
echo "t_copy_overlap_race: $written rids each accepted once, copies another source's glob matches filled at the agent's first read"

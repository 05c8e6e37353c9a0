#!/usr/bin/env bash
# copytruncate under a glob that matches the copies (`app.log*`) with the copy opened while still
# empty (cp and cat create their output empty first): the agent's first read of the copy raced
# with the copy being filled. The agent judges a file it opened empty (is it the copy of a file it
# tails?) by the size it sees then; an empty file is no copy of anything, and a read that came a
# moment later found the copy filled and read it as a new file, billing every line of it a second
# time (once from the original, once from the copy). Seen about once in 12 runs of t_copy_glob.sh
# under ASan on a busy machine. Here the moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_first_read, docs/crash-testing.md): the agent stops itself right after
# judging the empty copy, before its first read; the copy is filled and the original truncated
# while it is stopped; SIGCONT. The rescan is an hour away, so after that the agent reads the files
# in the order of their first inotify event (docs/tailing.md). Every rid is billed once.
#   1. the original's event first (it grew before the copy was made): the original is read first,
#      found truncated, and its rest read from the copy, which becomes its record
#   2. the copy's event first (the agent was up to date): the copy is judged first, taken for the
#      original's copy, and the original's truncation seen after it
. "$(dirname "$0")/lib.sh"
lm_init copy_empty_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf r "$T/r/app.log*"
R=$T/r/app.log
race_writer "$R" 20 # the original has a record from the start: no file is opened empty but the copy

# stopped_at_empty_copy N: the copy app.log.1 made empty, the agent stopped at its first read of
# it (the N-th stop line in the log: one per agent start).
stops() { grep -c "stop point watch_first_read reached (1)" "$T/agent.log"; }
stopped_at_empty_copy() {
	local n=$1
	: > "$R.1"
	stopped() { [ "$(stops)" -ge "$n" ]; }
	wait_until 60 stopped || fail "the agent did not stop at its first read of the empty copy"
	wait_until 30 agent_frozen || fail "the agent did not stop"
	grep -q "r/app.log.1: tailing for source r from offset 0" "$T/agent.log" ||
		fail "the empty copy was not opened"
}

note "1: the copy filled while the agent stopped at its first read; the original read first"
LOGMETER_STOP_AT=watch_first_read:1 agent_start "$conf" 7>&-
settle "1, first lines"
stopped_at_empty_copy 1
writer_put 10 # lines the agent has not read: the original's event is the first in the queue
cat "$R" >> "$R.1"
truncate -s 0 "$R"
writer_put 5
kill -CONT "$AGENT_PID"
settle "1, after the copy"
mv "$R.1" "$T/copy1" # out of the glob: part 2 makes its own app.log.1
agent_stop || fail "agent did not stop cleanly"
cp "$T/agent.log" "$T/agent1.log"

note "2: the copy filled while the agent stopped at its first read; the copy usually judged first"
LOGMETER_STOP_AT=watch_first_read:1 agent_start "$conf" 7>&-
settle "2, first lines"
stopped_at_empty_copy 2
cat "$R" >> "$R.1" # the agent read all of the original: the copy's event is the first
truncate -s 0 "$R"
writer_put 5
kill -CONT "$AGENT_PID"
settle "2, after the copy"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

# Every rid written once, under the identifier its file's record gives it: each copy is its
# original's record, which read it up to the truncation (tests/identifiers.py from the offsets).
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" r "$R" "$T/copy1" "$R.1"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq 0 "$(status_sum "$conf" 14)" "checkpoint resets"
# The copy of part 1 was the place of the original's rest; that of part 2 was taken for a copy,
# or, when the agent woke to the original's truncation first (the scheduler's choice on a loaded
# machine), the place of its rest: either way recognised, and the billing above exact.
grep -q "r/app.log: truncated in place: reading the .* from its copy .*/r/app.log.1" "$T/agent1.log" ||
	fail "1: the original's rest was not read from the copy"
tail -n +"$(($(wc -l < "$T/agent1.log") + 1))" "$T/agent.log" |
	grep -q -e "r/app.log.1: holds what .*/r/app.log held" -e "from its copy .*/r/app.log.1" ||
	fail "2: the copy was not recognised as one"
echo "t_copy_empty_race: $written rids each accepted once with copies filled at the agent's first read"

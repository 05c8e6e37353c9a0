#!/usr/bin/env bash
# copytruncate under a glob that matches the copies (`*`), the original closed to stay within
# max_open_files while it had read nothing yet (it was empty when opened): a copy made of its
# first lines before logmeter read them is a copy, not a new file, though the original's record
# tells nothing yet and the original is not held open (docs/tailing.md, Limits). The agent is
# frozen (SIGSTOP) while the original is written and copied, and the periodic rescan is an hour
# away, so the copy is judged before the original is read. Every rid is billed once: those of the
# original's first lines neither twice (from the copy as a new file, and from the original) nor
# lost; then the truncation, and lines after it.
. "$(dirname "$0")/lib.sh"
lm_init copy_closed
. "$top_srcdir/tests/tail_lib.sh"
double_start

MAX_OPEN=16
race_conf c "$T/c/*"
sed -i "s/^\[agent\]$/[agent]\nmax_open_files = $MAX_OPEN/" "$conf"
C=$T/c/app.log
race_writer "$C"
agent_start "$conf" 7>&-
wait_until 60 grep -q "c/app.log: tailing for source c from offset 0" "$T/agent.log" ||
	fail "the empty original was not opened"

# More files than max_open_files, each read after the original was opened: the original, the
# least recently read, is closed.
for i in $(seq -w 1 $MAX_OPEN); do put_rids "$T/c/f$i.log" 2; done
wait_until 60 delivered || fail "the other files: $(accepted_count) of $written accepted"
closed() { ! open_fds "$AGENT_PID" | grep -qxF "$C"; }
wait_until 60 closed || fail "the original was not closed (max_open_files)"

note "frozen: the original written and copied, the copy judged before the original is read"
kill -STOP "$AGENT_PID"
wait_until 30 agent_frozen || fail "the agent did not stop"
writer_put 30
cp "$C" "$C.1"
kill -CONT "$AGENT_PID"
wait_until 60 delivered || fail "after the copy: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
# Every event made is delivered before the count is compared: twice-billed lines would be there.
all_sent() { [ "$(spooled_count "$conf")" = "$(accepted_count)" ]; }
wait_until 60 all_sent || fail "events still waiting to be delivered"
assert_eq "$written" "$(accepted_count)" "events accepted after the copy (the original's lines once)"

note "the truncation, and lines after it"
truncate -s 0 "$C"
writer_put 5
wait_until 60 delivered || fail "after the truncation: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up after the truncation"
wait_until 60 all_sent || fail "events still waiting to be delivered after the truncation"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" c "$C" "$C.1" "$T"/c/f*.log
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids expected"
assert_eq "$written" "$(cat "$C" "$C.1" "$T"/c/f*.log | awk '/ rid=[0-9]+$/ { n++ } END { print n }')" "rid lines (awk)"
check_accepted
echo "t_copy_closed: $written rids each accepted once, the copy of a closed original that had read nothing"

#!/usr/bin/env bash
# copytruncate under a glob that matches the copies (`app.log*`), with the order in which the agent
# reads the original and the copy made certain: the agent is frozen (SIGSTOP) while the files
# change, and the periodic rescan is an hour away, so after SIGCONT it reads the files in the
# order of their first inotify event in the queue (one batch, read in the order the files were
# marked changed, docs/tailing.md). Every rid is billed once, none is lost.
#   1. the copy seen empty (cp creates its output empty first): then, frozen, the original grows,
#      the copy is filled and the original truncated to nothing; the original is read first (its
#      rest from the copy), then the copy's first bytes; then the original is written again
#   2. the copy made while the original has lines not read yet and grows after the copy (the copy
#      holds bytes past the original's checkpoint, the original not read when the copy is judged)
#   3. the same, and the original truncated and written again before the agent thaws (lines
#      written between copy and truncation are the method's known loss); the copy comes with the
#      inode of the last one, which was recorded as read to its end, as when logrotate deletes the
#      last copy and ext4 gives its inode to the next one
#   4. two copytruncates in a row while frozen (app.log.1 renamed to app.log.2, a new app.log.1)
#   5. frozen across a copytruncate and the first half of the next one (app.log.1 renamed to
#      app.log.2, the grown original copied to a new app.log.1), the second truncation made once
#      the agent has seen the first: app.log.1 is judged while the original's record is still the
#      one before the first truncation, and holds what the original's next record reads
#   6. the agent stopped instead of frozen: copy made, original grown and truncated, then a start
. "$(dirname "$0")/lib.sh"
lm_init copy_order
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf r "$T/r/app.log*"
R=$T/r/app.log
race_writer "$R"
agent_start "$conf" 7>&-

freeze() {
	kill -STOP "$AGENT_PID"
	wait_until 30 agent_frozen || fail "the agent did not stop"
}
# settle WHAT: every line written (but the window's) accepted, every record read to its end.
note "1: the copy seen empty, filled while frozen; the truncated original read first"
: > "$R.1"
writer_put 20 # queued after the copy's events: once it is read, they were handled
settle "1, first lines"
grep -q "r/app.log.1: tailing for source r from offset 0" "$T/agent.log" ||
	fail "the empty copy was not opened"
freeze
writer_put 10 # the original's first event in the queue: it is read first
cat "$R" >> "$R.1"
truncate -s 0 "$R"
kill -CONT "$AGENT_PID"
wait_until 60 grep -q "r/app.log: truncated after a copy" "$T/agent.log" ||
	fail "1: the truncation was not seen"
settle "1, after the copy"
writer_put 5 # the original's new record must still be there
settle "1, the original written again"
mv "$R.1" "$T/copy1" # out of the glob: each later part makes its own app.log.1

note "2: the copy holds bytes past the original's checkpoint, the original not read yet"
freeze
writer_put 30
cp "$R" "$R.1"
writer_put 5
kill -CONT "$AGENT_PID"
settle "2"
wait_until 60 grep -q "r/app.log.1: holds what" "$T/agent.log" || fail "2: the copy was not taken for one"
cp "$R" "$T/snap2" # read from the original, which is truncated now
snap2_uid=$(uid_of "$conf" r "$R")
truncate -s 0 "$R"
wait_until 60 caught_up "$conf" || fail "2: the agent did not catch up after the truncation"
wait_until 60 grep -q "r/app.log.1: a copy of what .* recorded as read to its end" "$T/agent.log" ||
	fail "2: the copy was not recorded as read to its end"

note "3: the same, the original truncated and written again before the agent thaws"
writer_put 4
settle "3, first lines"
ino=$(stat -c %i "$R.1")
freeze
writer_put 30
# The last copy goes and the next one comes with its inode, as ext4 gives a deleted file's inode
# to the next file created; here made certain: moved out of the directory, written over, moved back.
mv "$R.1" "$T/next_copy"
cp "$R" "$T/next_copy"
mv "$T/next_copy" "$R.1"
assert_eq "$ino" "$(stat -c %i "$R.1")" "the copy's inode"
writer_window 5
truncate -s 0 "$R"
writer_put 10
kill -CONT "$AGENT_PID"
settle "3"
mv "$R.1" "$T/copy3"

note "4: two copytruncates in a row while frozen"
writer_put 6
settle "4, first lines"
freeze
writer_put 30
cp "$R" "$R.1"
truncate -s 0 "$R"
writer_put 10
mv "$R.1" "$R.2"
cp "$R" "$R.1"
truncate -s 0 "$R"
writer_put 5
kill -CONT "$AGENT_PID"
settle "4"
mv "$R.1" "$T/copy4a"
mv "$R.2" "$T/copy4b"

note "5: frozen across a copytruncate and the first half of the next; truncated after the thaw"
writer_put 6
settle "5, first lines"
freeze
cp "$R" "$R.1"
truncate -s 0 "$R"
writer_put 57
mv "$R.1" "$R.2"
cp "$R" "$R.1"
truncations() { grep -c "r/app.log: truncated after a copy" "$T/agent.log"; }
seen=$(truncations)
kill -CONT "$AGENT_PID"
# The second truncation only once the agent has handled the thaw's events (the first truncation).
first_seen() { [ "$(truncations)" -gt "$seen" ]; }
wait_until 60 first_seen ||
	fail "5: the first truncation was not seen"
truncate -s 0 "$R"
settle "5"
mv "$R.1" "$T/copy5a"
mv "$R.2" "$T/copy5b"

note "6: copy, growth and truncation while the agent is stopped"
writer_put 7
settle "6, first lines"
agent_stop || fail "agent did not stop cleanly"
writer_put 30
cp "$R" "$R.1"
truncate -s 0 "$R"
writer_put 10
agent_start "$conf" 7>&-
settle "6"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

# Every rid written (but the window's) once, each under the identifier its file's record gives
# it: the files as they are now, and the lines read from originals since truncated.
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" r "$R" "$T/copy1" "$T/copy3" "$T/copy4a" "$T/copy4b" "$T/copy5a" "$T/copy5b" "$R.1"
expect_from r "$snap2_uid" "$T/snap2" 0
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids expected (all written but the window's)"
check_accepted
assert_eq 0 "$(grep -c 'FOREIGN KEY' "$T/agent.log")" "spool errors"
echo "t_copy_order: $written rids each accepted once in six orderings of copy, growth and truncation"

#!/usr/bin/env bash
# copytruncate followed, before the agent looks, by new lines that make the file exactly as long
# as it was (as long as the agent's checkpoint): the size alone shows no truncation, so the agent
# must tell it from the modification it is told of (inotify, or a rescan) and the bytes before its
# checkpoint, not wait for a further write (docs/tailing.md). The agent is frozen (SIGSTOP) across
# the copy, the truncation and the new lines, so that it sees them all at once; the periodic rescan
# is an hour away and nothing is written after the thaw. Every rid is billed once, none is lost:
#   1. the glob matches the live name only (app.log), the copy is app.log.1
#   2. the same again, app.log.1 shifted to app.log.2 first
#   3. a glob that matches the copies too (app.log*): the copy is judged as a copy, not read again
. "$(dirname "$0")/lib.sh"
lm_init copy_same_size
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf a "$T/a/app.log" b "$T/b/app.log*"
A=$T/a/app.log
B=$T/b/app.log

# put_exactly FILE SIZE: rid lines appended to FILE (empty) until it is SIZE bytes long, the last
# one padded to fit (a real nginx line's first field, padding, its rid); the writer's counts follow.
put_exactly() {
	local file=$1 size=$2 n=0 line
	while :; do
		line=$(lines "$rid" 1)
		# Room left for this line and a padded last line of at least 64 bytes.
		[ $(($(stat -c %s "$file") + ${#line} + 1 + 64)) -le "$size" ] || break
		printf '%s\n' "$line" >> "$file"
		rid=$((rid + 1))
		written=$((written + 1))
		n=$((n + 1))
	done
	local left=$((size - $(stat -c %s "$file")))
	local tail_part=" rid=$rid"
	local pad=$((left - ${#tail_part} - 1 - 9)) # "10.9.8.7 " before the padding, "\n" after
	[ "$pad" -gt 0 ] || fail "test bug: no room for the last line"
	printf '10.9.8.7 %s%s\n' "$(head -c "$pad" /dev/zero | tr '\0' x)" "$tail_part" >> "$file"
	rid=$((rid + 1))
	written=$((written + 1))
	assert_eq "$size" "$(stat -c %s "$file")" "the file's size after the new lines"
	[ "$n" -gt 0 ] || fail "test bug: too short for two lines"
}
freeze() {
	kill -STOP "$AGENT_PID"
	wait_until 30 agent_frozen || fail "the agent did not stop"
}
# same_size_copytruncate FILE WHAT: frozen, FILE copied to FILE.1 and truncated, then written
# again to exactly its old size; thawed, and every line billed with no further write.
same_size_copytruncate() {
	local file=$1 size
	size=$(stat -c %s "$file")
	freeze
	rotate_numbered "$file"
	cp "$file" "$file.1"
	truncate -s 0 "$file"
	put_exactly "$file" "$size"
	kill -CONT "$AGENT_PID"
	settle "$2"
}

writer_init
put_rids "$A" 30
put_rids "$B" 30
agent_start "$conf"
settle "first lines"

note "1: the live name only"
same_size_copytruncate "$A" 1
grep -q "a/app.log: truncated after a copy" "$T/agent.log" || fail "1: the truncation was not logged"

note "2: the same again"
put_rids "$A" 7
settle "2, first lines"
same_size_copytruncate "$A" 2

note "3: a glob that matches the copies too"
same_size_copytruncate "$B" 3
agent_stop || fail "agent did not stop cleanly"

# Every rid once, each under the identifier its file's record gives it (the copies hold the lines
# read from the originals before their truncation, under the originals' records).
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" a "$A" "$A.1" "$A.2"
expect_file "$conf" b "$B" "$B.1"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
assert_eq "$written" "$(cat "$A" "$A.1" "$A.2" "$B" "$B.1" | awk '/ rid=[0-9]+$/ { n++ } END { print n }')" "rid lines (awk)"
check_accepted
echo "t_copy_same_size: $written rids each accepted once across three same-size copytruncates"

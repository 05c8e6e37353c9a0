#!/usr/bin/env bash
# Rotation by rename and create (logrotate's default), with a writer that keeps its descriptor
# and goes on writing to the renamed file until it reopens its log: once, twice in quick
# succession, and once while logmeter is stopped. Two sources in one agent: "live" whose glob
# matches only the live name (rotated files are read to their end, then released as drained),
# and "all" whose glob also matches the rotated names (a renamed file keeps its identity).
# Every rid written is accepted once, under the identifier of its file's uid and byte offset.
. "$(dirname "$0")/lib.sh"
lm_init rotation
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/a" "$T/b"
write_config "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 2s/' "$T/logmeter.conf"
{
	rule_conf live "$T/a/access.log"
	rule_conf all "$T/b/access.log*"
} >> "$T/logmeter.conf"

rid=1
# write X COUNT: the next COUNT rids to descriptor 7 (dir a), the same plus 100000 to 8 (dir b).
write() {
	lines "$rid" "$2" >&7
	lines $((rid + 100000)) "$2" >&8
	rid=$((rid + $2))
}
# shift_rotated DIR: access.log.N -> access.log.N+1, from the oldest.
shift_rotated() {
	local n
	for n in 5 4 3 2 1; do
		[ ! -e "$1/access.log.$n" ] || mv "$1/access.log.$n" "$1/access.log.$((n + 1))"
	done
}
# rotate COUNT-BETWEEN: both dirs: rename, COUNT lines still written to the renamed file, create,
# reopen.
rotate() {
	shift_rotated "$T/a"
	shift_rotated "$T/b"
	mv "$T/a/access.log" "$T/a/access.log.1"
	mv "$T/b/access.log" "$T/b/access.log.1"
	write x "$1"
	: > "$T/a/access.log"
	: > "$T/b/access.log"
	exec 7>>"$T/a/access.log" 8>>"$T/b/access.log"
}
delivered() {
	accepted_at_least $((2 * (rid - 1)))
}

exec 7>>"$T/a/access.log" 8>>"$T/b/access.log"
agent_start "$T/logmeter.conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 grep -q 'started' "$T/agent.log" || fail "agent did not start"
write x 50
wait_until 60 delivered || fail "first 50 lines not delivered: $(accepted_count)"

note "rotation by rename and create"
write x 10
rotate 10
write x 10
wait_until 60 delivered || fail "after one rotation: $(accepted_count) of $((2 * (rid - 1)))"

note "two rotations in quick succession"
rotate 5
write x 5
rotate 5
write x 5
wait_until 60 delivered || fail "after two quick rotations: $(accepted_count) of $((2 * (rid - 1)))"

# The rotated files of "live" are released once drained (no descriptor kept); those of "all" are
# still matched by its glob, so still read.
pid=$AGENT_PID
wait_until 60 eval '! open_fds "$pid" | grep -q "^$T/a/access.log\.[0-9]"' ||
	fail "rotated files still held open: $(open_fds "$pid" | grep "$T/a/" | tr '\n' ' ')"
for f in "$T"/a/access.log.*; do
	assert_eq drained "$(status_state "$T/logmeter.conf" live "$f")" "state of $f"
done
for f in "$T"/b/access.log*; do
	assert_eq reading "$(status_state "$T/logmeter.conf" all "$f")" "state of $f"
done

note "rotation while logmeter is stopped"
agent_stop || fail "agent did not stop cleanly"
write x 20
rotate 10
write x 10
exec 7>&- 8>&-
agent_start "$T/logmeter.conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 delivered || fail "after a rotation while stopped: $(accepted_count) of $((2 * (rid - 1)))"
wait_until 60 eval '! open_fds "$AGENT_PID" | grep -q "^$T/a/access.log\.[0-9]"' ||
	fail "rotated files still held open after the restart"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$T"/a/access.log*; do expect_file "$T/logmeter.conf" live "$f"; done
for f in "$T"/b/access.log*; do expect_file "$T/logmeter.conf" all "$f"; done
assert_eq $((2 * (rid - 1))) "$(wc -l < "$T/expected_rids")" "rids on disk"
check_accepted

# Counters: every line read once, none skipped, no checkpoint reset.
for src in live all; do
	assert_eq $((rid - 1)) "$(status_sum "$T/logmeter.conf" 7 "\$15 == \"$src\"")" "$src: lines"
	assert_eq $((rid - 1)) "$(status_sum "$T/logmeter.conf" 8 "\$15 == \"$src\"")" "$src: matched"
	assert_eq 0 "$(status_sum "$T/logmeter.conf" 14 "\$15 == \"$src\"")" "$src: resets"
	assert_eq 0 "$(status_sum "$T/logmeter.conf" 6 "\$15 == \"$src\"")" "$src: lag"
done
assert_eq "$(ls "$T/a" | wc -l)" "$(status_tsv "$T/logmeter.conf" | awk -F'\t' '$15 == "live"' | wc -l)" "records of live"
echo "t_rotation: $((rid - 1)) rids through 4 rotations (one while stopped), in two sources, each accepted once"

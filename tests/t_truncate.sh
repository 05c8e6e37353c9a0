#!/usr/bin/env bash
# A file truncated in place to a size that keeps lines already billed (truncate -s; also how
# some free the disk space of a big log gradually): the lines kept are not billed again, and what
# is appended after the truncation is billed once, under a new uid (its lines start at offsets the
# old lines had). Three cases: a short file cut at a line end while the agent runs (shorter than
# the 1 KiB fingerprint: recognised by the head mark of that line end), a longer one cut inside a
# line (recognised by its fingerprinted head), and a cut while logmeter is stopped, lines
# appended before it starts (the file then starts with the lines it had, up to the cut).
. "$(dirname "$0")/lib.sh"
lm_init truncate
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/tr"
write_config "$T/logmeter.conf"
rule_conf tr "$T/tr/*.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
: > "$T/expected_ids"
: > "$T/expected_rids"

# The record being read of FILE has no lag, and its checkpoint is at the file's end.
caught_up() {
	[ "$(status_sum "$conf" 6 '$3 == "reading"')" = 0 ] &&
		[ "$(spool_sql "$conf" "SELECT max(\"offset\") FROM files WHERE path = ? AND state = 'reading'" "$1")" = "$(stat -c %s "$1")" ]
}
size_of_lines() { # FILE N: the bytes of FILE's first N lines
	head -n "$2" "$1" | wc -c
}
# cut_running FILE CUT FIRST COUNT: while the agent runs, FILE (read to its end) is cut to CUT
# bytes, and once the agent has seen that, COUNT lines from rid FIRST are appended; what was read
# before is expected under the old uid, what comes after the cut under the new one.
cut_running() {
	local f=$1 cut=$2 uid1 uid2
	cp "$f" "$T/before"
	uid1=$(uid_of "$conf" tr "$f")
	truncate -s "$cut" "$f"
	wait_until 60 grep -q "${f##*/}: truncated in place to $cut bytes" "$T/agent.log" ||
		fail "the truncation of $f was not recognised"
	lines "$3" "$4" >> "$f"
	wait_until 60 caught_up "$f" || fail "$f: the lines after the truncation were not read"
	uid2=$(uid_of "$conf" tr "$f")
	[ "$uid1" != "$uid2" ] || fail "$f kept its uid after the truncation"
	expect_from tr "$uid1" "$T/before" 0
	expect_from tr "$uid2" "$f" "$cut"
}

agent_start "$conf"
wait_until 60 grep -q 'started' "$T/agent.log" || fail "agent did not start"

note "a short file cut at a line end while the agent runs"
A=$T/tr/a.log
lines 1 3 > "$A"
wait_until 60 caught_up "$A" || fail "a.log: the first 3 lines were not read"
lines 4 7 >> "$A"
wait_until 60 caught_up "$A" || fail "a.log: lines 4 to 10 were not read"
[ "$(size_of_lines "$A" 3)" -lt 1024 ] || fail "test bug: 3 lines take more than the fingerprint"
cut_running "$A" "$(size_of_lines "$A" 3)" 11 5

note "a longer file cut inside a line while the agent runs"
B=$T/tr/b.log
lines 101 20 > "$B"
wait_until 60 caught_up "$B" || fail "b.log was not read"
cut_b=$(( $(size_of_lines "$B" 12) - 30 )) # inside line 12
[ "$cut_b" -gt 1024 ] || fail "test bug: b.log cut within its fingerprint"
cut_running "$B" "$cut_b" 121 4

note "a file cut while logmeter is stopped"
C=$T/tr/c.log
lines 201 10 > "$C"
wait_until 60 caught_up "$C" || fail "c.log was not read"
agent_stop || fail "agent did not stop cleanly"
cp "$C" "$T/c.before"
uid_c1=$(uid_of "$conf" tr "$C")
cut_c=$(size_of_lines "$C" 5)
truncate -s "$cut_c" "$C"
lines 211 3 >> "$C"
agent_start "$conf"
wait_until 60 caught_up "$C" || fail "c.log: the lines after the truncation were not read"
uid_c2=$(uid_of "$conf" tr "$C")
expect_from tr "$uid_c1" "$T/c.before" 0
expect_from tr "$uid_c2" "$C" "$cut_c"

n=$(wc -l < "$T/expected_rids")
wait_until 60 accepted_at_least "$n" || fail "only $(accepted_count) of $n events delivered"
sleep 1 # a line billed twice would arrive now
agent_stop || fail "agent did not stop cleanly"
check_accepted
# A truncation that kept what was read is no checkpoint reset; one found already written again
# (while stopped) is, since the file cannot tell where it was cut: it was warned about.
grep -q "c.log: checkpoint at [0-9]* no longer matches the file, which still starts with the $cut_c bytes" "$T/agent.log" ||
	fail "the truncation of c.log while stopped was not warned about"
assert_eq 1 "$(status_sum "$conf" 14)" "checkpoint resets"
assert_eq 3 "$(status_tsv "$conf" | awk -F'\t' '$3 == "gone"' | wc -l)" "retired records"
echo "t_truncate: $n rids through three truncations that kept lines, each accepted once"

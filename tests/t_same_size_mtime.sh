#!/usr/bin/env bash
# A file truncated and written again to exactly the length the agent read, whose modification time
# is then set back to the very value it had when the agent last read it (`touch -r`, or `cp -p`
# over it): its size and mtime say nothing changed, but its status change time (ctime), which no
# user can set, does. The agent must read the new lines (docs/tailing.md, "Truncated and written
# back to the same size"). The file's mtime is an hour old when the agent first reads it, so that
# the agent trusts it (not a "racy" mtime of the same second); the agent is frozen (SIGSTOP)
# across the truncation, the new lines and the touch; the rescan is an hour away and nothing is
# written after the thaw.
. "$(dirname "$0")/lib.sh"
lm_init same_size_mtime
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/a"
write_config "$T/logmeter.conf"
sed -i 's/^rescan_interval = .*/rescan_interval = 60m/' "$T/logmeter.conf"
rule_conf a "$T/a/app.log" >>"$T/logmeter.conf"
conf=$T/logmeter.conf
A=$T/a/app.log

# put_exactly FILE SIZE: rid lines appended to FILE until it is SIZE bytes long, the last one
# padded to fit.
put_exactly() {
	local file=$1 size=$2 line
	while :; do
		line=$(lines "$rid" 1)
		[ $(($(stat -c %s "$file") + ${#line} + 1 + 64)) -le "$size" ] || break
		printf '%s\n' "$line" >>"$file"
		rid=$((rid + 1))
		written=$((written + 1))
	done
	local left=$((size - $(stat -c %s "$file"))) tail_part=" rid=$rid"
	local pad=$((left - ${#tail_part} - 1 - 9))
	[ "$pad" -gt 0 ] || fail "test bug: no room for the last line"
	printf '10.9.8.7 %s%s\n' "$(head -c "$pad" /dev/zero | tr '\0' x)" "$tail_part" >>"$file"
	rid=$((rid + 1))
	written=$((written + 1))
	assert_eq "$size" "$(stat -c %s "$file")" "the file's size after the new lines"
}

writer_init
put_rids "$A" 30
touch -d '1 hour ago' "$A"
agent_start "$conf"
wait_until 60 delivered || fail "first lines: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "first lines: the agent did not catch up"

size=$(stat -c %s "$A")
kill -STOP "$AGENT_PID"
wait_until 30 agent_frozen || fail "the agent did not stop"
touch -r "$A" "$T/mtime_ref"
: >"$A"
put_exactly "$A" "$size"
touch -r "$T/mtime_ref" "$A"
assert_eq "$(stat -c %y "$T/mtime_ref")" "$(stat -c %y "$A")" "the mtime set back"
kill -CONT "$AGENT_PID"
wait_until 60 delivered ||
	fail "the lines written back to the same size with the same mtime: $(accepted_count) of $written accepted"
agent_stop || fail "agent did not stop cleanly"

# Every rid once: the values the double accepted are the rids of the lines written (the first
# ones are gone from the file, truncated; their rids are 1..30), computed apart from the agent.
{
	seq 1 30
	rids_of "$A"
} | sort -n >"$T/expected_rids"
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids written"
cut -f4 "$T/accepted.tsv" | sort -n >"$T/accepted_rids"
cmp -s "$T/expected_rids" "$T/accepted_rids" ||
	fail "accepted rids differ: $(diff "$T/expected_rids" "$T/accepted_rids" | head -5)"
echo "t_same_size_mtime: $written rids each accepted once, the mtime set back across a same-size rewrite"

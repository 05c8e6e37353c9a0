#!/usr/bin/env bash
# 1. A file truncated and written again to exactly the length the agent read, whose modification time
# is then set back to the very value it had when the agent last read it (`touch -r`, or `cp -p`
# over it): its size and mtime say nothing changed, but its status change time (ctime), which no
# user can set, does. The agent must read the new lines (docs/tailing.md, "Truncated and written
# back to the same size"). The file's mtime is an hour old and its ctime some seconds when the
# agent first reads it, so that the agent trusts them (not "racy"); the agent is frozen (SIGSTOP)
# across the truncation, the new lines and the touch; the rescan is an hour away and nothing is
# written after the thaw.
# 2. The same to one of 20 files while it is closed for max_open_files (16), its events lost in an
# inotify queue overflow: the rescan must see it changed (its ctime) and reopen it.
. "$(dirname "$0")/lib.sh"
lm_init same_size_mtime
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf a "$T/a/app.log"
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

# ctime_old FILE: FILE's ctime at least 3 s old, so that a read now vouches for it (no racy
# ctime): the test then shows the ctime compared, not the racy rule (for wait_until).
ctime_old() { [ $(($(date +%s) - $(stat -c %Z "$1"))) -ge 3 ]; }

writer_init
put_rids "$A" 30
touch -d '1 hour ago' "$A"
wait_until 30 ctime_old "$A" || fail "test bug: the ctime does not age"
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

note "2: the same, to a file closed for max_open_files, whose events are lost (queue overflow)"
# 20 files, 16 held open: the rescan after the overflow reopens a closed file only if it changed
# since its last read (watch.c changed()), which its size and mtime do not show.
first_m=$rid
limit=$(cat /proc/sys/fs/inotify/max_queued_events)
[ "$limit" -gt 0 ] && [ "$limit" -le 1000000 ] || skip "max_queued_events is $limit"
mkdir -p "$T/m"
conf2=$T/logmeter2.conf
write_config "$conf2"
sed -i "s|^state_dir = .*|state_dir = $T/state2|" "$conf2"
sed -i 's/^rescan_interval = .*/rescan_interval = 60m/' "$conf2"
sed -i 's/^\[agent\]$/[agent]\nmax_open_files = 16/' "$conf2"
rule_conf m "$T/m/*.log" >>"$conf2"
for i in $(seq -w 1 20); do
	put_rids "$T/m/f$i.log" 5
	touch -d '1 hour ago' "$T/m/f$i.log"
done
wait_until 30 ctime_old "$T/m/f20.log" || fail "test bug: the ctime does not age"
agent_start "$conf2"
wait_until 60 delivered || fail "2: first lines: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf2" || fail "2: the agent did not catch up"
closed=
for i in $(seq -w 1 20); do
	open_fds "$AGENT_PID" | grep -qxF "$T/m/f$i.log" || { closed=$T/m/f$i.log; break; }
done
[ -n "$closed" ] || fail "2: no file closed for max_open_files: $(open_fds "$AGENT_PID" | grep -c '/m/')"
note "2: $closed is closed"
size=$(stat -c %s "$closed")
kill -STOP "$AGENT_PID"
wait_until 30 agent_frozen || fail "the agent did not stop"
"$PYTHON3" -c '
import sys
n = int(sys.argv[2])
a = open(sys.argv[1] + "/junk1.txt", "w", buffering=1)
b = open(sys.argv[1] + "/junk2.txt", "w", buffering=1)
for i in range(n):
    a.write("x\n")
    b.write("y\n")' "$T/m" $((limit / 2 + 1000))
touch -r "$closed" "$T/mtime_ref2"
: >"$closed"
put_exactly "$closed" "$size"
touch -r "$T/mtime_ref2" "$closed"
kill -CONT "$AGENT_PID"
wait_until 60 grep -q "the inotify event queue overflowed" "$T/agent.log" || fail "2: no overflow"
wait_until 60 delivered ||
	fail "2: the closed file written back to the same size and mtime: $(accepted_count) of $written accepted"
agent_stop || fail "agent did not stop cleanly"

# Every rid once: the values the double accepted are the rids of the lines written (the first
# ones are gone from the file, truncated; their rids are 1..30), computed apart from the agent.
{
	seq 1 30
	rids_of "$A"
	rids_of "$T"/m/*.log
	seq "$first_m" "$((first_m + 20 * 5 - 1))" # the closed file's first lines, truncated
} | sort -n | uniq >"$T/expected_rids"
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids written"
cut -f4 "$T/accepted.tsv" | sort -n >"$T/accepted_rids"
cmp -s "$T/expected_rids" "$T/accepted_rids" ||
	fail "accepted rids differ: $(diff "$T/expected_rids" "$T/accepted_rids" | head -5)"
echo "t_same_size_mtime: $written rids each accepted once, the mtime set back across a same-size rewrite"

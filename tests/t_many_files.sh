#!/usr/bin/env bash
# Many files: 1,000 files matched by one glob, each appended to in two rounds while the agent
# runs with max_open_files = 64. Every rid is accepted once, the agent never holds more than 64
# log files open (sampled from /proc/PID/fd all along), and its memory does not grow with the
# rounds (checked without sanitizers, whose quarantine holds freed memory on purpose).
. "$(dirname "$0")/lib.sh"
lm_init many_files
. "$top_srcdir/tests/tail_lib.sh"
double_start

N=1000
MAX_OPEN=64
mkdir -p "$T/m"
write_config "$T/logmeter.conf"
sed -i "s/^\[agent\]$/[agent]\nmax_open_files = $MAX_OPEN/; s/^max_requests_per_second = .*/max_requests_per_second = 5000/" "$T/logmeter.conf"
rule_conf many "$T/m/*.log" >> "$T/logmeter.conf"

rid=1
# round: one line appended to each of the N files (opened, appended, closed, as loggers that
# reopen do), the rids following on.
round() {
	lines "$rid" "$N" | "$PYTHON3" -c '
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i, line in enumerate(sys.stdin.buffer):
    with open("%s/f%04d.log" % (d, i % n), "ab") as f:
        f.write(line)' "$T/m" "$N"
	rid=$((rid + N))
}
delivered() {
	accepted_at_least $((rid - 1))
}
rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

round
agent_start "$T/logmeter.conf"
pid=$AGENT_PID
# The sampler: the most log files and descriptors open at once, until told to stop.
(
	max_logs=0 max_fds=0
	while [ ! -e "$T/sampler.stop" ] && kill -0 "$pid" 2>/dev/null; do
		ls -l "/proc/$pid/fd" 2>/dev/null | grep -- ' -> ' > "$T/fds.now" || true
		logs=$(grep -c -- " -> $T/m/" "$T/fds.now" || true)
		fds=$(wc -l < "$T/fds.now")
		[ "$logs" -le "$max_logs" ] || max_logs=$logs
		[ "$fds" -le "$max_fds" ] || max_fds=$fds
		echo "$max_logs $max_fds" > "$T/sampler.max"
		sleep 0.1
	done
) &
sampler=$!
wait_until 120 delivered || fail "the first lines of $N files not delivered: $(accepted_count) of $((rid - 1))"
rss1=$(rss_kb "$pid")
for r in 2 3; do
	round
	wait_until 120 delivered || fail "round $r not delivered: $(accepted_count) of $((rid - 1))"
done
rss2=$(rss_kb "$pid")
touch "$T/sampler.stop"
wait "$sampler" || true
read -r max_logs max_fds < "$T/sampler.max"
tails=$(grep -c "tailing for source many" "$T/agent.log")
agent_stop || fail "agent did not stop cleanly"

note "log files open at most: $max_logs, descriptors at most: $max_fds, RSS $rss1 kB after the first round, $rss2 kB after the last"
# max_open_files bounds the files kept open; the copy check of a new file opens it and, if its
# original was closed, the original for a moment (config.c's help says so): two more at most.
[ "$max_logs" -le $((MAX_OPEN + 2)) ] ||
	fail "$max_logs log files open at once, more than max_open_files ($MAX_OPEN) + 2 for a copy check"
[ "$max_logs" -ge $((MAX_OPEN / 2)) ] || fail "test bug: only $max_logs log files seen open"
[ "$max_fds" -le $((MAX_OPEN + 40)) ] || fail "$max_fds descriptors open at once"
assert_eq "$N" "$tails" "files opened as new tails (each once: closed ones are resumed, not reopened as new)"
if [ -z "${ASAN_OPTIONS:-}" ]; then
	[ $((rss2 - rss1)) -le 16384 ] || fail "RSS grew by $((rss2 - rss1)) kB over two rounds"
	[ "$rss2" -le 131072 ] || fail "RSS $rss2 kB with $N files"
fi

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$T/logmeter.conf" many "$T"/m/*.log
assert_eq $((rid - 1)) "$(wc -l < "$T/expected_rids")" "rids written"
check_accepted
assert_eq $((rid - 1)) "$(status_sum "$T/logmeter.conf" 8)" "matched lines"
assert_eq 0 "$(status_sum "$T/logmeter.conf" 14)" "checkpoint resets"
assert_eq 0 "$(status_sum "$T/logmeter.conf" 6)" "lag"
echo "t_many_files: $((rid - 1)) rids in $N files accepted once, at most $max_logs of them open at once (limit $MAX_OPEN)"

#!/usr/bin/env bash
# inotify's limits, for real:
#   1. the event queue overflows (IN_Q_OVERFLOW) while the agent is frozen: more events than
#      fs.inotify.max_queued_events, then a new file (its IN_CREATE lost) and appends; the
#      overflow's rescan finds and reads everything (the periodic rescan is an hour away)
#   2. the watch limit is reached: the agent runs in a user namespace of its own whose
#      user.max_inotify_watches is 1 (so no other process is affected), with three directories:
#      inotify_add_watch fails with ENOSPC for two, a warning says so, and lines appended there
#      are found by the periodic stat checks (the rescan again an hour away)
#   3. the same limit with a short rescan: a new file in an unwatched directory is found by the
#      periodic rescan
# Every rid is accepted once.
. "$(dirname "$0")/lib.sh"
lm_init inotify_limits
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/q" "$T/w/d1" "$T/w/d2" "$T/w/d3"
write_config "$T/logmeter.conf"
sed -i 's/^rescan_interval = .*/rescan_interval = 60m/' "$T/logmeter.conf"
{
	rule_conf q "$T/q/*.log"
	rule_conf w "$T/w/*/app.log"
} >> "$T/logmeter.conf"

rid=1
written=0
put() { # put FILE COUNT
	lines "$rid" "$2" >> "$1"
	rid=$((rid + $2))
	written=$((written + $2))
}
delivered() {
	accepted_at_least "$written"
}

note "1: the event queue overflows"
put "$T/q/app.log" 10
agent_start "$T/logmeter.conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
limit=$(cat /proc/sys/fs/inotify/max_queued_events)
[ "$limit" -gt 0 ] && [ "$limit" -le 1000000 ] || skip "max_queued_events is $limit"
kill -STOP "$AGENT_PID"
# kill returns before every thread has stopped: one still running could drain the queue.
wait_until 30 agent_frozen || fail "the agent did not stop"
# Writes to two files in turn: consecutive identical events would be merged into one.
"$PYTHON3" -c '
import sys
n = int(sys.argv[2])
a = open(sys.argv[1] + "/junk1.txt", "w", buffering=1)
b = open(sys.argv[1] + "/junk2.txt", "w", buffering=1)
for i in range(n):
    a.write("x\n")
    b.write("y\n")' "$T/q" $((limit / 2 + 1000))
put "$T/q/new.log" 10
put "$T/q/app.log" 10
kill -CONT "$AGENT_PID"
wait_until 60 delivered || fail "after the overflow: $(accepted_count) of $written"
grep -q "the inotify event queue overflowed: events were lost; rescanning" "$T/agent.log" ||
	fail "no overflow reported"
agent_stop || fail "agent did not stop cleanly"

note "2: the watch limit reached (ENOSPC), periodic stat checks"
command -v unshare >/dev/null 2>&1 || skip "unshare not found"
unshare --user --map-root-user sh -c 'echo 1 > /proc/sys/user/max_inotify_watches' 2>/dev/null ||
	skip "cannot set a watch limit in a user namespace here"
# limited_agent WATCHES CONF: the agent in a user namespace with that watch limit.
limited_agent() {
	local conf=$2
	_lm_check_agent
	unshare --user --map-root-user sh -c \
		'echo "$1" > /proc/sys/user/max_inotify_watches && exec "$2" run -c "$3"' \
		sh "$1" "$LOGMETER" "$conf" >>"$T/agent.out" 2>>"$T/agent.log" &
	AGENT_PID=$!
}
for d in d1 d2 d3; do put "$T/w/$d/app.log" 5; done
: > "$T/agent.log"
limited_agent 1 "$T/logmeter.conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
grep -q "cannot watch: the inotify watch limit (fs.inotify.max_user_watches) is reached" "$T/agent.log" ||
	fail "no warning about the watch limit"
for round in 1 2 3; do
	for d in d1 d2 d3; do put "$T/w/$d/app.log" 3; done
	wait_until 60 delivered || fail "round $round in unwatched directories: $(accepted_count) of $written"
done
agent_stop || fail "agent did not stop cleanly"

note "3: the same limit, a new file in an unwatched directory found by the periodic rescan"
sed -i 's/^rescan_interval = .*/rescan_interval = 1s/' "$T/logmeter.conf"
limited_agent 1 "$T/logmeter.conf"
wait_until 60 grep -q 'started' "$T/agent.log" || fail "agent did not start"
put "$T/w/d3/app.log" 3
mkdir "$T/w/d4"
put "$T/w/d4/app.log" 5
wait_until 60 delivered || fail "the new file in an unwatched directory: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$T"/q/*.log; do expect_file "$T/logmeter.conf" q "$f"; done
for f in "$T"/w/*/app.log; do expect_file "$T/logmeter.conf" w "$f"; done
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids written"
check_accepted
assert_eq "$written" "$(status_sum "$T/logmeter.conf" 8)" "matched lines"
assert_eq 0 "$(status_sum "$T/logmeter.conf" 14)" "checkpoint resets"
echo "t_inotify_limits: $written rids through a queue overflow and a watch limit of 1, each accepted once"

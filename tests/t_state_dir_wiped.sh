#!/usr/bin/env bash
# The state directory, or the spool in it, removed under a running agent (a tmp cleaner,
# configuration management, an operator "resetting" it): the agent's lock file and spool are then
# unlinked inodes that keep no second agent out and that nobody will read again.
#   - a second agent is refused while the first runs, although the lock file it would take is a
#     new one (agent.lock removed, or the whole directory; the first is stopped with SIGSTOP
#     meanwhile, so that it cannot notice first);
#   - status does not say "the agent has not run yet" while one runs;
#   - the first agent notices (its directory, lock file and spool are no longer the inodes it
#     opened) and stops with exit status 1 and a clear error, leaving spool.id with its spool's id,
#     so that the next start is refused (exit 2) instead of billing every line again as new;
#   - with spool.db alone removed, lines appended afterwards are not committed into the removed
#     file, the agent stops with exit status 1, and nothing is ever billed twice.
. "$(dirname "$0")/lib.sh"
lm_init state_dir_wiped
double_start

mkdir -p "$T/logs"
log=$T/logs/access.log
head -n 200 "$LOGS/elastic_apache_logs.log" >"$log"
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$log"
S=$T/state
n=$(apache_bytes_count "$log")

# stops_with_error PID PATTERN: the agent PID exits by itself (within 30 s), with exit status 1,
# having logged PATTERN (grep).
stops_with_error() {
	local pid=$1 rc=0
	wait_until 30 sh -c "! kill -0 $pid 2>/dev/null" || fail "the agent still runs: $(tail -n 3 "$T/agent.log")"
	wait "$pid" || rc=$?
	AGENT_PID=
	assert_eq 1 "$rc" "the agent's exit status"
	grep -q "$2" "$T/agent.log" || fail "no clear error: $(tail -n 5 "$T/agent.log")"
}

agent_start "$conf"
wait_until 60 accepted_at_least "$n" || fail "first lines: $(accepted_count) of $n"
assert_accepted_once "$conf" "$log"

note "agent.lock removed under a running agent"
lockholder=$AGENT_PID
kill -STOP "$lockholder"
# kill returns before every thread has stopped: one still running could see the lock file go and
# stop the agent before the second one starts.
wait_until 30 agent_frozen || fail "the agent did not stop"
rm "$S/agent.lock"
rc=0
timeout 60 "$LOGMETER" run -c "$conf" >"$T/second.out" 2>"$T/second.log" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a second agent ran beside the first (exit $rc): $(cat "$T/second.log")"
grep -q "another logmeter is already running with state_dir $S" "$T/second.log" ||
	fail "the second agent said: $(cat "$T/second.log")"
kill -CONT "$lockholder"
stops_with_error "$lockholder" "error: the lock file $S/agent.lock .*while logmeter ran.*: stopping"
# The spool is whole: a new start goes on from its checkpoints, billing nothing again.
: >"$T/agent.log"
agent_once "$conf" || fail "run --once after the lock file went: exit $?"
assert_accepted_once "$conf" "$log"

: >"$T/agent.log"
agent_start "$conf"
wait_until 30 grep -q "started: instance" "$T/agent.log" || fail "the agent did not start"
id=$(head -n 1 "$S/spool.id")
first=$AGENT_PID

note "the state directory wiped under a running agent"
kill -STOP "$first"
rm -rf "$S"
rc=0
"$LOGMETER" status -c "$conf" >"$T/status.out" 2>&1 || rc=$?
assert_eq 1 "$rc" "status's exit status"
! grep -q "has not run yet" "$T/status.out" || fail "status says: $(cat "$T/status.out")"
grep -qF "no spool in state_dir $S, but a logmeter runs on it" "$T/status.out" || fail "status says: $(cat "$T/status.out")"
# A second agent, with the first one alive: refused, nothing billed.
rc=0
timeout 60 "$LOGMETER" run -c "$conf" >"$T/second.out" 2>"$T/second.log" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a second agent ran beside the first (exit $rc): $(cat "$T/second.log")"
grep -q "another logmeter is already running with state_dir $S" "$T/second.log" ||
	fail "the second agent said: $(cat "$T/second.log")"
[ ! -e "$S/spool.db" ] || fail "the refused agent made a spool"
kill -CONT "$first"
# The first notices within seconds, by itself.
stops_with_error "$first" "error: state_dir $S .*while logmeter ran.*: stopping"
assert_eq "$id" "$(head -n 1 "$S/spool.id" 2>/dev/null)" "the spool id left in the state directory"
# The next start is refused, as for any lost spool: nothing is read again as new. Exit status 2,
# which the unit does not restart on: only an operator can settle it.
rc=0
agent_once "$conf" || rc=$?
assert_eq 2 "$rc" "a start after the wipe"
grep -q "spool $S/spool.db is missing, but this state directory had a spool" "$T/agent.log" ||
	fail "the start after the wipe said: $(tail -n 3 "$T/agent.log")"
assert_eq "$n" "$(accepted_count)" "events accepted after the wipe"

note "spool.db removed under a running agent, spool.id kept"
log2=$T/logs/second.log
head -n 100 "$LOGS/elastic_apache_logs.log" >"$log2"
conf2=$T/second.conf
sed -e "s#^state_dir = .*#state_dir = $T/state2#" -e "s#^path = .*#path = $log2#" "$conf" >"$conf2"
n2=$(apache_bytes_count "$log2")
: >"$T/agent.log"
agent_start "$conf2"
wait_until 60 accepted_at_least $((n + n2)) || fail "second log: $(accepted_count) of $((n + n2))"
second=$AGENT_PID
rm -f "$T/state2/spool.db" "$T/state2/spool.db-wal" "$T/state2/spool.db-shm"
head -n 300 "$LOGS/elastic_apache_logs.log" | tail -n 100 >>"$log2"
stops_with_error "$second" "error: spool $T/state2/spool.db: .*removed while logmeter ran"
[ -s "$T/state2/spool.id" ] || fail "spool.id went"
rc=0
agent_once "$conf2" || rc=$?
assert_eq 2 "$rc" "a start after spool.db was removed"
dups=$(double_accepted_ids | uniq -d | wc -l)
assert_eq 0 "$dups" "identifiers accepted twice"
echo "t_state_dir_wiped: a second agent refused beside one whose state directory was wiped; both agents stopped with exit 1; the next starts refused (exit 2); nothing billed twice"

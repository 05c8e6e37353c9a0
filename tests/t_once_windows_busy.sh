#!/usr/bin/env bash
# `run --once` whose sender cannot close the aggregation windows that are due (the spool refuses
# the write: another process holds it, a full disk): their usage is not sent, so the run must not
# end as if nothing were left (exit 0). It ends with the spool's error (exit 1, as when it cannot
# read the pending events), the windows stay open, and a later run closes and sends them, each
# total once.
#
# The spool is made to refuse by a write transaction this test holds from another process while
# the agent's sender waits for its meter check (the double holds GET /v1/billing/meters): the
# agent's start, which writes, is over by then, and its sender has not yet looked at the windows.
. "$(dirname "$0")/lib.sh"
lm_init once_windows_busy
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
# An hour ago: windows of a minute, due long since, far inside Stripe's 35 days.
t=$(($(date +%s) - 3600))
{
	printf '%s cus_A 3\n' "$t"
	printf '%s cus_B 5\n' "$t"
	printf '%s cus_A 4\n' "$((t + 1))"
	printf '%s cus_C 6\n' "$((t + 61))"
} >"$log"
conf="$T/logmeter.conf"
write_config "$conf"
config_epoch_rule "$conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"

# Read the lines into their windows without sending (no sender: no window is closed).
"$LOGMETER" run --once --no-send -c "$conf" >>"$T/agent.out" 2>>"$T/agent.log" ||
	fail "run --once --no-send exited $?"
# Windows: one per customer and minute (awk over the log).
windows=$(awk '{print $2, $1 - $1 % 60}' "$log" | sort -u | wc -l)
"$LOGMETER" status -c "$conf" >"$T/status.out" || true
grep -q "^windows: $windows open aggregation windows" "$T/status.out" ||
	fail "expected $windows open windows: $(grep windows "$T/status.out")"

meters_waiting() {
	[ "$(_lm_curl -f "$DOUBLE_URL/_double/faults" |
		"$PYTHON3" -c 'import json, sys; print(json.load(sys.stdin)["meters_waiting"])')" -ge 1 ]
}
double_faults_json '{"hold_meters": true}'
"$LOGMETER" run --once -c "$conf" >>"$T/agent.out" 2>>"$T/agent2.log" &
pid=$!
if ! wait_until 60 meters_waiting; then
	kill -KILL "$pid"
	fail "the agent did not ask for its meters: $(tail -n 5 "$T/agent2.log")"
fi
# Hold the spool's write lock (BEGIN IMMEDIATE) until $T/unlock exists.
"$PYTHON3" -c '
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1] + "/spool.db", isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").write("locked\n")
while not os.path.exists(sys.argv[3]):
    time.sleep(0.1)
db.execute("ROLLBACK")
' "$T/state" "$T/locked" "$T/unlock" &
lock_pid=$!
wait_until 60 test -s "$T/locked" || fail "the test could not take the spool's write lock"
double_faults_json '{"hold_meters": false}'
rc=0
wait "$pid" || rc=$?
touch "$T/unlock"
wait "$lock_pid" || fail "the lock holder failed"
[ "$rc" -ne 0 ] ||
	fail "run --once exited 0 though it could not close $windows due windows: $(tail -n 5 "$T/agent2.log")"
assert_eq 1 "$rc" "run --once that could not close the windows due"
grep -q 'sender: spool: cannot close aggregation windows: .*SQLITE_BUSY' "$T/agent2.log" ||
	fail "run --once did not say why: $(tail -n 5 "$T/agent2.log")"
assert_eq 0 "$(accepted_count)" "events accepted while the windows could not close"

# The next run closes and sends them: each window's total once (awk over the log).
rc=0
agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once once the spool takes writes again"
expected=$(awk '{s[$2 " " ($1 - $1 % 60)] += $3} END {for (k in s) print k, s[k]}' "$log" | sort)
got=$(awk -F'\t' '{print $3, $5, $4}' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "the windows' totals accepted (customer, start, total)"
note "$windows windows: not closed under a held spool (exit 1); the next run sent each once"

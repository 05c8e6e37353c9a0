#!/usr/bin/env bash
# `run --once` with aggregation windows that cannot close now. Lines stamped ahead of the clock
# (an hour, and 400 s: held, not dead letters) open windows that close only then: `run --once`
# waits at most `aggregate` + `aggregate_grace` for the windows of now, sends them, says how many
# windows (and lines) stay open, and exits 1, since usage is left unsent. And SIGTERM during a
# `run --once` that waits for an open window exits 1 and says what is still open.
. "$(dirname "$0")/lib.sh"
lm_init once_windows
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
{
	printf '%s cus_A 3\n' "$now"
	printf '%s cus_F 7\n' "$((now + 3600))"
	printf '%s cus_A 4\n' "$now"
	printf '%s cus_G 8\n' "$((now + 400))"
	printf '%s cus_B 5\n' "$((now - 1))"
} > "$log"
conf_for() { # conf_for CONF STATE AGGREGATE [GRACE]
	write_config "$1"
	sed -i "s|^state_dir = .*|state_dir = $2|" "$1"
	mkdir -p "$2"
	chmod 700 "$2"
	config_epoch_rule "$1" "$log" "aggregate = $3" "aggregate_grace = ${4:-1s}"
}
conf="$T/logmeter.conf"
conf_for "$conf" "$T/state" 5s

# The windows of now are sent; those of the lines ahead stay open, and the run says so.
rc=0
timeout 60 "$LOGMETER" run --once -c "$conf" >>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
assert_eq 1 "$rc" "run --once with windows that close in 400 s and an hour"
expected=$(awk -v now="$now" '$1 <= now + 300 {s[$2] += $3} END {for (c in s) print c, s[c]}' "$log" | sort)
got=$(awk -F'\t' '{s[$3] += $4} END {for (c in s) print c, s[c]}' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "totals accepted for the lines of now"
grep -q 'run --once: 2 aggregation windows (2 lines) stay open' "$T/agent.log" ||
	fail "run --once did not say which windows stay open: $(tail -n 5 "$T/agent.log")"
"$LOGMETER" status -c "$conf" > "$T/status.out" || true
grep -q '^windows: 2 open aggregation windows' "$T/status.out" ||
	fail "status: $(grep windows "$T/status.out")"

# SIGTERM while run --once waits for a window of an hour: exit 1, and what is still open.
# Meanwhile the metrics show what waits in windows (not in logmeter_pending_events).
# The lines of now fall in the hour that holds `now`, which may end seconds after it: a grace of
# an hour keeps their windows open (due an hour after that end at the earliest) however late in
# the hour the test starts and however long the first part took.
conf2="$T/hour.conf"
conf_for "$conf2" "$T/state2" 1h 1h
sed -i 's/^\[agent\]$/[agent]\nmetrics_listen = 127.0.0.1:0/' "$conf2"
open_window() {
	"$LOGMETER" status -c "$conf2" 2>/dev/null | grep -q '^windows: [1-9][0-9]* open'
}
"$LOGMETER" run --once -c "$conf2" >>"$T/agent2.out" 2>>"$T/agent2.log" &
pid=$!
wait_until 30 open_window || { kill -KILL "$pid"; fail "no window opened within 30 s"; }
wait_until 30 grep -q 'metrics: serving' "$T/agent2.log" || { kill -KILL "$pid"; fail "no metrics endpoint"; }
port=$(sed -n 's|.*metrics: serving http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$T/agent2.log")
_lm_curl -f "http://127.0.0.1:$port/metrics" > "$T/m.prom" || { kill -KILL "$pid"; fail "scraping failed"; }
# Windows: one per customer and hour (awk over the log), and every line in one.
windows=$(awk '{print $2, $1 - $1 % 3600}' "$log" | sort -u | wc -l)
assert_eq "$windows" "$(sed -n 's/^logmeter_windows_open //p' "$T/m.prom")" "logmeter_windows_open"
assert_eq "$(wc -l < "$log")" "$(sed -n 's/^logmeter_window_lines //p' "$T/m.prom")" "logmeter_window_lines"
assert_eq 0 "$(sed -n 's/^logmeter_windows_overdue_seconds //p' "$T/m.prom")" "logmeter_windows_overdue_seconds"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
assert_eq 1 "$rc" "run --once stopped by SIGTERM with windows open"
grep -q 'still open' "$T/agent2.log" ||
	fail "SIGTERM did not say what is still open: $(tail -n 5 "$T/agent2.log")"

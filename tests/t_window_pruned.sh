#!/usr/bin/env bash
# A window whose meter event was pruned (delivered_retention) is still remembered as sent: Stripe
# dedupes its identifier for 24 hours and more, so a line that arrives later for it (a slow log
# shipper, a longer aggregate_grace) goes into a later window, with an identifier of its own,
# never into a new window of the same start, whose meter event Stripe would drop as a duplicate.
. "$(dirname "$0")/lib.sh"
lm_init window_pruned
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
t=$(date +%s)
printf '%s cus_A 1\n' "$t" > "$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 2s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"
agent_once "$conf" || fail "the first run --once exited $?"
assert_eq 1 "$(accepted_count)" "events accepted by the first run"
start=$(( t - t % 2 ))

# Delivered long ago as far as retention goes; the grace now long enough for a late line to find
# that window open by the clock.
sqlite3 "$T/state/spool.db" "UPDATE deliveries SET first_at = first_at - 7200, last_at = last_at - 7200;
	UPDATE outcomes SET delivered_at = delivered_at - 7200 WHERE state = 1"
sed -i 's/^aggregate_grace = 1s$/aggregate_grace = 1h/' "$conf"
sed -i 's/^\[agent\]$/[agent]\ndelivered_retention = 1m/' "$conf"
agent_start "$conf"
wait_until 30 grep -q 'pruned 1 delivered events' "$T/agent.log" || fail "nothing was pruned"
printf '%s cus_A 7\n' "$t" >> "$log"
open_window() {
	"$LOGMETER" spool export -c "$conf" --windows 2>/dev/null |
		"$PYTHON3" -c 'import json, sys; sys.exit(0 if any(w["state"] == "open" for w in map(json.loads, sys.stdin)) else 1)'
}
wait_until 30 open_window || fail "the late line opened no window"
agent_stop || fail "the agent exited $? on SIGTERM"
"$LOGMETER" spool export -c "$conf" --windows > "$T/windows.json"
"$PYTHON3" - "$T/windows.json" "$start" <<'PY' || fail "windows: $(cat "$T/windows.json")"
import json, sys
windows = [json.loads(l) for l in open(sys.argv[1])]
start = int(sys.argv[2])
open_ = [w for w in windows if w["state"] == "open"]
assert len(open_) == 1, open_
assert open_[0]["start"] > start, "the late line reopened the sent window %d" % start
assert open_[0]["late"] == 1, open_[0]
PY

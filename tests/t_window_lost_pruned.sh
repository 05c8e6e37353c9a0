#!/usr/bin/env bash
# `spool recover` with a damaged page of the aggregation windows' table, in a spool where those
# windows were closed, their meter events delivered and then pruned (delivered_retention), and
# their lines with them: a closed window's row is kept 36 days, its event and lines are not.
# Such a lost window left no line and no meter event, so recover cannot tell it from one whose
# usage was lost; it must not say that usage was lost, never billed, and name its customers to
# bill by hand (they were billed: billing them again is billing twice). Recover counts them
# apart, says what it cannot tell, and a later run bills nothing more.
. "$(dirname "$0")/lib.sh"
lm_init window_lost_pruned
need_dbstat
double_start

mkdir -p "$T/logs"
log="$T/logs/past.log"
# Past windows, closed at once: 60 customers in 8 windows of a minute each.
now=$(date +%s)
awk -v now="$now" 'BEGIN { for (w = 0; w < 8; w++) for (c = 0; c < 60; c++)
	printf "%d cus_%03d %d\n", now - 7200 + w * 600, c, 1 + c + w }' >"$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"
db="$T/state/spool.db"
agent_once "$conf" || fail "run --once over past windows exited $?"
assert_eq 480 "$(accepted_count)" "meter events of the past windows"

# Delivered two hours ago as far as retention goes; an agent with a minute's retention prunes
# the meter events, and with them the windows' lines.
sqlite3 "$db" "UPDATE deliveries SET first_at = first_at - 7200, last_at = last_at - 7200;
	UPDATE outcomes SET delivered_at = delivered_at - 7200 WHERE state = 1"
sed -i 's/^\[agent\]$/[agent]\ndelivered_retention = 1m/' "$conf"
agent_start "$conf"
wait_until 30 grep -q 'pruned 480 delivered events' "$T/agent.log" ||
	fail "the meter events were not pruned: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
assert_eq 480 "$(sqlite3 "$db" "SELECT count(*) FROM windows WHERE state = 1")" "closed windows kept"
assert_eq 0 "$(sqlite3 "$db" "SELECT count(*) FROM window_lines")" "window lines after the prune"
assert_eq 0 "$(sqlite3 "$db" "SELECT count(*) FROM batches WHERE first_offset < 0")" \
	"windows' meter events after the prune"
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cp "$db" "$T/pristine.db"

page=$(windows_leaf "$db")
[ -n "$page" ] || fail "test bug: no second leaf page of windows"
spool_ruin "$db" "$page"
"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"

# What was lost, by SQL over the old and the new spool, not by recover's counts.
lost=$(sqlite3 "$db" "ATTACH '$T/pristine.db' AS old;
	SELECT count(*) FROM old.windows w WHERE NOT EXISTS (SELECT 1 FROM main.windows n
	WHERE n.rule = w.rule AND n.customer = w.customer AND n.start = w.start)")
[ "$lost" -gt 0 ] && [ "$lost" -lt 480 ] || fail "test bug: $lost windows lost"
line=$(grep "^warning: $lost aggregation windows were lost" "$T/recover.out") ||
	fail "recover did not say $lost windows were lost: $(cat "$T/recover.out")"
if grep -q "never billed\|customers cus_" <<<"$line"; then
	fail "recover says usage of windows that were billed is lost: $line"
fi
grep -q "$lost left no line and no meter event" <<<"$line" ||
	fail "recover did not count the windows it cannot tell apart: $line"
grep -q "$lost aggregation windows were lost" "$T/recover.err" ||
	fail "recover did not log the lost windows: $(cat "$T/recover.err")"
agent_once "$conf" || fail "run --once after the recover exited $?"
assert_eq 480 "$(accepted_count)" "meter events accepted after the recover"

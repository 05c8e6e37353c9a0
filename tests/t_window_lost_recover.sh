#!/usr/bin/env bash
# `spool recover` with a damaged page of the aggregation windows' table: the windows whose rows were
# on it are lost, with the usage of their lines (their files' checkpoints are past them). Recover
# says so, as it does of other losses: how many windows, how many of their lines, and which
# customers, which the windows' unique index (rule, customer, start) still names, in its output
# and in its log. The windows on the other pages are kept and the agent starts on the result. Lost
# windows that were closed keep their meter events: recover counts them apart, no usage is lost.
. "$(dirname "$0")/lib.sh"
lm_init window_lost_recover
need_dbstat
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
# Windows that stay open: lines stamped 2 to 3 hours ahead (a window closes once its end has
# passed), of 60 customers in 8 windows of a minute each, 2 lines a window.
now=$(date +%s)
now=$((now - now % 60)) # a minute's start: the two lines of a window stay in one minute
awk -v now="$now" 'BEGIN { for (w = 0; w < 8; w++) for (c = 0; c < 60; c++) for (k = 0; k < 2; k++)
	printf "%d cus_%03d %d\n", now + 7200 + w * 600 + k, c, 1 + c + w }' >"$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s"
conf="$T/logmeter.conf"
state="$T/state"
db="$state/spool.db"

rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once leaving windows open"
[ ! -e "$db-wal" ] || fail "run --once left a WAL"
n_windows=$(sqlite3 "$db" "SELECT count(*) FROM windows WHERE state = 0")
assert_eq 480 "$n_windows" "open windows before the damage"
cp "$db" "$T/pristine.db"

# Overwrite the second leaf page of the windows table (dbstat names it) with bytes no b-tree
# page starts with.
page=$(windows_leaf "$db")
[ -n "$page" ] || fail "test bug: no second leaf page of windows"
spool_ruin "$db" "$page"

"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"

# What was lost, by SQL over the old and the new spool, not by recover's counts.
sqlite3 "$db" "ATTACH '$T/pristine.db' AS old;
	SELECT w.customer FROM old.windows w WHERE NOT EXISTS (SELECT 1 FROM main.windows n
	WHERE n.rule = w.rule AND n.customer = w.customer AND n.start = w.start)
	ORDER BY w.customer" >"$T/lost_customers"
lost=$(wc -l <"$T/lost_customers")
lost_lines=$(sqlite3 "$db" "ATTACH '$T/pristine.db' AS old;
	SELECT count(*) FROM old.window_lines l WHERE l.window_id IN (SELECT w.id FROM old.windows w
	WHERE NOT EXISTS (SELECT 1 FROM main.windows n WHERE n.rule = w.rule AND
	n.customer = w.customer AND n.start = w.start))")
[ "$lost" -gt 0 ] && [ "$lost" -lt 480 ] || fail "test bug: $lost windows lost"
assert_eq $((480 - lost)) "$(sqlite3 "$db" "SELECT count(*) FROM windows")" "windows kept"

line=$(grep "^warning: $lost aggregation windows were lost" "$T/recover.out") ||
	fail "recover did not say $lost windows were lost: $(cat "$T/recover.out")"
grep -q "the usage of their $lost_lines lines is lost" <<<"$line" ||
	fail "recover did not say the usage of $lost_lines lines is lost: $line"
named=$(sed -n 's/.*never billed ([^)]*): customers \([^;]*\).*/\1/p' <<<"$line" |
	tr ',' '\n' | sed 's/^ *//; s/ (.*//' | sort -u)
assert_eq "$(sort -u "$T/lost_customers")" "$named" "the customers recover names"
grep -q "$lost aggregation windows were lost" "$T/recover.err" ||
	fail "recover did not log the lost windows: $(cat "$T/recover.err")"
"$LOGMETER" spool check -c "$conf" >"$T/check.out" 2>&1 ||
	fail "spool check after recover: $(cat "$T/check.out")"
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once after the recover (windows still open)"
assert_eq $((480 - lost)) "$(sqlite3 "$db" "SELECT count(*) FROM windows WHERE state = 0")" \
	"open windows after a run"

# Closed windows lost: their meter events survive (batches of their own), so their usage is not
# lost; recover counts them apart and names no usage lost. A later run bills nothing more.
log2="$T/logs/past.log"
awk -v now="$now" 'BEGIN { for (w = 0; w < 8; w++) for (c = 0; c < 60; c++)
	printf "%d cus_%03d %d\n", now - 7200 + w * 600, c, 1 + c + w }' >"$log2"
write_config "$T/past.conf"
sed -i "s|^state_dir = .*|state_dir = $T/state2|" "$T/past.conf"
mkdir -p "$T/state2"
config_epoch_rule "$T/past.conf" "$log2" "aggregate = 60s" "aggregate_grace = 1s"
db2="$T/state2/spool.db"
: >"$T/accepted.tsv"
agent_once "$T/past.conf" || fail "run --once over past windows exited $?"
assert_eq 480 "$(accepted_count)" "meter events of the past windows"
assert_eq 480 "$(sqlite3 "$db2" "SELECT count(*) FROM windows WHERE state = 1")" "closed windows"
cp "$db2" "$T/pristine2.db"
page=$(windows_leaf "$db2")
[ -n "$page" ] || fail "test bug: no second leaf page of the closed windows"
spool_ruin "$db2" "$page"
"$LOGMETER" spool recover -c "$T/past.conf" >"$T/recover2.out" 2>"$T/recover2.err" ||
	fail "spool recover (closed windows) exited $?: $(cat "$T/recover2.out" "$T/recover2.err")"
# A lost closed window gets its row back from its meter event, closed, with the length unknown
# (1 s): the rows kept as they were are those of the same length and number of lines.
lost2=$(sqlite3 "$db2" "ATTACH '$T/pristine2.db' AS old;
	SELECT count(*) FROM old.windows w WHERE NOT EXISTS (SELECT 1 FROM main.windows n
	WHERE n.rule = w.rule AND n.customer = w.customer AND n.start = w.start
	AND n.length = w.length AND n.lines = w.lines)")
[ "$lost2" -gt 0 ] && [ "$lost2" -lt 480 ] || fail "test bug: $lost2 closed windows lost"
assert_eq 480 "$(sqlite3 "$db2" "ATTACH '$T/pristine2.db' AS old;
	SELECT count(*) FROM old.windows w JOIN main.windows n ON n.rule = w.rule
	AND n.customer = w.customer AND n.start = w.start AND n.state = 1 AND n.total = w.total
	AND n.event_id = w.event_id")" "closed windows after recover (kept or rebuilt)"
grep -qx "warning: $lost2 aggregation windows were lost (their rows could not be read); $lost2 closed, whose meter events are kept" \
	"$T/recover2.out" || fail "recover (closed windows): $(cat "$T/recover2.out")"
agent_once "$T/past.conf" || fail "run --once after recovering closed windows exited $?"
assert_eq 480 "$(accepted_count)" "meter events accepted after recovering closed windows"

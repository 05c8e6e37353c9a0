#!/usr/bin/env bash
# `spool recover` that lost the rows of closed aggregation windows whose meter events it kept: a
# line that comes later for one of those windows (a slow shipper, a backfill) must not open a new
# window of the same start. That window's identifier (rule, customer, start) is the one of the
# kept meter event, which Stripe already has: it would drop the new one as a duplicate, and the
# late line's usage with it. Recover keeps such a window closed (rebuilt from its meter event), so
# the late line goes on to the next window, as it would have without the damage: every line is
# billed once, the totals per customer equal awk's sums over the logs.
. "$(dirname "$0")/lib.sh"
lm_init window_lost_closed_late
need_dbstat
double_start

mkdir -p "$T/logs"
log="$T/logs/past.log"
# 480 windows of a minute, 2 to 1 hours ago: 60 customers in 8 minutes, 10 minutes apart. Every
# one has closed when run --once starts (a grace of 1 s).
now=$(date +%s)
now=$((now - now % 60))
awk -v now="$now" 'BEGIN { for (w = 0; w < 8; w++) for (c = 0; c < 60; c++)
	printf "%d cus_%03d %d\n", now - 7200 + w * 600, c, 1 + c + w }' >"$log"
write_config "$T/logmeter.conf"
conf="$T/logmeter.conf"
config_epoch_rule "$conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"
db="$T/state/spool.db"
agent_once "$conf" || fail "run --once over the past windows exited $?"
assert_eq 480 "$(accepted_count)" "meter events of the past windows"
assert_eq 480 "$(sqlite3 "$db" "SELECT count(*) FROM windows WHERE state = 1")" "closed windows"
cp "$db" "$T/pristine.db"

# Overwrite the second leaf page of the windows table.
page=$(windows_leaf "$db")
[ -n "$page" ] || fail "test bug: no second leaf page of windows"
spool_ruin "$db" "$page"
"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"
# The damage lost the rows of some windows (those of one leaf page, not all), whose meter events
# are kept: recover's own count, only to make sure the test tests something.
lost=$(sed -n 's/^warning: \([0-9]*\) aggregation windows were lost.*/\1/p' "$T/recover.out")
[ -n "$lost" ] && [ "$lost" -gt 0 ] && [ "$lost" -lt 480 ] ||
	fail "test bug: the damage lost no window, or all: $(cat "$T/recover.out")"

# A late line for every window, lost or kept, in the window's own minute.
awk -v now="$now" 'BEGIN { for (w = 0; w < 8; w++) for (c = 0; c < 60; c++)
	printf "%d cus_%03d %d\n", now - 7200 + w * 600 + 30, c, 1000 + c }' >>"$log"
agent_once "$conf" || fail "run --once with the late lines exited $?"

expected=$(awk '{ s[$2] += $3 } END { for (c in s) print c, s[c] }' "$log" | sort)
got=$(awk -F'\t' '{ s[$3] += $4 } END { for (c in s) print c, s[c] }' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "billed total per customer"
# Each late line is alone in its (customer, minute): one more meter event each, none dropped.
assert_eq 960 "$(accepted_count)" "meter events accepted"
assert_eq 960 "$(cut -f1 "$T/accepted.tsv" | sort -u | wc -l)" "distinct identifiers accepted"

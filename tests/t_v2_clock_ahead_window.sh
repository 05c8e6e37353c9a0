#!/usr/bin/env bash
# API v2, Stripe's clock hours ahead of this host's, a rule with `aggregate = 6h`, and late lines
# near the end of the 35 days (a backfill): each line is billable on its own by Stripe's clock
# (more than the stream's hour inside its 35 days), but their window's start, up to 6 hours
# older, is within that hour. Such lines must not be summed into a window the sender then finds
# dead on arrival (one dead letter holding all their usage): they are billed on their own, each
# accepted once with its own timestamp and value (awk over the log), and nothing is dead.
. "$(dirname "$0")/lib.sh"
lm_init v2_clock_ahead_window

LEN=21600   # aggregate = 6h
MARGIN=3600 # the hour the sender keeps from the end of Stripe's 35 days (v2)
DAYS35=$((35 * 86400))
now0=$(date +%s)
# Stripe's clock ahead by 4 to 10 hours, chosen so that the end of the margin by Stripe's clock
# (edge + MARGIN) falls in the middle of a window: its start is then 3 hours inside the margin,
# and its second half billable on its own. The window's start must also be more than 3,000 s
# past the end of the margin by this host's clock (SKEW - LEN / 2 > 3000), so that only Stripe's
# clock makes it dead: a base of 14,400 s keeps that for every `now` (a base of 12,000 s left
# it out for 1,800 s of every 6 hours).
SKEW=$((14400 + ((LEN / 2 - (now0 + 14400 - DAYS35 + MARGIN) % LEN) % LEN + LEN) % LEN))
double_start --timestamp-skew "$SKEW"
edge=$((now0 + SKEW - DAYS35)) # Stripe's 35 days end here, by Stripe's clock
W=$(((edge + MARGIN) / LEN * LEN))
mkdir -p "$T/logs"
log=$T/logs/app.log
: >"$log"
# 20 lines from 20 minutes past the margin's end on, a minute apart, inside the window.
for i in $(seq 0 19); do
	printf '%d cus_%s %d\n' $((edge + MARGIN + 1200 + i * 60)) "$(printf '%s' ABCD | cut -c$((i % 4 + 1)))" $((i * 7 + 3)) >>"$log"
done
awk -v w="$W" -v len="$LEN" -v e="$edge" -v m="$MARGIN" -v h="$((now0 - DAYS35))" '
	$1 < w || $1 >= w + len || $1 < e + m + 600 { bad = 1 }
	END { exit !(!bad && w < e + m - 3000 && w > h + m + 3000) }' "$log" ||
	fail "test bug: the lines are not all billable in one window dead by Stripe's clock"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 6h"
conf="$T/logmeter.conf"

rc=0
agent_once "$conf" || rc=$?
[ "$rc" -ne 124 ] || fail "run --once did not end"
assert_eq 0 "$rc" "run --once exit status"

"$LOGMETER" status -c "$conf" --json 2>/dev/null | "$PYTHON3" -c '
import json, sys
e = json.load(sys.stdin)["events"]
print(e["pending"], e["delivered"], e["dead"])' >"$T/events"
read -r pending delivered dead <"$T/events"
assert_eq 0 "$dead" "status --json: dead letters"
assert_eq 0 "$pending" "status --json: events pending"
# Each line accepted once, on its own: customer, timestamp and value as awk reads them.
expected=$(awk '{ print $2, $1, $3 }' "$log" | sort)
got=$(awk -F'\t' '{ print $3, $5, $4 }' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "accepted (customer, timestamp, value)"
assert_eq 20 "$delivered" "status --json: events delivered"
echo "t_v2_clock_ahead_window: Stripe's clock $SKEW s ahead; 20 late lines near 35 days each billed once on their own"

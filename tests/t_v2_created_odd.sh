#!/usr/bin/env bash
# API v2 with a meter event session whose `created` is hours ahead of Stripe's own clock (a wrong
# answer: a proxy's, a bug's), while Stripe's clock (its Date header, its validation) agrees with
# this host's. One such field must not make the agent judge the 35 days by a clock hours ahead and
# dead-letter events Stripe takes: a clock ahead is taken only as far as the answer's Date header
# confirms it. Every event is accepted once, none is a dead letter, none is dropped by Stripe.
# Then a `created` hours behind: it must not hold events Stripe takes now for hours.
. "$(dirname "$0")/lib.sh"
lm_init v2_created_odd

ODD=10800     # the session's created 3 hours ahead of Stripe's clock
MARGIN=3600   # the hour the agent keeps from the end of Stripe's 35 days (v2)
DAYS35=$((35 * 86400))
double_start --session-created-skew "$ODD"
mkdir -p "$T/logs"
log=$T/logs/app.log
# Timestamps inside Stripe's 35 days less the margin by Stripe's (this host's) clock, some of them
# within the 3 hours plus the margin that a clock taken as 3 hours ahead would dead-letter; each
# at least half an hour from either line, so that the minutes the test takes move none across.
now0=$(date +%s)
: >"$log"
for off in 5400 9000 12600 18000 43200; do
	for c in cus_A cus_B; do
		printf '%d %s %d\n' $((now0 - DAYS35 + off)) "$c" $((off % 89 + 1)) >>"$log"
	done
done
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

# Computed from `date` and the log with awk, not by logmeter.
edge=$((now0 - DAYS35 + MARGIN))
total=$(wc -l <"$log")
sendable=$(awk -v e="$edge" '$1 >= e' "$log" | wc -l)
would_die=$(awk -v e="$((edge + ODD))" '$1 < e' "$log" | wc -l)
[ "$sendable" -eq "$total" ] && [ "$would_die" -eq 6 ] ||
	fail "test bug: $sendable of $total sendable, $would_die within the odd clock's reach"

rc=0
agent_once "$conf" || rc=$?
[ "$rc" -ne 124 ] || fail "run --once did not end"

read -r pending delivered dead <<<"$("$LOGMETER" status -c "$conf" --json 2>/dev/null |
	"$PYTHON3" -c '
import json, sys
e = json.load(sys.stdin)["events"]
print(e["pending"], e["delivered"], e["dead"])')"
uid=$(file_uid "$conf" "$log")
awk '{print off + 0} {off += length($0) + 1}' "$log" |
	identifiers_of app "$uid" usage | sort >"$T/expected_ids"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/ids.diff" ||
	fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"
assert_eq 0 "$dead" "status --json: dead letters (events Stripe takes)"
assert_eq "$total" "$delivered" "status --json: events delivered"
assert_eq 0 "$pending" "status --json: events pending"
assert_eq 0 "$(double_stat error_reports)" "error reports (events Stripe took and did not bill)"
assert_eq 0 "$rc" "run --once exit status"
grep -q "the meter event session's created time is [0-9]* s ahead of this host's clock" \
	"$T/agent.log" || fail "the agent did not say the session's created time disagrees: $(tail -n 5 "$T/agent.log")"
if grep -q "Stripe's clock is [0-9]* s ahead of this host's" "$T/agent.log"; then
	fail "the agent took Stripe's clock for ahead: $(grep "Stripe's clock is" "$T/agent.log" | head -n 2)"
fi

# A session's created time 3 hours behind Stripe's clock: events stamped now are not held for 3
# hours (run --once would leave them pending and exit 1); they are accepted now.
double_restart --session-created-skew -"$ODD"
sed -i "s|^state_dir = .*|state_dir = $T/state_behind|" "$conf"
mkdir -p "$T/state_behind"
: >"$T/accepted.tsv"
log2=$T/logs/now.log
now1=$(date +%s)
for k in 0 1 2 3 4; do printf '%d cus_C %d\n' $((now1 + k * 30)) $((k + 1)) >>"$log2"; done
sed -i "s|$log|$log2|" "$conf"
rc=0
agent_once "$conf" || rc=$?
[ "$rc" -ne 124 ] || fail "behind: run --once did not end"
assert_eq 5 "$(accepted_count)" "behind: events accepted"
assert_eq 0 "$rc" "behind: run --once exit status"
grep -q "the meter event session's created time is [0-9]* s behind this host's clock" \
	"$T/agent.log" || fail "behind: the agent did not say the created time disagrees: $(tail -n 5 "$T/agent.log")"

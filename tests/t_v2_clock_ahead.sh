#!/usr/bin/env bash
# API v2 with Stripe's clock hours ahead of this host's: an event just inside 35 days by this
# host's clock is outside them by Stripe's, and the stream takes it and drops it later
# (`timestamp_too_far_in_past` in an error report), billed nothing. The agent measures Stripe's
# clock by the session's `created` and judges the 35 days by it, less an hour for the stream's
# asynchronous validation: such events are dead letters saying how far Stripe's clock is ahead,
# counted by `status`, never "delivered"; the others are accepted once. With API v1 Stripe
# refuses them at once (400), and they are dead letters with Stripe's reason.
. "$(dirname "$0")/lib.sh"
lm_init v2_clock_ahead

SKEW=10800   # Stripe's clock 3 hours ahead
MARGIN=3600  # the hour the agent keeps from the end of Stripe's 35 days (v2)
DAYS35=$((35 * 86400))
double_start --timestamp-skew "$SKEW"
mkdir -p "$T/logs"
log=$T/logs/app.log
# Timestamps from this host's clock, all inside 35 days by it: 4 outside Stripe's 35 days (they
# end 10800 s after this host's), 1 inside them by less than the margin, 4 well inside; each at
# least half an hour from either line, this host's 35 days' end too, so that the minutes the test
# takes move none across.
now0=$(date +%s)
: >"$log"
for off in 1800 3600 5400 9000 12600 18000 25200 43200 172800; do
	for c in cus_A cus_B cus_C; do
		printf '%d %s %d\n' $((now0 - DAYS35 + off)) "$c" $((off % 97 + 1)) >>"$log"
	done
done
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

# By Stripe's clock (awk over the log, the edges computed from `date`, not by logmeter).
stripe_edge=$((now0 + SKEW - DAYS35))
total=$(wc -l <"$log")
too_old=$(awk -v e="$stripe_edge" '$1 < e' "$log" | wc -l)
in_margin=$(awk -v e="$stripe_edge" -v m="$MARGIN" '$1 >= e && $1 < e + m' "$log" | wc -l)
sendable=$(awk -v e="$stripe_edge" -v m="$MARGIN" '$1 >= e + m' "$log" | wc -l)
[ "$too_old" -eq 12 ] && [ "$in_margin" -eq 3 ] && [ "$sendable" -eq 12 ] ||
	fail "test bug: $too_old too old, $in_margin in the margin, $sendable sendable"

rc=0
agent_once "$conf" || rc=$?
[ "$rc" -ne 124 ] || fail "run --once did not end"

# json_events CONF: "pending delivered dead" of `status --json`.
json_events() {
	"$LOGMETER" status -c "$1" --json 2>/dev/null | "$PYTHON3" -c '
import json, sys
e = json.load(sys.stdin)["events"]
print(e["pending"], e["delivered"], e["dead"])'
}
read -r pending delivered dead <<<"$(json_events "$conf")"

# No event Stripe dropped as too old is counted delivered.
_lm_curl -f "$DOUBLE_URL/_double/error_reports" | "$PYTHON3" -c '
import json, sys
for r in json.load(sys.stdin):
    if r["code"] == "timestamp_too_far_in_past":
        print(r["identifier"])' | sort >"$T/dropped_ids"
export_ids "$conf" delivered >"$T/delivered_ids"
both=$(comm -12 "$T/dropped_ids" "$T/delivered_ids" | wc -l)
assert_eq 0 "$both" "events counted delivered that Stripe dropped as too far in the past"
assert_eq 0 "$(double_stat error_reports)" "error reports (events Stripe took and did not bill)"

# The others are accepted, each once, and counted so.
uid=$(file_uid "$conf" "$log")
awk -v e="$stripe_edge" -v m="$MARGIN" '$1 >= e + m {print off + 0} {off += length($0) + 1}' "$log" |
	identifiers_of app "$uid" usage | sort >"$T/expected_ids"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/ids.diff" ||
	fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"
assert_eq "$sendable" "$delivered" "status --json: events delivered"
assert_eq $((too_old + in_margin)) "$dead" "status --json: dead letters"
assert_eq 0 "$pending" "status --json: events pending"
# Dead letters made by the run: exit 1, counted in its last log line.
assert_eq 1 "$rc" "run --once exit status"
tail -n 1 "$T/agent.log" | grep -q "run --once: during this run $((too_old + in_margin)) events became dead letters: " ||
	fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"

# The dead letters say why, with how far Stripe's clock is ahead (the session's created time
# against this host's, in whole seconds: at most SKEW + 1, since time(2) reads a clock that may lag
# the one the double's time.time() reads by a few milliseconds across a second's boundary).
n=$(export_count "$conf" dead usage "outside Stripe's window (more than 35 days in the past) by Stripe's clock, which is")
assert_eq "$too_old" "$n" "dead letters outside Stripe's window by its clock"
n=$(export_count "$conf" dead usage "within $MARGIN s of the end of Stripe's 35-day window by Stripe's clock")
assert_eq "$in_margin" "$n" "dead letters within the margin"
# Stripe may well take them: the reason says they are a margin, not that Stripe would drop them.
n=$(export_count "$conf" dead usage "drops one it finds too old, unbilled: not sent, as a margin")
assert_eq "$in_margin" "$n" "dead letters saying they are a margin"
ahead=$(export_tsv "$conf" dead | cut -f11 | sed -n 's/.*which is \([0-9]*\) s ahead of this host.s.*/\1/p' | sort -u)
[ -n "$ahead" ] || fail "the dead letters do not say how far Stripe's clock is ahead"
for a in $ahead; do
	[ "$a" -le $((SKEW + 1)) ] && [ "$a" -ge $((SKEW - 60)) ] ||
		fail "Stripe's clock said $a s ahead; it is $SKEW"
done
grep -q "Stripe's clock is [0-9]* s ahead of this host's (a meter event session's created time)" \
	"$T/agent.log" || fail "the agent did not say Stripe's clock is ahead: $(tail -n 5 "$T/agent.log")"
"$LOGMETER" status -c "$conf" 2>/dev/null | grep -q "dead letters $((too_old + in_margin))" ||
	fail "status does not show the dead letters: $("$LOGMETER" status -c "$conf" 2>&1 | head -n 5)"

# API v1: Stripe refuses the too old events at once; they are dead letters with its reason, the
# others are accepted (the events of the margin are sent too: the answer is synchronous).
sed -i -e '/^api = v2$/d' -e "s|^state_dir = .*|state_dir = $T/state_v1|" "$conf"
mkdir -p "$T/state_v1"
: >"$T/accepted.tsv"
double_restart --timestamp-skew "$SKEW"
rc=0
agent_once "$conf" || rc=$?
[ "$rc" -ne 124 ] || fail "v1: run --once did not end"
read -r pending delivered dead <<<"$(json_events "$conf")"
assert_eq $((sendable + in_margin)) "$delivered" "v1: status --json: events delivered"
assert_eq "$too_old" "$dead" "v1: status --json: dead letters"
assert_eq $((sendable + in_margin)) "$(accepted_count)" "v1: events accepted"
n=$(export_count "$conf" dead usage "cannot be more than 35 days in past")
assert_eq "$too_old" "$n" "v1: dead letters with Stripe's reason"

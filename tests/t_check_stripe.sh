#!/usr/bin/env bash
# `logmeter check --stripe` holds the rules against the account's meters (GET /v1/billing/meters,
# every page): each rule needs an active meter with its event_name whose payload keys are the
# rule's; the meter's formula says what happens to the rule's values. The agent warns about the
# same at start.
. "$(dirname "$0")/lib.sh"
lm_init check_stripe
DOUBLE_METERS="bandwidth_bytes requests:stripe_customer_id:value:count gauge:stripe_customer_id:value:last old_meter:stripe_customer_id:value:sum:inactive custom:customer:amount hits:stripe_customer_id:value:count"
double_start --meters-page-max 2

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 20 "$LOGS/elastic_apache_logs.log" > "$log"
write_config "$T/logmeter.conf"
# rule NAME EVENT_NAME VALUE [KEY = VALUE...]: a rule on the apache log.
rule() {
	local name=$1 event=$2 value=$3
	shift 3
	printf '[rule %s]\nsource = apache\nevent_name = %s\npattern = ^(?<ip>\\S+) \\S+ \\S+ \\[[^\\]]+\\] "[^"]*" 2\\d\\d (?<bytes>\\d+)\ncustomer = ip\nvalue = %s\n' \
		"$name" "$event" "$value"
	printf '%s\n' "$@"
}
{
	printf '[source apache]\npath = %s\n' "$log"
	rule bytes bandwidth_bytes bytes
	rule hits hits 1
} >> "$T/logmeter.conf"
conf="$T/logmeter.conf"

# Every rule has its meter: exit 0, one ok line per rule, read over several pages.
out=$("$LOGMETER" check --stripe -c "$conf") || fail "check --stripe exited $?: $out"
grep -q '^stripe: 6 meters in the account$' <<<"$out" || fail "not every page was read: $out"
grep -q '^ok: rule bytes: meter mtr_[0-9a-z_]* (event_name bandwidth_bytes) is active and sums the values the rule sends (value = bytes)$' <<<"$out" ||
	fail "rule bytes: $out"
grep -q '^ok: rule hits: meter mtr_[0-9a-z_]* (event_name hits) is active and counts the rule.s events$' <<<"$out" ||
	fail "rule hits: $out"
[ "$(double_stat meter_lists)" -ge 3 ] || fail "only $(double_stat meter_lists) pages were asked for"

# What loses money: a count meter fed values, a last meter, payload keys the meter does not read,
# an inactive meter, a meter that does not exist.
{
	rule counted requests bytes
	rule last gauge bytes
	rule keys custom bytes
	rule custom_ok custom bytes "payload_customer_key = customer" "payload_value_key = amount"
	rule inactive old_meter 1
	rule missing no_such_meter 1
} >> "$conf"
rc=0
out=$("$LOGMETER" check --stripe -c "$conf" 2>"$T/err") || rc=$?
assert_eq 1 "$rc" "exit code of check --stripe with rules Stripe would refuse"
grep -q '^warning: rule counted: meter .* counts events (formula count): the rule.s values (value = bytes) are not billed' <<<"$out" ||
	fail "count meter: $out"
grep -q '^warning: rule last: meter .* keeps only the last value of each period (formula last)' <<<"$out" ||
	fail "last meter: $out"
grep -q '^error: rule keys: meter .* reads the customer from payload key customer, the rule sends it as stripe_customer_id' <<<"$out" ||
	fail "customer key: $out"
grep -q '^error: rule keys: meter .* reads the value from payload key amount, the rule sends it as value' <<<"$out" ||
	fail "value key: $out"
grep -q '^ok: rule custom_ok: ' <<<"$out" || fail "custom keys: $out"
grep -q '^error: rule inactive: meter .* (event_name old_meter) is inactive' <<<"$out" || fail "inactive: $out"
grep -q '^error: rule missing: the account has no meter with event_name no_such_meter' <<<"$out" || fail "missing: $out"
grep -qx "check --stripe: 4 problems: those rules' events would not be billed" "$T/err" || fail "summary: $(cat "$T/err")"
# One problem is one: the summary in the singular.
sed '/^\[rule counted\]$/,$d' "$conf" >"$T/one.conf" # the source, rules bytes and hits
rule missing no_such_meter 1 >>"$T/one.conf"
rc=0
"$LOGMETER" check --stripe -c "$T/one.conf" >"$T/one.out" 2>"$T/one.err" || rc=$?
assert_eq 1 "$rc" "exit code of check --stripe with one rule Stripe would refuse"
grep -q '^error: rule missing: the account has no meter with event_name no_such_meter' "$T/one.out" || fail "missing: $(cat "$T/one.out")"
assert_eq "check --stripe: 1 problem: that rule's events would not be billed" "$(cat "$T/one.err")" "the summary of one problem"

# The agent says the same at start and sends the rest; Stripe refuses the events of a missing
# meter (v1: dead letters), while those it would take and not bill (rule keys) are held, unsent:
# run --once exits 1.
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once with a rule held for its meter"
grep -q 'rule keys: meter .* the agent holds its events, unsent' "$T/agent.log" ||
	fail "the agent did not say it holds rule keys' events"
grep -q 'warning: rule missing: the account has no meter with event_name no_such_meter' "$T/agent.log" ||
	fail "the agent did not warn at start"
grep -q 'warning: rule last: meter' "$T/agent.log" || fail "the agent did not warn about the last meter"

# Aggregation: one meter event per window with the sum of its lines. A sum meter adds the
# windows up; a count meter counts one per window and a last meter keeps one window's total:
# both refused (exit 1), whatever the value.
agg="$T/aggregate.conf"
write_config "$agg"
{
	printf '[source apache]\npath = %s\n' "$log"
	rule agg_sum bandwidth_bytes bytes "aggregate = 60s"
	rule agg_count hits 1 "aggregate = 1m"
	rule agg_last gauge bytes "aggregate = 10s"
} >> "$agg"
rc=0
out=$("$LOGMETER" check --stripe -c "$agg" 2>"$T/err") || rc=$?
assert_eq 1 "$rc" "exit code of check --stripe with aggregating rules on count and last meters"
grep -q '^ok: rule agg_sum: meter .* sums the values the rule sends (value = bytes, summed per customer per window first)$' <<<"$out" ||
	fail "aggregate into a sum meter: $out"
grep -q '^error: rule agg_count: aggregate = 60s sends one meter event per window .* formula count, which counts each window.s meter event as 1' <<<"$out" ||
	fail "aggregate into a count meter: $out"
grep -q '^error: rule agg_last: aggregate = 10s .* formula last, which does not add the windows. totals up' <<<"$out" ||
	fail "aggregate into a last meter: $out"

# A key Stripe refuses: check --stripe says so (exit 1) without showing the key.
printf 'sk_test_refused_%s\n' "$(_lm_random)" > "$T/stripe.key"
rc=0
out=$("$LOGMETER" check --stripe -c "$conf" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit code with a refused key"
grep -q 'cannot read the account.s meters: GET /v1/billing/meters: HTTP 401' <<<"$out" || fail "refused key: $out"
! grep -q "$(cut -c17- "$T/stripe.key")" <<<"$out" || fail "the key appears in the output"
note "check --stripe: ok, warnings and errors as the meters say"

#!/usr/bin/env bash
# API v2: a stream that refuses a request holding an identifier it already has, with 400 code
# duplicate_meter_event (the error Stripe's OpenAPI spec defines, v2.error.duplicate_meter_event;
# the stream documents no duplicate answer and the double drops duplicates silently unless told
# --stream-duplicates refuse). Such an answer says an event of the request is Stripe's already,
# not that the request's events are wrong: taken for a refusal, the request was halved down to
# single events and each became a dead letter, events Stripe has, which `replay --dead` would
# send again and, a day later, bill twice. Here the first request's answer is lost after Stripe
# took its events (fault drop_after): sent again, it is refused as duplicates.
. "$(dirname "$0")/lib.sh"
lm_init v2_stream_duplicates
double_start --stream-duplicates refuse

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 300 "$LOGS/elastic_apache_logs.log" >"$log"
conf="$T/logmeter.conf"
write_config "$conf"
config_v2 "$conf"
config_apache_bytes "$conf" "$log"
want=$(apache_bytes_count "$log")
[ "$want" -gt 100 ] || fail "only $want events: fewer than a stream request's 100"

double_faults drop_after
rc=0
agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once with a request refused for duplicates"
assert_all_delivered "$conf" "$want"
assert_accepted_once "$conf" "$log"
[ "$(double_stat faults.drop_after)" -eq 1 ] || fail "the double dropped no answer"
[ "$(double_stat duplicates)" -ge 1 ] || fail "the double refused no request for duplicates"
note "$want events: a request refused for duplicates after its answer was lost; each accepted once, none dead"

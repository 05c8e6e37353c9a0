#!/usr/bin/env bash
# API v2 after an outage: the real nginx log is read while every stream request is answered 503
# (Stripe's edge failing), so every event waits for a retry; then the stream answers again. The
# backlog should go out in requests of up to 100 events, as it would have without the outage
# (docs/stripe-contract.md, section 14): at most twice the requests that ceil(events / 100)
# asks for, the number of events counted by awk over the log. Every event is accepted once.
#
# Fails on main: each event of a failed request gets its own random backoff (batch_done in
# src/send/sender.c), so the events of one request come due at different times and go out in
# requests of a few events (191 requests for 2459 events in one run, 25 needed), and during the
# outage the agent sends a request per few events, not per 100.
. "$(dirname "$0")/lib.sh"
lm_init v2_outage_batches

mkdir -p "$T/logs"
cat "$LOGS/elastic_nginx_logs_prefix29480.log" > "$T/logs/access.log"
double_start
write_config "$T/logmeter.conf"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 100\napi = v2\nmeter_events_base = '"${DOUBLE_URL//\//\\/}"'/' "$T/logmeter.conf"
sed -i 's/^retry_max_backoff = .*/retry_max_backoff = 2s/' "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
"$LOGMETER" check -c "$T/logmeter.conf" >/dev/null || fail "the configuration is invalid"
nginx_bytes_offsets "$T/logs/access.log" > "$T/offsets"
expected=$(wc -l < "$T/offsets")
[ "$expected" -ge 1000 ] || fail "only $expected events in the log"

double_faults_json '{"rate": 1.0, "kinds": ["503"], "seed": 1}'
agent_start "$T/logmeter.conf"
all_spooled() { [ "$(spooled_count "$T/logmeter.conf")" = "$expected" ]; }
wait_until 60 all_spooled || fail "the agent did not spool $expected events"
# Every event has failed at least twice: the outage is the same for all of them.
failed_twice() {
	[ "$(double_stat faults.503)" -ge $(( 4 * (expected + 99) / 100 )) ]
}
wait_until 60 failed_twice || fail "the agent did not retry during the outage"
during=$(double_stat faults.503)
n0=$(wc -l < "$T/double.log")
double_faults_json '{"clear": true}'
wait_until 60 accepted_at_least "$expected" || fail "only $(accepted_count) of $expected events accepted"
agent_stop || fail "the agent did not stop cleanly"

tail -n +$(( n0 + 1 )) "$T/double.log" | awk -F'\t' '$2 == "/v2/billing/meter_event_stream" && $3 == 200' > "$T/after"
requests=$(wc -l < "$T/after")
needed=$(( (expected + 99) / 100 ))
note "$expected events; $during requests during the outage; $requests requests after it ($needed needed)"
assert_eq 0 "$(cut -f1 "$T/accepted.tsv" | sort | uniq -d | wc -l)" "identifiers accepted more than once"
assert_eq "$expected" "$(accepted_count)" "events accepted"
[ "$requests" -le $(( 2 * needed )) ] ||
	fail "the backlog went out in $requests requests, more than twice the $needed needed: $(grep -o 'events=[0-9]*' "$T/after" | sort | uniq -c | sort -rn | head -n 5 | tr '\n' ' ')"
note "ok"

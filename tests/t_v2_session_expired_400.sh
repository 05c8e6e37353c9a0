#!/usr/bin/env bash
# API v2: the stream's "session expired" error (type temporary_session_expired, code
# billing_meter_event_session_expired) with a status other than 401. Stripe's API reference gives
# it 401; the SDKs read the error's type whatever the status (stripe-node's generateV2Error,
# stripe-ruby's TemporarySessionExpiredError, tested there with a 400). It refuses the token, not
# the events: a new session, and the same events again. Taken for a refusal of the events (a 400
# with a v2 error), the request was halved down to single events and each became a dead letter,
# events Stripe never looked at, for as long as the session was held (12 of its 15 minutes).
. "$(dirname "$0")/lib.sh"
lm_init v2_session_expired_400
double_start --session-expired-status 400

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 300 "$LOGS/elastic_apache_logs.log" >"$log"
conf="$T/logmeter.conf"
write_config "$conf"
config_v2 "$conf"
config_apache_bytes "$conf" "$log"
want=$(apache_bytes_count "$log")
[ "$want" -gt 100 ] || fail "only $want events: fewer than a stream request's 100"

# The first stream request ends its session: that request, and every later one with the token,
# is answered 400 temporary_session_expired.
double_faults 401session
rc=0
agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once with a session that expired with a 400"
assert_all_delivered "$conf" "$want"
assert_accepted_once "$conf" "$log"
[ "$(double_stat sessions_expired)" -ge 1 ] || fail "the double never answered 'session expired'"
[ "$(double_stat sessions)" -ge 2 ] || fail "no new session after the expired one"
note "$want events: a session expired with a 400, a new one made, each event accepted once, none dead"

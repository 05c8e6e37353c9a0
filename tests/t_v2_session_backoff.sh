#!/usr/bin/env bash
# API v2 while Stripe cannot be reached: the meter event session cannot be made, and the agent
# asks again with a backoff that doubles from retry_min_backoff (50 ms here) up to
# retry_max_backoff (500 ms), as it retries events (docs/stripe-contract.md, section 14), not
# every 25 to 50 ms for as long as the outage lasts. The agent's log says when it will try
# again: a wait of 250 ms or more (the cap of 500 ms times the jitter's 0.5 to 1) shows the
# backoff grew. Then Stripe answers again and every event of the real nginx log is accepted once.
#
# Fails on main: the session was asked for again after backoff_ms(1) every time
# ("cannot create a meter event session: ...; will retry in 34 ms" after 256 attempts).
. "$(dirname "$0")/lib.sh"
lm_init v2_session_backoff

mkdir -p "$T/logs"
head -n 3000 "$LOGS/elastic_nginx_logs_prefix29480.log" > "$T/logs/access.log"
double_start
write_config "$T/logmeter.conf"
sed -i 's/^max_requests_per_second = .*/&\napi = v2\nmeter_events_base = '"${DOUBLE_URL//\//\\/}"'/' "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
"$LOGMETER" check -c "$T/logmeter.conf" >/dev/null || fail "the configuration is invalid"
nginx_bytes_offsets "$T/logs/access.log" > "$T/offsets"
expected=$(wc -l < "$T/offsets")
[ "$expected" -ge 100 ] || fail "only $expected events in the log"

double_stop # the port is closed: connections are refused
agent_start "$T/logmeter.conf"
# The retry log line is written at most every 10 s; a wait of 250 ms or more is the backoff grown.
grown() {
	grep -o 'cannot create a meter event session: .*; will retry in [0-9]* ms' "$T/agent.log" |
		sed 's/.* will retry in \([0-9]*\) ms$/\1/' | awk '$1 >= 250 {f = 1} END {exit !f}'
}
wait_until 60 grown ||
	fail "the session's retries did not back off: $(grep 'meter event session' "$T/agent.log" | tail -n 3)"
_lm_double_launch "$DOUBLE_PORT"
wait_until 60 accepted_at_least "$expected" || fail "only $(accepted_count) of $expected events accepted"
agent_stop || fail "the agent did not stop cleanly"
assert_eq "$expected" "$(accepted_count)" "events accepted"
assert_eq 0 "$(cut -f1 "$T/accepted.tsv" | sort | uniq -d | wc -l)" "identifiers accepted more than once"
note "ok"

#!/usr/bin/env bash
# API v2, Stripe's clock hours ahead of this host's and then set right while the agent runs (or
# this host's set right: the same to the agent). The next session measures again: the agent says
# the clocks agree again (a few seconds apart is agreement: NTP keeps clocks within seconds, and a
# warning to check this host's time would be wrong), and an event it dead-lettered by the clock
# ahead is, when it comes again, judged by the clock as it is now and accepted.
. "$(dirname "$0")/lib.sh"
lm_init v2_clock_agrees

SKEW=10800   # Stripe's clock 3 hours ahead at first
DAYS35=$((35 * 86400))
double_start --timestamp-skew "$SKEW" --session-ttl 10
mkdir -p "$T/logs"
log=$T/logs/app.log
# An event 35 days less 90 minutes old by this host's clock: outside Stripe's 35 days less the
# agent's hour of margin while Stripe's clock is 3 hours ahead, inside them once it agrees.
now0=$(date +%s)
old_ts=$((now0 - DAYS35 + 5400))
printf '%d cus_A 3\n' "$old_ts" >"$log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

agent_start "$conf"
dead_one() { [ "$(export_count "$conf" dead 2>/dev/null)" = 1 ]; }
wait_until 30 dead_one ||
	fail "the event was not dead-lettered by Stripe's clock ahead: $(tail -n 5 "$T/agent.log")"
grep -q "Stripe's clock is [0-9]* s ahead of this host's" "$T/agent.log" ||
	fail "the agent did not say Stripe's clock is ahead: $(tail -n 5 "$T/agent.log")"

# Stripe's clock a few seconds ahead: agreement. Recent events keep the agent sending until it
# has made a session since (a session is renewed when it is used).
_lm_double_post_json /_double/clock '{"skew": 5}' >/dev/null
sessions0=$(double_stat sessions)
renewed() {
	printf '%d cus_B 1\n' "$(date +%s)" >>"$log"
	[ "$(double_stat sessions)" -gt "$sessions0" ]
}
wait_until 60 renewed || fail "no new session: $(tail -n 5 "$T/agent.log")"
said() {
	grep -q "this host's clock agrees with Stripe's again" "$T/agent.log" ||
		grep -q "Stripe's clock is [0-9] s ahead of this host's" "$T/agent.log"
}
wait_until 30 said || fail "the agent said nothing of the clock: $(tail -n 5 "$T/agent.log")"
grep -q "this host's clock agrees with Stripe's again" "$T/agent.log" ||
	fail "the agent did not say the clocks agree again: $(grep "clock" "$T/agent.log" | tail -n 3)"

# The same old timestamp again (another line): accepted now.
printf '%d cus_A 4\n' "$old_ts" >>"$log"
old_accepted() {
	_lm_curl -f "$DOUBLE_URL/_double/events" | "$PYTHON3" -c '
import json, sys
ts = int(sys.argv[1])
print(sum(1 for e in json.load(sys.stdin) if int(e.get("timestamp") or 0) == ts))' "$old_ts" |
		grep -qx 1
}
wait_until 30 old_accepted || fail "the old event was not accepted once Stripe's clock agreed: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
assert_eq 1 "$(export_count "$conf" dead)" "dead letters (the first old event only)"

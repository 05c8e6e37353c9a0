#!/usr/bin/env bash
# API v2, this host's clock 3 hours behind (Stripe's clock ahead of it by as much, which the
# session measures), then stepped right (NTP, `date -s`) while the session is still held. The
# session's measure belongs to the clock as it was: judging events by this host's stepped clock
# plus the old offset puts Stripe's clock 3 hours ahead of itself and dead-letters events Stripe
# takes. An event 35 days less 90 minutes old by Stripe's clock, written after the step, is
# accepted, not a dead letter. The agent's clock is moved by libfaketime (skipped without it);
# the double's is real time.
. "$(dirname "$0")/lib.sh"
lm_init v2_clock_step
faketime_find || skip "libfaketime is needed"

DAYS35=$((35 * 86400))
double_start
mkdir -p "$T/logs"
log=$T/logs/app.log
printf '%d cus_A 1\n' "$(date +%s)" >"$log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

echo "-3h" >"$T/faketime"
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_start "$conf"
wait_until 30 accepted_at_least 1 || fail "the first event was not accepted: $(tail -n 5 "$T/agent.log")"
grep -q "Stripe's clock is 108[0-9][0-9] s ahead of this host's" "$T/agent.log" ||
	fail "the agent did not measure Stripe's clock 3 hours ahead: $(grep clock "$T/agent.log" | tail -n 3)"

# This host's clock set right; the session made before is still held (15 minutes).
echo "+0" >"$T/faketime"
old_ts=$(($(date +%s) - DAYS35 + 5400))
printf '%d cus_A 2\n' "$old_ts" >>"$log"
settled() { accepted_at_least 2 || [ "$(export_count "$conf" dead 2>/dev/null)" -gt 0 ]; }
wait_until 30 settled || fail "the event after the step was neither sent nor dead: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
assert_eq 0 "$(export_count "$conf" dead)" "dead letters (Stripe takes the event)"
assert_eq 2 "$(accepted_count)" "events accepted"
assert_eq 1 "$(awk -F'\t' -v t="$old_ts" '$5 == t' "$T/accepted.tsv" | wc -l)" \
	"the event after the step accepted"

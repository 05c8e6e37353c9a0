#!/usr/bin/env bash
# API v1: an attempt whose outcome is unknown (the answer cut off after Stripe took the event),
# then the event ages out of Stripe's 35 days before it is sent again. Stripe took it: sent again
# with its Idempotency-Key it gets Stripe's saved answer, and is delivered, billed once. It must
# not be a dead letter "not sent" (it was sent, and billed). The agent's clock is moved an hour
# on by libfaketime (skipped without it); the double's is real time.
. "$(dirname "$0")/lib.sh"
lm_init unknown_aged_out
faketime_find || skip "libfaketime is needed"

DAYS35=$((35 * 86400))
double_start
mkdir -p "$T/logs"
log=$T/logs/app.log
# 35 days less 30 minutes old: inside Stripe's window now, outside it an hour on.
ts=$(($(date +%s) - DAYS35 + 1800))
printf '%d cus_A 7\n' "$ts" >"$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

# Every answer cut off after the event was taken: its outcome stays unknown.
double_faults 'cut_after*1000'
agent_start "$conf"
unknown() {
	[ "$(export_tsv "$conf" pending 2>/dev/null | awk -F'\t' '$15 > 0' | wc -l)" -eq 1 ]
}
wait_until 30 unknown || fail "no attempt of unknown outcome: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
assert_eq 1 "$(accepted_count)" "events the double took"
double_faults_json '{"clear": true}' >/dev/null

# An hour on: outside 35 days by the agent's clock.
echo "+1h" >"$T/faketime"
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once exit status"
assert_eq 0 "$(export_count "$conf" dead)" "dead letters (Stripe took the event)"
assert_eq 1 "$(export_count "$conf" delivered)" "events delivered"
assert_eq 1 "$(accepted_count)" "events the double took (once)"

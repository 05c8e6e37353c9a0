#!/usr/bin/env bash
# API v2: a stream request whose outcome is unknown (the answer cut off after Stripe took the
# events), then Stripe's clock shows the event within the agent's hour from the end of 35 days
# before it is sent again. The stream would take it and drop it, whether or not it took it the
# first time: the agent cannot tell, and says so (unsure), rather than call it a dead letter
# "not sent" (it was sent, and Stripe took it).
. "$(dirname "$0")/lib.sh"
lm_init v2_unknown_aged_out

DAYS35=$((35 * 86400))
double_start
mkdir -p "$T/logs"
log=$T/logs/app.log
# 35 days less 90 minutes old: outside the agent's margin by Stripe's clock while it agrees with
# this host's, inside it once Stripe's clock is an hour ahead.
ts=$(($(date +%s) - DAYS35 + 5400))
printf '%d cus_A 7\n' "$ts" >"$log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

double_faults 'cut_after*1000'
agent_start "$conf"
unknown() {
	[ "$(export_tsv "$conf" pending 2>/dev/null | awk -F'\t' '$15 > 0' | wc -l)" -eq 1 ]
}
wait_until 30 unknown || fail "no attempt of unknown outcome: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
assert_eq 1 "$(accepted_count)" "events the double took"

double_restart --timestamp-skew 3600
rc=0
agent_once "$conf" || rc=$?
[ "$rc" -ne 124 ] || fail "run --once did not end"
assert_eq 0 "$(export_count "$conf" dead)" "dead letters (Stripe took the event)"
assert_eq 1 "$(export_count "$conf" unsure usage "Stripe may have taken it then")" "unsure events"
assert_eq 1 "$(accepted_count)" "events the double took (once)"

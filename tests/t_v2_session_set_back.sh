#!/usr/bin/env bash
# API v2: a meter event session whose `created` is more than a day off this host's clock is
# refused as a wrong answer (t_v2_session_skew.sh), but not when it agrees with the latest time
# seen (docs/stripe-contract.md section 14, "One field is no proof of a clock"): this host's
# clock set back more than a day while the agent was stopped (no hardware clock, a VM restored
# from a snapshot) would otherwise pause sending for good, until someone sets the clock right.
#  1. A run with this host's clock and Stripe's both 26 hours on (libfaketime; the double's
#     --timestamp-skew), nothing to send: the spool keeps the latest time seen.
#  2. This host's clock set back 26 hours, Stripe's still on: the spool's time and two agreeing
#     answers of Stripe's (the meter list) say the session's `created` is Stripe's clock; every
#     line's event is sent, once.
. "$(dirname "$0")/lib.sh"
lm_init v2_session_set_back
faketime_find || skip "libfaketime is needed"
AHEAD=$((26 * 3600))
double_start --timestamp-skew "$AHEAD"
mkdir -p "$T/logs"
: >"$T/logs/a.log"
write_config "$T/a.conf"
config_v2 "$T/a.conf"
config_epoch_rule "$T/a.conf" "$T/logs/a.log"

# --- 1. both clocks 26 hours on -----------------------------------------------------------------
echo "+26h" >"$T/faketime"
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$T/a.conf" || rc=$?
assert_eq 0 "$rc" "the exit status of the run with nothing to send"

# --- 2. this host's clock set back --------------------------------------------------------------
now=$(date +%s)
for c in A B C; do printf '%d cus_%s 5\n' "$now" "$c"; done >>"$T/logs/a.log"
expected=$(grep -cP '^\d+ cus_\w+ \S+$' "$T/logs/a.log")
rc=0
agent_once "$T/a.conf" || rc=$?
assert_eq 0 "$rc" "the exit status of the run with this host's clock set back"
assert_eq "$expected" "$(double_accepted_ids | sort -u | wc -l)" "identifiers the double took"
assert_eq "$expected" "$(accepted_count)" "events the double took"
if grep -q "the session is not used" "$T/agent.log"; then
	fail "the session was refused: $(grep -m1 "the session is not used" "$T/agent.log")"
fi

#!/usr/bin/env bash
# One answer whose Date is far ahead (a wrong clock behind a proxy, a hostile answer) must not
# become the latest time seen for good (docs/stripe-contract.md section 13, "The 24-hour edge"):
# kept in the spool, it would hold every later run's clock for the 24-hour limit there, so that
# time while the agent is stopped no longer counts, and it would stamp first_unknown years ahead.
# An event of unknown outcome is then re-sent after Stripe has forgotten its identifier: billed
# twice. Only a time that a second answer agrees with is kept.
#  1. A run --once whose one answer (the meter list) has a Date ten years ahead, and nothing to
#     send; then, Stripe's clock right, a run in which an event's attempt has an unknown outcome:
#     its first_unknown is not ahead of this host's clock.
#  2. (libfaketime; skipped without it) The host's clock 25 hours on, as after a day stopped, and
#     the double's clock for its TTLs too: the event is unsure, taken once.
. "$(dirname "$0")/lib.sh"
lm_init clock_date_ahead
DAY1=$((25 * 3600))
YEARS10=$((10 * 365 * 86400))
double_start
mkdir -p "$T/logs"
: >"$T/logs/a.log"
write_config "$T/a.conf"
config_epoch_rule "$T/a.conf" "$T/logs/a.log"

# --- 1. one answer ten years ahead --------------------------------------------------------------
_lm_double_post_json /_double/clock "{\"skew\": $YEARS10}"
rc=0
agent_once "$T/a.conf" || rc=$?
grep -q "this host's clock is [0-9]* s behind Stripe's clock (the Date of its answer)" \
	"$T/agent.log" || fail "the Date ten years ahead was not seen: $(tail -n 5 "$T/agent.log")"
note "the run with the Date ahead exited $rc"
_lm_double_post_json /_double/clock '{"skew": 0}'

printf '%d cus_A 7\n' "$(date +%s)" >>"$T/logs/a.log"
double_faults 'cut_after*1000'
agent_start "$T/a.conf"
unknown() { [ "$(export_tsv "$T/a.conf" pending 2>/dev/null | awk -F'\t' '$15 > 0' | wc -l)" -eq 1 ]; }
wait_until 30 unknown || fail "no attempt of unknown outcome: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
double_faults_json '{"clear": true}' >/dev/null
now=$(date +%s)
id_a=$(export_tsv "$T/a.conf" pending | cut -f2)
fu=$(export_tsv "$T/a.conf" pending | cut -f15)
# The attempt was before $now by this host's clock, which was right all along.
[ "$fu" -le "$now" ] ||
	fail "first_unknown $fu is $((fu - now)) s ahead of this host's clock ($now)"
assert_eq 1 "$(double_accepted_ids | grep -cxF -- "$id_a" || true)" \
	"times the double took event A before the stop"

# --- 2. a day stopped ---------------------------------------------------------------------------
if ! faketime_find; then
	note "part 2 skipped: libfaketime is needed"
	exit 0
fi
_lm_double_post_json /_double/clock "{\"advance\": $DAY1}"
echo "+25h" >"$T/faketime"
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$T/a.conf" || rc=$?
note "the run a day later exited $rc"
assert_eq 1 "$(export_count "$T/a.conf" unsure)" "unsure events"
assert_eq 0 "$(export_count "$T/a.conf" delivered)" "delivered events"
assert_eq 1 "$(double_accepted_ids | grep -cxF -- "$id_a" || true)" "times the double took event A"

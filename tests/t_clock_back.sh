#!/usr/bin/env bash
# The 24-hour edge against a host clock that is behind (docs/stripe-contract.md section 13): an
# event whose attempt had an unknown outcome (the answer cut off after Stripe took it) must not
# be re-sent once Stripe may have forgotten its identifier (24 hours), whatever this host's clock
# says after a stop. Re-sent then, Stripe takes it again: billed twice.
#  1. The host's clock not moved forward while the agent was stopped a day (no hardware clock):
#     Stripe's clock, the Date of its answers (here the meter list read at start, before any
#     event is sent), is 25 hours ahead: the event is unsure, not re-sent.
#  2. The host's clock right for a run a day later that could not send (the key refused), then
#     set back 25 hours for the next run (libfaketime for the first; skipped without it); Stripe's
#     clock a day on, as it is: the spool kept the latest time seen, which Stripe's clock
#     confirms (two agreeing answers before any event is sent), and the event is unsure, not
#     re-sent. (Had Stripe's clock said this host's was right, the kept time would have been
#     the wrong one: t_clock_kept_ahead.sh.)
# The double's clock for its TTLs is moved on 25 hours each time, so that a re-sent identifier
# would be taken again (Stripe's "at least 24 hours").
. "$(dirname "$0")/lib.sh"
lm_init clock_back
DAY1=$((25 * 3600))
double_start
mkdir -p "$T/logs"

# unknown_then_stop CONF: runs the agent until its one event has an attempt of unknown outcome
# (first_unknown set), then stops it. The double took the event.
unknown_then_stop() {
	local conf=$1
	double_faults 'cut_after*1000'
	agent_start "$conf"
	unknown() { [ "$(export_tsv "$conf" pending 2>/dev/null | awk -F'\t' '$15 > 0' | wc -l)" -eq 1 ]; }
	wait_until 30 unknown || fail "no attempt of unknown outcome: $(tail -n 5 "$T/agent.log")"
	agent_stop || fail "the agent exited $? on SIGTERM"
	double_faults_json '{"clear": true}' >/dev/null
}

# taken ID: how many times the double accepted the identifier ID (its record, across TTLs).
taken() {
	double_accepted_ids | grep -cxF -- "$1" || true
}

# --- 1. Stripe's clock 25 hours ahead of the host's ---------------------------------------------
printf '%d cus_A 7\n' "$(date +%s)" >"$T/logs/a.log"
write_config "$T/a.conf"
config_epoch_rule "$T/a.conf" "$T/logs/a.log"
unknown_then_stop "$T/a.conf"
id_a=$(export_tsv "$T/a.conf" pending | cut -f2)
assert_eq 1 "$(taken "$id_a")" "times the double took event A before the stop"
_lm_double_post_json /_double/clock "{\"advance\": $DAY1, \"skew\": $DAY1}"
rc=0
agent_once "$T/a.conf" || rc=$?
assert_eq 1 "$(export_count "$T/a.conf" unsure)" "unsure events (A)"
assert_eq 0 "$(export_count "$T/a.conf" delivered)" "delivered events (A)"
assert_eq 1 "$(taken "$id_a")" "times the double took event A"
grep -q "this host's clock is [0-9]* s behind Stripe's clock (the Date of its answer)" \
	"$T/agent.log" || fail "the log does not say the host's clock is behind: $(tail -n 5 "$T/agent.log")"
note "part 1: run --once exited $rc"

# --- 2. the host's clock set back 25 hours between two runs --------------------------------------
if ! faketime_find; then
	note "part 2 skipped: libfaketime is needed"
	exit 0
fi

_lm_double_post_json /_double/clock '{"skew": 0}'
mkdir -p "$T/state_b"
printf '%d cus_B 9\n' "$(date +%s)" >"$T/logs/b.log"
sed "s#^state_dir = .*#state_dir = $T/state_b#" "$T/a.conf" |
	sed "s#$T/logs/a.log#$T/logs/b.log#" >"$T/b.conf"
unknown_then_stop "$T/b.conf"
id_b=$(export_tsv "$T/b.conf" pending | cut -f2)
assert_eq 1 "$(taken "$id_b")" "times the double took event B before the stop"

# A day later, by the host's clock set right and Stripe's: the key is refused, so the run sends
# nothing.
_lm_double_post_json /_double/clock "{\"advance\": $DAY1, \"skew\": $DAY1}"
cp "$T/stripe.key" "$T/stripe.key.good"
printf 'sk_test_refused_%s\n' "$(_lm_random)" >"$T/stripe.key"
echo "+25h" >"$T/faketime"
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$T/b.conf" || rc=$?
[ "$rc" -ne 0 ] || fail "run --once with a refused key exited 0"
assert_eq 1 "$(export_count "$T/b.conf" pending)" "pending events (B) after the refused run"
cp "$T/stripe.key.good" "$T/stripe.key"

# The host's clock set back to real time, Stripe's still a day on: Stripe has forgotten B's
# identifier.
rc=0
agent_once "$T/b.conf" || rc=$?
assert_eq 1 "$(export_count "$T/b.conf" unsure)" "unsure events (B)"
assert_eq 0 "$(export_count "$T/b.conf" delivered)" "delivered events (B)"
assert_eq 1 "$(taken "$id_b")" "times the double took event B"
grep -q "this host's clock is [0-9]* s behind the latest time this spool has seen" \
	"$T/agent.log" || fail "the log does not say the host's clock is behind: $(tail -n 5 "$T/agent.log")"
note "part 2: run --once exited $rc"

#!/usr/bin/env bash
# A latest time seen that is wrong ahead must not stretch Stripe's 24 hours
# (docs/stripe-contract.md section 13, "The 24-hour edge"). The spool keeps the latest time seen
# (clock_seen) so that a host clock set back while the agent is stopped cannot stretch the limit;
# but a host clock wrong AHEAD while the agent ran (a hardware clock with garbage at boot, a typo
# in `date -s`) left that future time there, and first_unknown stamped with it: the time stopped
# no longer counted, and an event of unknown outcome was re-sent after Stripe had forgotten its
# identifier. Billed twice.
#  1. This host's clock 72 hours ahead (libfaketime) while the agent runs; Stripe's clock right.
#     The event's attempt has an unknown outcome (the answer cut off after Stripe took it).
#  2. A day later, this host's clock right (libfaketime +25 h) and Stripe's (the double's Date,
#     and its clock for the TTLs, both 25 hours on).
#     a. Stripe's clock not read (the double holds the meter list past the agent's timeout):
#        this host's clock alone cannot tell a kept time wrong ahead from a host clock set back
#        while stopped, so the event of unknown outcome is held, not re-sent.
#     b. The meter list answered: two answers agree with this host's clock that the kept time is
#        ahead. The event's outcome became unknown at a time that cannot be known: it is unsure,
#        not re-sent; the double took it once.
. "$(dirname "$0")/lib.sh"
lm_init clock_kept_ahead
faketime_find || skip "libfaketime is needed"
DAY1=$((25 * 3600))
AHEAD=$((72 * 3600))
double_start
mkdir -p "$T/logs"
printf '%d cus_A 7\n' "$(date +%s)" >"$T/logs/a.log"
write_config "$T/a.conf"
config_epoch_rule "$T/a.conf" "$T/logs/a.log"

# --- 1. this host's clock 72 hours ahead --------------------------------------------------------
echo "+72h" >"$T/faketime"
double_faults 'cut_after*1000'
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_start "$T/a.conf"
unknown() { [ "$(export_tsv "$T/a.conf" pending 2>/dev/null | awk -F'\t' '$15 > 0' | wc -l)" -eq 1 ]; }
wait_until 60 unknown || fail "no attempt of unknown outcome: $(tail -n 5 "$T/agent.log")"
agent_stop || fail "the agent exited $? on SIGTERM"
double_faults_json '{"clear": true}' >/dev/null
id_a=$(export_tsv "$T/a.conf" pending | cut -f2)
fu=$(export_tsv "$T/a.conf" pending | cut -f15)
now=$(date +%s)
# The premise: first_unknown was stamped by the clock ahead (at least 71 of its 72 hours).
[ $((fu - now)) -gt $((AHEAD - 3600)) ] ||
	fail "first_unknown $fu is not ahead of the real time $now: the clock ahead was not used"
assert_eq 1 "$(double_accepted_ids | grep -cxF -- "$id_a" || true)" \
	"times the double took event A before the stop"

# --- 2a. a day later, both clocks right; Stripe's not read ---------------------------------------
_lm_double_post_json /_double/clock "{\"advance\": $DAY1, \"skew\": $DAY1}" >/dev/null
echo "+25h" >"$T/faketime"
double_faults_json '{"hold_meters": true}' >/dev/null
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$T/a.conf" || rc=$?
double_faults_json '{"hold_meters": false}' >/dev/null
assert_eq 1 "$(double_accepted_ids | grep -cxF -- "$id_a" || true)" \
	"times the double took event A (Stripe's clock not read)"
# --once ends with the held event unsent: not a success.
[ "$rc" -ne 0 ] || fail "the run that left event A unsent exited 0"
assert_eq 1 "$(export_count "$T/a.conf" pending)" "pending events (Stripe's clock not read)"
grep -q "held until Stripe's clock tells which is right" "$T/agent.log" ||
	fail "the log does not say the event is held: $(tail -n 5 "$T/agent.log")"

# --- 2b. the same, Stripe's clock read ----------------------------------------------------------
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$T/a.conf" || rc=$?
note "the run a day later exited $rc"
assert_eq 1 "$(double_accepted_ids | grep -cxF -- "$id_a" || true)" "times the double took event A"
assert_eq 0 "$(export_count "$T/a.conf" delivered)" "delivered events"
assert_eq 1 "$(export_count "$T/a.conf" unsure "" "stamped")" "unsure events, stamped ahead"
grep -q "the latest time seen .* is [0-9]* s ahead of this host's clock .* and of Stripe's" \
	"$T/agent.log" || fail "the log does not say the kept time was ahead: $(tail -n 5 "$T/agent.log")"
# The spool's latest time seen was set back with it: at most this host's clock (25 hours on) now,
# nowhere near the first_unknown stamped 72 hours on.
seen=$("$PYTHON3" -c '
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(db.execute("SELECT value FROM meta WHERE key = ?", ("clock_seen",)).fetchone()[0])
' "$T/state/spool.db")
[ "$seen" -le $(($(date +%s) + DAY1 + 60)) ] ||
	fail "the spool's clock_seen $seen is still ahead of this host's clock"

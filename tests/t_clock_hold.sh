#!/usr/bin/env bash
# Events stamped ahead of the clock (this host's clock was stepped back, or the lines come from a
# host whose clock runs ahead): Stripe takes a timestamp at most 5 minutes ahead of its own clock.
# Such events are held, counted in `status`, never block the others, and are sent unchanged once
# they are within the window less a minute of margin; they are never dead-lettered. Stripe's own
# "too far in the future" (its clock behind this host's) holds the event too. An event more than
# a day ahead is no clock step: a dead letter with that reason. `run --once` does not wait for held
# events, and exits 1 for them. `status` says Stripe's clock is behind, by at least what its
# answers show, rather than blaming the events' timestamps.
. "$(dirname "$0")/lib.sh"
lm_init clock_hold
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
ahead=$((now + 258)) # 18 s past the margin: within Stripe's 5 minutes, but not by a minute
{
	printf '%s cus_AHEAD 7\n' "$ahead"
	printf '%s cus_NOW 3\n' "$now"
	printf '%s cus_AHEAD 5\n' "$((ahead + 2))"
	printf '%s cus_NOW 4\n' "$((now - 60))"
	printf '%s cus_FAR 9\n' "$((now + 2 * 86400))"
} > "$log"
write_config "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source app]
path = $log
[rule usage]
source = app
event_name = requests
pattern = ^(?<t>\d+) (?<c>cus_\w+) (?<v>\d+)$
customer = c
value = v
timestamp = t
timestamp_format = epoch
CONF
conf="$T/logmeter.conf"
"$LOGMETER" test-rule -c "$conf" "$log" > "$T/test-rule.out"
assert_eq 2 "$(grep -c -- '-> held' "$T/test-rule.out")" "events test-rule announces as held"
assert_eq 1 "$(grep -c -- '-> dead letter: more than a day ahead' "$T/test-rule.out")" \
	"events test-rule announces as too far ahead"

agent_start "$conf"
wait_until 30 accepted_at_least 2 || fail "the events within the window were not sent"
held() { "$LOGMETER" status -c "$conf" > "$T/status" 2>&1 && grep -q '^held: 2 events stamped too far ahead' "$T/status"; }
wait_until 60 held || fail "status does not show the held events: $(cat "$T/status")"
grep -q 'dead letters 1,' "$T/status" || fail "expected one dead letter (the event two days ahead): $(cat "$T/status")"
[ "$(date +%s)" -lt $((ahead - 240)) ] || skip "the machine was too slow to see the hold"
assert_eq 0 "$(grep -c cus_AHEAD "$T/accepted.tsv" || true)" "events sent while too far ahead"
grep -q 'ahead of this host.s clock, more than Stripe.s 5 minutes: held until it is valid' "$T/agent.log" ||
	fail "the log does not say why the events wait"
wait_until 60 accepted_at_least 4 || fail "the held events were not sent once valid: $(cat "$T/status")"
agent_stop || fail "agent exited $? on SIGTERM"
# Sent unchanged: the double accepted each line's own time and value, once.
awk -F'\t' '{print $3, $4, $5}' "$T/accepted.tsv" | sort > "$T/got"
grep -v cus_FAR "$log" | awk '{print $2, $3, $1}' | sort > "$T/want"
diff -u "$T/want" "$T/got" > "$T/diff" || fail "accepted events differ: $(cat "$T/diff")"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered 4, dead letters 1, unsure 0" <<<"$st" || fail "status: $st"
assert_eq 1 "$(export_tsv "$conf" dead | awk -F'\t' '$6 == "cus_FAR" && index($11, "more than a day: a wrong timestamp or clock")' | wc -l)" \
	"the event two days ahead as a dead letter with its reason"

# run --once delivers what it can and does not wait for an event held for an hour; it exits 1,
# since usage is left unsent.
printf '%s cus_HOUR 1\n%s cus_NOW 2\n' "$((now + 3600))" "$(date +%s)" >> "$log"
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once with a held event"
grep -q 'run --once: 1 events are held' "$T/agent.log" || fail "run --once did not say it left a held event"
assert_eq 5 "$(accepted_count)" "events accepted after run --once"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 1, delivered 5, dead letters 1" <<<"$st" || fail "status after run --once: $st"

# Stripe's clock 90 s behind this host's: an event 230 s ahead is sent (it is within the margin
# here), Stripe answers "more than 5 minutes in the future", and the event is held, not dead, and
# taken once Stripe's clock has caught up.
# Stripe refuses it only if it is sent within 20 s of `t`'s reading of the clock (t > a + 210):
# the line is written once the agent runs, so that its start (slow under a sanitizer on a loaded
# machine) does not count against those 20 s.
double_restart --timestamp-skew -90
started=$(grep -c 'started: instance' "$T/agent.log" || true)
agent_start "$conf"
wait_until 60 eval '[ "$(grep -c "started: instance" "$T/agent.log")" -gt "$started" ]' ||
	fail "the agent did not start: $(tail -n 5 "$T/agent.log")"
t=$(( $(date +%s) + 230 ))
printf '%s cus_SKEW 6\n' "$t" >> "$log"
# While it is held, status blames Stripe's clock, not the event's timestamp (the agent's log says
# so too); seen unless the event was taken first.
skew_seen() {
	"$LOGMETER" status -c "$conf" > "$T/status" 2>&1
	grep -q '^held: 1 events' "$T/status" || grep -q cus_SKEW "$T/accepted.tsv"
}
wait_until 90 skew_seen || fail "status never showed the event Stripe found too early: $(cat "$T/status")"
if grep -q '^held: 1 events' "$T/status"; then
	grep -q "^held: 1 events stamped more than 5 minutes ahead of Stripe's clock, which is at least [0-9]* s behind this host's" "$T/status" ||
		fail "status blames the event's timestamp, not Stripe's clock: $(cat "$T/status")"
fi
wait_until 90 eval 'grep -q cus_SKEW "$T/accepted.tsv"' || fail "the event Stripe found too early was never sent again: $(tail -n 5 "$T/agent.log")"
# Stripe refused the event at a time a with t > (a - 90) + 300 and a >= t - 230: the agent's
# lower bound a - (t - 300) is at least 70 and less than 90.
"$LOGMETER" status -c "$conf" > "$T/status" 2>&1 || true
behind=$(sed -n "s/^clock: Stripe's clock is at least \([0-9]*\) s behind this host's (Stripe's answers: timestamp too far in the future).*/\1/p" "$T/status")
[ -n "$behind" ] || fail "status does not say Stripe's clock is behind: $(cat "$T/status")"
[ "$behind" -ge 70 ] && [ "$behind" -le 90 ] || fail "status says Stripe's clock is $behind s behind; the double's is 90 s behind, and its answer shows at least 70"
agent_stop || fail "agent exited $? on SIGTERM"
awk -F'\t' '$7 == "cus_SKEW" {print $3}' "$T/double.log" | tr '\n' ' ' > "$T/skew_statuses"
grep -q '^400 .*200 $' "$T/skew_statuses" || fail "expected 400 (too far in the future) then 200: $(cat "$T/skew_statuses")"
assert_eq "$t" "$(awk -F'\t' '$3 == "cus_SKEW" {print $5}' "$T/accepted.tsv")" "the timestamp Stripe accepted"
grep -q "dead letters 1," <(  "$LOGMETER" status -c "$conf") || fail "Stripe's too-early answer made a dead letter"
note "held events sent unchanged once valid; a day ahead is a dead letter; --once leaves held events; Stripe's clock behind holds too"

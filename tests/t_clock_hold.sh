#!/usr/bin/env bash
# Events stamped more than 5 minutes ahead of the clock (this host's clock was stepped back, or the
# lines come from a host whose clock runs ahead) are held, counted in `status`, and sent unchanged
# once Stripe takes them; they are never dead-lettered. Events within the window go on meanwhile.
. "$(dirname "$0")/lib.sh"
lm_init clock_hold
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
ahead=$((now + 318)) # 18 s past Stripe's 5 minutes
{
	printf '%s cus_AHEAD 7\n' "$ahead"
	printf '%s cus_NOW 3\n' "$now"
	printf '%s cus_AHEAD 5\n' "$((ahead + 2))"
	printf '%s cus_NOW 4\n' "$((now - 60))"
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
"$LOGMETER" test-rule -c "$conf" "$log" | grep -c 'dead letter' > "$T/dead" || true
assert_eq 0 "$(cat "$T/dead")" "test-rule calls the held events dead letters"

agent_start "$conf"
wait_until 30 accepted_at_least 2 || fail "the events within the window were not sent"
held() { "$LOGMETER" status -c "$conf" > "$T/status" 2>&1 && grep -q '^held: 2 events stamped more than 5 minutes ahead' "$T/status"; }
wait_until 10 held || fail "status does not show the held events: $(cat "$T/status")"
grep -q 'dead letters 0' "$T/status" || fail "held events were dead-lettered: $(cat "$T/status")"
[ "$(date +%s)" -lt $((ahead - 300)) ] || skip "the machine was too slow to see the hold"
assert_eq 0 "$(grep -c cus_AHEAD "$T/accepted.tsv" || true)" "events sent while more than 5 minutes ahead"
grep -q 'ahead of this host.s clock, more than Stripe.s 5 minutes: held until it is valid' "$T/agent.log" ||
	fail "the log does not say why the events wait"
wait_until 60 accepted_at_least 4 || fail "the held events were not sent once valid: $(cat "$T/status")"
agent_stop || fail "agent exited $? on SIGTERM"
# Sent unchanged: the double accepted each line's own time and value, once.
awk -F'\t' '{print $3, $4, $5}' "$T/accepted.tsv" | sort > "$T/got"
awk '{print $2, $3, $1}' "$log" | sort > "$T/want"
diff -u "$T/want" "$T/got" > "$T/diff" || fail "accepted events differ: $(cat "$T/diff")"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered 4, dead letters 0, unsure 0" <<<"$st" || fail "status: $st"
note "2 events 318 s ahead held, then sent unchanged; the others went on meanwhile"

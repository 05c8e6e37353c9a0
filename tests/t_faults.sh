#!/usr/bin/env bash
# Stripe failing for a while (500s, 503s, 429s, dropped connections before and after the event was
# accepted, slow answers): everything is delivered afterwards, each identifier accepted once. Then a
# wrong API key: sending pauses (401), nothing is dead-lettered, and it resumes once the key is fixed.
. "$(dirname "$0")/lib.sh"
lm_init faults
double_start --faults '500*15,503*10,429*15,429lock*5,409*3,drop*10,drop_after*10,slow:1500*2,502*5,504*5'

mkdir -p "$T/logs"
head -n 1500 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/access.log"
sed -i 's/^\[stripe\]$/[stripe]\nrequest_timeout = 1s/' "$T/logmeter.conf"

agent_once "$T/logmeter.conf" || fail "run --once exited $?"

assert_accepted_once "$T/logmeter.conf" "$T/logs/access.log"
n=$(wc -l < "$T/expected_ids")
# Every fault was met, and the ones after which Stripe had the event came back as duplicates.
assert_eq 0 "$(double_stat faults_pending)" "faults left in the double's queue"
# (A re-send under the same Idempotency-Key gets Stripe's first answer replayed, or a duplicate
# identifier error once that memory is gone: both mean "delivered".)
resent=$(( $(double_stat duplicates) + $(double_stat replays) ))
[ "$resent" -ge 10 ] || fail "drop_after re-sends were not answered as replays or duplicates: $resent"
st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending 0, delivered $n, dead letters 0" <<<"$st" || fail "status: $st"
echo "t_faults: $n events delivered through $(double_stat requests) requests"

# A wrong key: 401 pauses sending; nothing becomes a dead letter; exit code 3 in --once mode.
printf '%s\n' "$(head -n 20 "$LOGS/elastic_apache_logs.log" | tail -n 1)" >> "$T/logs/access.log"
head -n 1600 "$LOGS/elastic_apache_logs.log" | tail -n 100 >> "$T/logs/access.log"
printf 'sk_test_wrong_key_000\n' > "$T/stripe.key"
rc=0; agent_once "$T/logmeter.conf" || rc=$?
assert_eq 3 "$rc" "exit code of --once with a refused key"
grep -q '401' "$T/agent.log" || fail "no clear log line for the 401"
! grep -q 'sk_test_wrong_key_000' "$T/agent.log" || fail "the API key appears in the log"
st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "dead letters 0" <<<"$st" || fail "a 401 made dead letters: $st"
pending=$(sed -n 's/.*pending \([0-9]*\),.*/\1/p' <<<"$st")
[ "$pending" -gt 0 ] || fail "nothing pending after the 401: $st"
printf '%s\n' "$API_KEY" > "$T/stripe.key"
agent_once "$T/logmeter.conf" || fail "run --once with the fixed key exited $?"
st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending 0, delivered $((n + pending)), dead letters 0" <<<"$st" || fail "after fixing the key: $st"
echo "t_faults: 401 paused $pending events, delivered after the key was fixed"

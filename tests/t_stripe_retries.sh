#!/usr/bin/env bash
# Stripe's idempotency as documented (docs/stripe-contract.md): a 500 is saved under its
# Idempotency-Key and replayed for every retry with that key, with or without the event recorded;
# resets and dropped answers leave the outcome unknown. logmeter retries each of them under the
# next key generation with the same identifier: every event is accepted exactly once, nothing is
# dead-lettered, and no saved 500 is ever asked for again. Then the case of a line read again with
# a new read time (a power cut undid its commit): its first key was used with other parameters,
# Stripe answers idempotency_error, and the next key gets "already exists".
. "$(dirname "$0")/lib.sh"
lm_init stripe_retries
double_start --faults '500*4,500rec*4,503*2,reset*2,reset_after*2,drop_after*2'

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 300 "$LOGS/elastic_apache_logs.log" > "$log"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"
db="$T/state/spool.db"

agent_once "$conf" || fail "run --once exited $?"
assert_accepted_once "$conf" "$log"
n=$(apache_bytes_count "$log")
assert_eq 0 "$(double_stat faults_pending)" "faults left in the double's queue"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered $n, dead letters 0, unsure 0" <<<"$st" || fail "status: $st"
# After each 500, reset and dropped answer the next attempt went under a new key: none of the
# saved 500s was asked for again, and the events Stripe had recorded came back "already exists".
assert_eq 0 "$(double_stat error_replays)" "saved 500s replayed to logmeter"
[ "$(double_stat saved_errors)" -ge 8 ] || fail "the double saved $(double_stat saved_errors) 500s, expected 8"
# (libcurl may itself re-send a request whose connection closed before any answer byte, under the
# same key: Stripe then replays the saved 200.)
resent=$(( $(double_stat duplicates) + $(double_stat replays) ))
[ "$resent" -ge 8 ] || fail "only $resent 'already exists' or replayed answers after 500rec, reset_after and drop_after"
new_keys=$(awk -F'\t' '$2 == "/v1/billing/meter_events" && $5 ~ /-r[0-9]+$/' "$T/double.log" | wc -l)
[ "$new_keys" -ge 8 ] || fail "only $new_keys requests under a new key generation"
# The accepted events carry the identifier unchanged, whatever key they went under.
awk -F'\t' '$6 ~ /-r[0-9]+$/ && index($6, $1) != 1 {bad++} END {exit bad > 0}' "$T/accepted.tsv" ||
	fail "an event was accepted under a key that is not its identifier's"
note "$n events accepted once each through saved 500s, resets and dropped answers; $new_keys requests under new keys"

# A line read again with a new read time. The double is down while the agent reads 20 more lines,
# so their events wait in the spool under key generation 0; then another request with the first
# one's key and identifier but another timestamp reaches Stripe first (what the agent sent before
# a power cut undid the commit).
double_stop
head -n 320 "$LOGS/elastic_apache_logs.log" | tail -n 20 >> "$log"
n2=$(apache_bytes_count "$log")
[ "$n2" -gt "$n" ] || fail "test bug: the appended lines make no events"
agent_start "$conf"
wait_until 30 eval '[ "$(export_count "$conf" pending)" -eq '"$((n2 - n))"' ]' ||
	fail "the agent did not spool the appended lines"
agent_stop || fail "agent exited $? on SIGTERM"
double_restart
"$LOGMETER" spool export -c "$conf" --state pending > "$T/pending.jsonl" || fail "export exited $?"
read -r ident ts cust value gen < <("$PYTHON3" -c '
import json, sys
e = json.loads(open(sys.argv[1]).readline())
print(e["identifier"], e["timestamp"], e["payload"]["stripe_customer_id"], e["payload"]["value"], e["key_generation"])' "$T/pending.jsonl")
assert_eq 0 "$gen" "key generation of an event never sent"
code=$(curl -sS --noproxy '*' --max-time 20 -o "$T/first.json" -w '%{http_code}' \
	-H "Authorization: Bearer $API_KEY" -H "Idempotency-Key: $ident" \
	--data "event_name=bandwidth_bytes&identifier=$ident&timestamp=$((ts - 7))&payload[stripe_customer_id]=$cust&payload[value]=$value" \
	"$DOUBLE_URL/v1/billing/meter_events") || fail "curl to the double failed"
assert_eq 200 "$code" "the earlier send of $ident"
agent_once "$conf" || fail "run --once exited $?"
assert_accepted_once "$conf" "$log"
awk -F'\t' -v id="$ident" '$6 == id {print $3, $9}' "$T/double.log" > "$T/first_key"
grep -q '^400 .*idempotency_mismatch' "$T/first_key" || fail "the first key was not refused as used with other parameters: $(cat "$T/first_key")"
awk -F'\t' -v id="$ident" '$6 == id && $5 == id "-r1" {print $3, $9}' "$T/double.log" | grep -q '^400 .*duplicate' ||
	fail "the next key did not get 'already exists' for $ident"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered $n2, dead letters 0, unsure 0" <<<"$st" || fail "status: $st"
note "idempotency_error on a re-read line: retried under a new key, delivered once"

#!/usr/bin/env bash
# A customer's events that the sender's cursor passed over while its share of the queue was full
# are read for it later (pairs_load); once it has caught up, its events are the cursor's again.
# Reading them for the customer must stop at the cursor: an event read for the customer beyond it
# was read a second time when the cursor reached it, and sent twice (the second request replayed
# under the same Idempotency-Key). Here the queue fills with other customers' events before the
# cursor reaches the big customer's last lines, so the customer catches up past the cursor.
. "$(dirname "$0")/lib.sh"
lm_init pair_catch_up
double_start
double_faults_json '{"rate": 1.0, "kinds": ["slow:5"], "seed": 1}'

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
{
	for i in $(seq 40); do printf '%s cus_BIG %d\n' "$now" "$i"; done
	for c in $(seq 3000); do printf '%s cus_S%04d %d\n' "$now" "$c" "$c"; done
	for i in 41 42; do printf '%s cus_BIG %d\n' "$now" "$i"; done
} >"$log"
total=$(grep -c . "$log")
write_config "$T/logmeter.conf"
sed -i 's/^max_requests_per_second = .*/&\nmax_concurrency = 4/' "$T/logmeter.conf"
cat >>"$T/logmeter.conf" <<CONF
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
agent_start "$T/logmeter.conf"
all_done() { [ "$(grep -c . "$T/accepted.tsv" 2>/dev/null)" -ge "$total" ]; }
wait_until 300 all_done || fail "not every event accepted: $(grep -c . "$T/accepted.tsv")/$total"
big=$(awk -F'\t' '$3 == "cus_BIG"' "$T/accepted.tsv" | wc -l)
agent_stop || fail "agent exited $? on SIGTERM"
assert_eq 42 "$big" "events of cus_BIG accepted"
assert_eq "$total" "$(double_stat requests)" "meter-event requests (one per event)"
assert_eq 0 "$(double_stat replays)" "requests sent again under the same Idempotency-Key"
assert_eq 0 "$(double_stat duplicates)" "events sent again"
note "$total events, each sent once; cus_BIG's 42 among them"

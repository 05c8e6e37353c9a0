#!/usr/bin/env bash
# One customer's backlog never keeps the others waiting: Stripe takes one request at a time per
# customer and meter, so 3,000 events of one customer are sent one after the other, while the
# events of other customers, logged after them, go at once beside them. An event held for its
# timestamp (an hour ahead) does not hold back the later events of its own customer either.
. "$(dirname "$0")/lib.sh"
lm_init fairness
double_start
double_faults_json '{"rate": 1.0, "kinds": ["slow:30"], "seed": 1}'

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
{
	printf '%s cus_HELD 1\n' "$((now + 3600))"
	for i in $(seq 3000); do printf '%s cus_BIG %d\n' "$now" "$i"; done
	for c in $(seq 20); do printf '%s cus_SMALL%02d %d\n' "$now" "$c" "$c"; done
	printf '%s cus_HELD 2\n' "$now"
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
agent_start "$T/logmeter.conf"
small_done() { [ "$(grep -c $'\tcus_SMALL' "$T/accepted.tsv" 2>/dev/null)" -eq 20 ] && grep -q $'\tcus_HELD\t2\t' "$T/accepted.tsv"; }
wait_until 60 small_done || fail "the other customers' events waited: $(cut -f3 "$T/accepted.tsv" | sort | uniq -c)"
big=$(grep -c $'\tcus_BIG' "$T/accepted.tsv" || true)
agent_stop || fail "agent exited $? on SIGTERM"
# At 30 ms a request, the big backlog takes 90 s; the small customers finished long before.
[ "$big" -lt 2000 ] || fail "the small customers were served only after $big of the big one's 3000 events"
assert_eq 0 "$(grep -c $'\tcus_HELD\t1\t' "$T/accepted.tsv" || true)" "the event an hour ahead sent"
assert_eq 0 "$(double_stat concurrency_violations)" "requests for one customer at once"
note "20 small customers and a held customer's later event served while the big one had $big of 3000 accepted"

#!/usr/bin/env bash
# Dead letters: an event name with no meter, a line time from 2015, and a customer key missing from
# the customer map are each kept with the reason, visible in `status`, never sent (or, for the
# unknown meter, sent once and rejected); the run --once that made them exits 1 and says how many.
. "$(dirname "$0")/lib.sh"
lm_init dead_letters
double_start

mkdir -p "$T/logs"
head -n 200 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
# A map that knows every IP but the one on line 1.
first_ip=$(head -n 1 "$T/logs/access.log" | awk '{print $1}')
awk '{print $1}' "$T/logs/access.log" | sort -u | grep -vxF "$first_ip" | awk '{printf "%s,cus_%04d\n", $1, NR}' > "$T/customers.csv"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/access.log" "$T/customers.csv"
config_no_meter "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[rule old-time]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "[^"]*" 404
customer = ip
value = 1
timestamp = time
CONF

# Dead letters made during the run: run --once exits 1 (checked below, with the counts).
rc=0
agent_once "$T/logmeter.conf" || rc=$?

n_favicon=$(grep -c '"GET /favicon.ico' "$T/logs/access.log")
n_404=$(awk '$9 == 404' "$T/logs/access.log" | wc -l)
n_unmapped=$(awk -v ip="$first_ip" '$1 == ip && $9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$T/logs/access.log" | wc -l)
n_mapped=$(awk -v ip="$first_ip" '$1 != ip && $9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$T/logs/access.log" | wc -l)
[ "$n_favicon" -gt 0 ] && [ "$n_404" -gt 0 ] && [ "$n_unmapped" -gt 0 ] || fail "test bug: sample lacks cases ($n_favicon $n_404 $n_unmapped)"
dead=$((n_favicon + n_404 + n_unmapped))
assert_eq 1 "$rc" "run --once's exit status with dead letters"
tail -n 1 "$T/agent.log" | grep -q "run --once: during this run $dead events became dead letters: " ||
	fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"

st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending 0, delivered $n_mapped, dead letters $dead" <<<"$st" || fail "status: $st"
grep -q '^last error: .' <<<"$st" || fail "status shows no last error: $st"
assert_eq "$n_mapped" "$(wc -l < "$T/accepted.tsv")" "events the double accepted"

reason() { export_count "$T/logmeter.conf" dead "$1" "$2"; }
assert_eq "$n_favicon" "$(reason no-meter 'No active meter found for event name')" "unknown meter dead letters with Stripe's message"
assert_eq "$n_404" "$(reason old-time 'is outside Stripe')" "2015 timestamps dead-lettered before sending"
assert_eq "$n_unmapped" "$(reason bytes "not in customer map")" "unmapped customer dead letters"
# Old events were never sent: the double saw only the unknown-meter and the mapped requests.
assert_eq 0 "$(grep -c 'requests' "$T/accepted.tsv" || true)" "old events reached Stripe"
echo "t_dead_letters: $n_favicon unknown-meter, $n_404 too-old, $n_unmapped unmapped dead letters; $n_mapped delivered"

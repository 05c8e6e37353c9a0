#!/usr/bin/env bash
# The main job, end to end: the agent tails a real Apache access log into a local Stripe double on
# 127.0.0.1, billing the response bytes of 2xx requests to the customer each client IP maps to.
# Lines are appended while it runs. Shows the meter events the double accepted and `logmeter status`.
# KEEP=1 keeps the working directory (config, spool, logs) for a look afterwards.
. "$(dirname "$0")/lib.sh"
lm_init demo
double_start

mkdir -p "$T/logs"
head -n 2000 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
awk '{print $1}' "$LOGS/elastic_apache_logs.log" | sort -u | awk '{printf "%s,cus_demo%05d\n", $1, NR}' > "$T/customers.csv"
write_config "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source apache]
path = $T/logs/*.log

[rule bytes]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
customer_map = $T/customers.csv
value = bytes
CONF
count2xx() { awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$T/logs/access.log" | wc -l; }

echo "== configuration ($T/logmeter.conf)"
sed -n '/^\[source/,$p' "$T/logmeter.conf"
echo
echo "== logmeter run: tailing $T/logs/access.log (2,000 lines) into the Stripe double at $DOUBLE_URL"
agent_start "$T/logmeter.conf"
want=$(count2xx)
wait_until 60 accepted_at_least "$want" || fail "only $(accepted_count) of $want events arrived"
echo "   $want events delivered"

echo "== appending 500 more lines while the agent runs (one split in the middle of a line)"
sed -n 2001,2250p "$LOGS/elastic_apache_logs.log" >> "$T/logs/access.log"
line=$(sed -n 2251p "$LOGS/elastic_apache_logs.log")
printf '%s' "${line:0:40}" >> "$T/logs/access.log"; sleep 0.5; printf '%s\n' "${line:40}" >> "$T/logs/access.log"
sed -n 2252,2500p "$LOGS/elastic_apache_logs.log" >> "$T/logs/access.log"
want=$(count2xx)
wait_until 60 accepted_at_least "$want" || fail "only $(accepted_count) of $want events arrived"
sleep 1
agent_stop

echo
echo "== meter events the Stripe double accepted: $(accepted_count) (awk over the log expects $want)"
printf '%-46s %-16s %-14s %10s  %s\n' identifier event_name customer value timestamp
head -n 8 "$T/accepted.tsv" | awk -F'\t' '{printf "%-46s %-16s %-14s %10s  %s\n", $1, $2, $3, $4, $5}'
echo "..."
echo
echo "== bytes billed per customer (top 5)"
awk -F'\t' '{s[$3] += $4} END {for (c in s) printf "%-14s %12.0f\n", c, s[c]}' "$T/accepted.tsv" | sort -k2,2nr | head -n 5
echo
echo "== logmeter status"
"$LOGMETER" status -c "$T/logmeter.conf"
echo
echo "== agent log"
cat "$T/agent.log"

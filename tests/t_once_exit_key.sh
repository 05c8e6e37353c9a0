#!/usr/bin/env bash
# `run --once` from cron with a wrong API key, in a run whose lines hold client IPs the customer
# map lacks: it exits 3, and its last log line, which counts the dead letters the unmapped lines
# became, says that Stripe refused the key too. Before, that line spoke only of dead letters (and
# of `replay --dead`), after the refusal of the key, so that whoever reads only the end of a cron
# job's mail was not told that nothing was sent. Then the right key: exit 0, every mapped event
# delivered once, and no new dead letter. Counts from awk over the log and the map.
. "$(dirname "$0")/lib.sh"
lm_init once_exit_key
double_start

mkdir -p "$T/logs"
log=$T/logs/access.log
conf=$T/logmeter.conf
head -n 400 "$LOGS/elastic_apache_logs.log" > "$log"
# Every other client IP of the log, in order of first appearance, gets a customer.
LC_ALL=C awk '!seen[$1]++ { if (++n % 2) printf "%s,cus_k%05d\n", $1, n }' "$log" > "$T/customers.csv"
write_config "$conf"
config_apache_bytes "$conf" "$log" "$T/customers.csv"
# The 2xx lines with a byte count, split by whether the map has their IP.
LC_ALL=C awk -F, 'NR == FNR { m[$1] = 1; next }
	$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ { if ($1 in m) mapped++; else unmapped++ }
	END { print mapped + 0, unmapped + 0 }' "$T/customers.csv" FS=' ' "$log" > "$T/counts"
read -r mapped unmapped < "$T/counts"
[ "$mapped" -gt 0 ] && [ "$unmapped" -gt 0 ] || fail "test bug: $mapped mapped, $unmapped unmapped"

cp "$T/stripe.key" "$T/right.key"
echo "sk_test_not_the_right_key_$(date +%s)" > "$T/stripe.key"
rc=0
timeout 120 "$LOGMETER" run --once -c "$conf" 2> "$T/run.log" || rc=$?
assert_eq 3 "$rc" "exit status with a key Stripe refuses: $(tail -n 1 "$T/run.log")"
last=$(tail -n 1 "$T/run.log")
case $last in
*"during this run $unmapped events became dead letters"*) ;;
*) fail "the last log line does not count the $unmapped dead letters: $last" ;;
esac
case $last in
*"Stripe refused the API key"*"(exit 3)"*) ;;
*) fail "the last log line does not say that Stripe refused the key: $last" ;;
esac
assert_eq 0 "$(accepted_count)" "events accepted with the wrong key"

cp "$T/right.key" "$T/stripe.key"
rc=0
timeout 120 "$LOGMETER" run --once -c "$conf" 2> "$T/run2.log" || rc=$?
assert_eq 0 "$rc" "exit status with the right key: $(tail -n 1 "$T/run2.log")"
assert_eq "$mapped" "$(accepted_count)" "events accepted"
assert_eq "$mapped" "$(cut -f1 "$T/accepted.tsv" | sort -u | wc -l)" "distinct identifiers accepted"
note "ok: exit 3 saying both ($unmapped dead letters, the key), then exit 0 with $mapped events delivered"

#!/usr/bin/env bash
# The whole real Apache log, billing the response bytes of 2xx requests per client IP through a
# customer map: the double accepts exactly the events, identifiers and byte totals that an
# independent awk over the file computes.
. "$(dirname "$0")/lib.sh"
lm_init apache
double_start

mkdir -p "$T/logs"
cp "$LOGS/elastic_apache_logs.log" "$T/logs/access.log"
# The customer map: every client IP gets a customer id.
awk '{print $1}' "$T/logs/access.log" | sort -u | awk '{printf "%s,cus_%06d\n", $1, NR}' > "$T/customers.csv"

write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/*.log" "$T/customers.csv"

agent_once "$T/logmeter.conf" || fail "run --once exited $?"

# Expected, independently: byte offset of every 2xx line with a byte count, its customer and bytes.
LC_ALL=C awk 'NR==FNR {map[$1]=$2; next}
	$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {print off+0 "\t" map[$1] "\t" $10}
	{off += length($0) + 1}' FS=, "$T/customers.csv" FS=' ' "$T/logs/access.log" > "$T/expected.tsv"
n_expected=$(wc -l < "$T/expected.tsv")
[ "$n_expected" -gt 8000 ] || fail "test bug: only $n_expected expected events"

uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
cut -f1 "$T/expected.tsv" | identifiers_of apache "$uid" bytes > "$T/ids"
paste "$T/ids" <(cut -f2,3 "$T/expected.tsv") | sort > "$T/expected_events.tsv"
cut -f1,3,4 "$T/accepted.tsv" | sort > "$T/accepted_events.tsv"
diff -u "$T/expected_events.tsv" "$T/accepted_events.tsv" > "$T/diff" || fail "accepted events differ from awk's: $(head -20 "$T/diff")"

# Per-customer byte totals, and the grand total.
want=$(awk '{s += $3} END {printf "%.0f", s}' "$T/expected.tsv")
got=$(awk -F'\t' '{s += $4} END {printf "%.0f", s}' "$T/accepted.tsv")
assert_eq "$want" "$got" "total bytes billed"
assert_eq "$n_expected" "$(cut -f1 "$T/accepted.tsv" | sort -u | wc -l)" "distinct identifiers accepted"
assert_eq 0 "$(double_stat concurrency_violations)" "requests in flight at once for one customer and meter"

st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending 0, delivered $n_expected, dead letters 0" <<<"$st" || fail "status: $st"
lines=$(wc -l < "$T/logs/access.log")
grep -q "lines $lines  matched $n_expected  unmatched $((lines - n_expected))" <<<"$st" || fail "status counters: $st"
echo "t_apache: $n_expected events, $want bytes, as awk computed"

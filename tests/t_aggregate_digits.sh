#!/usr/bin/env bash
# A window's total is never lost for one value: Stripe takes a value of at most 15 significant
# digits, so a line that would give its window's total more goes on its own, under its own
# identifier, and the window keeps the total it had. Here a window of cus_B holds 99999999999.9999
# and then gets 0.00001 (99999999999.99991 would have 16 digits), and cus_C gets 999999999999999
# twice: every customer's total accepted by the double equals an exact sum of the log (Python's
# decimal), with no dead letter, and a second run sends nothing again.
. "$(dirname "$0")/lib.sh"
lm_init aggregate_digits
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
{
	printf '%s cus_A 1.5\n' "$now"
	printf '%s cus_B 99999999999.9999\n' "$now"
	printf '%s cus_A 2.25\n' "$now"
	printf '%s cus_B 0.00001\n' "$now"
	printf '%s cus_C 999999999999999\n' "$now"
	printf '%s cus_C 999999999999999\n' "$now"
	printf '%s cus_B 3\n' "$now"
} > "$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 2s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"

rc=0
agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once"

# Exact sums per customer, of the log and of what the double accepted (identifier, event_name,
# customer, value, ...).
sums() {
	"$PYTHON3" -c '
import sys, decimal
decimal.getcontext().prec = 60
col, sep = int(sys.argv[1]), sys.argv[2]
s = {}
for line in sys.stdin:
    f = line.rstrip("\n").split(sep if sep != "ws" else None)
    s[f[col - 1]] = s.get(f[col - 1], decimal.Decimal(0)) + decimal.Decimal(f[col])
for c in sorted(s):
    print(c, s[c].normalize())
' "$@"
}
sums 2 ws < "$log" > "$T/expected"
sums 3 "$(printf '\t')" < "$T/accepted.tsv" > "$T/accepted"
diff -u "$T/expected" "$T/accepted" > "$T/totals.diff" ||
	fail "accepted totals differ from the log's: $(cat "$T/totals.diff")"
ids=$(cut -f1 "$T/accepted.tsv" | sort -u | wc -l)
assert_eq "$(wc -l < "$T/accepted.tsv")" "$ids" "distinct identifiers accepted"
"$LOGMETER" status -c "$conf" > "$T/status.out" || true
grep -q 'dead letters 0,' "$T/status.out" ||
	fail "dead letters after the run: $(grep -i dead "$T/status.out")"
# No value Stripe would refuse was sent: at most 15 significant digits each.
awk -F'\t' '{v = $4; gsub(/[^0-9]/, "", v); sub(/^0+/, "", v); if (length(v) > 15) print}' \
	"$T/accepted.tsv" > "$T/long"
[ ! -s "$T/long" ] || fail "values of more than 15 digits accepted: $(cat "$T/long")"

# Idempotent: reading and sending again adds nothing.
before=$(accepted_count)
agent_once "$conf" || fail "the second run --once failed"
assert_eq "$before" "$(accepted_count)" "events accepted by a second run"
note "ok: $(cat "$T/accepted" | tr '\n' ' ')"

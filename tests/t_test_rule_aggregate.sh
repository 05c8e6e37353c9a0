#!/usr/bin/env bash
# `test-rule` of an aggregating rule says what `run` bills: not one event per line, but the window
# of the line's rule and customer, billed as the window's total stamped with its start. The lines'
# windows and sums are computed by awk from the log, and must equal both what test-rule announces
# and what the double accepted from `run --once`. Lines Stripe refuses on their own stay dead
# letters, as test-rule says.
. "$(dirname "$0")/lib.sh"
lm_init test_rule_aggregate
double_start

mkdir -p "$T/logs"
log=$T/logs/app.log
now=$(date +%s)
base=$((now - 3600))
{
	printf '%s cus_A 5\n' "$base"
	printf '%s cus_B 2\n' "$((base + 1))"
	printf '%s cus_A 7\n' "$((base + 30))"
	printf '%s cus_A 1\n' "$((base + 130))"
	printf '%s cus_B 4\n' "$((base + 200))"
	printf '%s cus_A 9\n' "$((now - 50 * 86400))"
} > "$log"
conf=$T/logmeter.conf
write_config "$conf"
config_epoch_rule "$conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"

# Independent: each line within Stripe's 35 days into floor(t / 60) * 60, per customer.
awk -v now="$now" '$1 >= now - 35 * 86400 { w = $1 - $1 % 60; s[$2 " " w] += $3 }
	END { for (k in s) { split(k, a, " "); print a[1], s[k], a[2] } }' "$log" | sort > "$T/want"
[ "$(wc -l < "$T/want")" -ge 4 ] || fail "test bug: expected windows: $(cat "$T/want")"

"$LOGMETER" test-rule -c "$conf" "$log" > "$T/tr.out" || fail "test-rule exited $?"
sed -n 's/^[0-9]*: usage: event .* customer=\([^ ]*\) value=\([^ ]*\) .* -> summed into the window of 60 s starting \([0-9]*\) .*/\1 \2 \3/p' \
	"$T/tr.out" | awk '{ s[$1 " " $3] += $2 } END { for (k in s) { split(k, a, " "); print a[1], s[k], a[2] } }' |
	sort > "$T/announced"
diff -u "$T/want" "$T/announced" > "$T/diff" || fail "test-rule's windows: $(cat "$T/diff"; cat "$T/tr.out")"
grep -q '^6: usage: event .* -> dead letter: outside Stripe' "$T/tr.out" || fail "the old line: $(cat "$T/tr.out")"

rc=0
agent_once "$conf" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 1 ] || fail "run --once exited $rc: $(tail -n 5 "$T/agent.log")" # 1: a dead letter
awk -F'\t' '{ print $3, $4, $5 }' "$T/accepted.tsv" | sort > "$T/billed"
diff -u "$T/want" "$T/billed" > "$T/diff" || fail "run billed other windows: $(cat "$T/diff")"
echo "t_test_rule_aggregate: test-rule announces the $(wc -l < "$T/want") windows run bills"

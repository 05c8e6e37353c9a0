#!/usr/bin/env bash
# `spool recover` keeps the aggregation windows and their lines: the usage of windows still open
# when the agent died (killed at the moment it closes them, with its WAL left behind) reaches
# Stripe once after a recover, each customer's total the sum of its lines, and nothing is sent
# twice by a later run.
. "$(dirname "$0")/lib.sh"
lm_init window_spool_recover
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
# 200 lines over 7 customers, whole values (awk sums them exactly).
awk -v now="$now" 'BEGIN { srand(7); for (i = 0; i < 200; i++)
	printf "%d cus_%c %d\n", now - int(rand() * 3), 65 + int(rand() * 7), 1 + int(rand() * 1000) }' > "$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 2s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"

# The agent dies inside the transaction that closes the windows: they stay open, the lines in.
rc=0
LOGMETER_CRASH_AT=window_close_inside timeout 120 "$LOGMETER" run --once -c "$conf" \
	>>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
assert_eq 137 "$rc" "run --once killed at window_close_inside"
assert_eq 0 "$(accepted_count)" "events accepted before the recover"
"$LOGMETER" spool export --windows -c "$conf" > "$T/before.jsonl" || fail "export --windows exited $?"
n_open=$(grep -c '"state":"open"' "$T/before.jsonl" || true)
[ "$n_open" -gt 0 ] || fail "test bug: no open window before the recover: $(head -3 "$T/before.jsonl")"

# --force: a spool left by a killed agent (its WAL too) is sound, and recover leaves a sound spool
# as it is without it.
"$LOGMETER" spool recover --force -c "$conf" > "$T/recover.out" 2>&1 || fail "spool recover exited $?: $(cat "$T/recover.out")"
grep -q "aggregation windows: $n_open open (200 lines)" "$T/recover.out" ||
	fail "recover did not keep the $n_open open windows: $(cat "$T/recover.out")"
"$LOGMETER" spool check -c "$conf" > "$T/check.out" 2>&1 || fail "spool check after recover: $(cat "$T/check.out")"

agent_once "$conf" || fail "run --once after the recover exited $?"
expected=$(awk '{s[$2] += $3} END {for (c in s) print c, s[c]}' "$log" | sort)
got=$(awk -F'\t' '{s[$3] += $4} END {for (c in s) print c, s[c]}' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "totals accepted per customer"
assert_eq "$n_open" "$(accepted_count)" "meter events accepted (one a window)"

# Read again from the start (a new run over the same file): nothing more is billed.
agent_once "$conf" || fail "the second run --once exited $?"
assert_eq "$n_open" "$(accepted_count)" "meter events accepted after a second run"

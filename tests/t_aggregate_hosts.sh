#!/usr/bin/env bash
# Two hosts given the same `instance` (a templated configuration), each with its own spool,
# aggregate the same rule and customer in the same window: their meter events must not share an
# identifier, or Stripe keeps one host's total and drops the other's as a duplicate. The double
# accepts both, and the totals per customer equal awk's sums over both logs.
. "$(dirname "$0")/lib.sh"
lm_init aggregate_hosts
double_start

now=$(( $(date +%s) + 1 )) # a window both hosts still find open
for h in 1 2; do
	mkdir -p "$T/host$h/logs" "$T/host$h/state"
	chmod 700 "$T/host$h/state"
	printf '%s cus_A %s\n%s cus_B %s\n' "$now" "$((100 * h))" "$now" "$((7 * h))" \
		> "$T/host$h/logs/app.log"
	write_config "$T/host$h.conf" # instance = test, as for every host
	sed -i "s|^state_dir = .*|state_dir = $T/host$h/state|" "$T/host$h.conf"
	config_v2 "$T/host$h.conf"
	config_epoch_rule "$T/host$h.conf" "$T/host$h/logs/app.log" "aggregate = 4s" \
		"aggregate_grace = 1s"
done
# Both at once, as two hosts would: each waits for its window to close.
pids=
for h in 1 2; do
	timeout 120 "$LOGMETER" run --once -c "$T/host$h.conf" >>"$T/agent.out" 2>>"$T/agent$h.log" &
	pids="$pids $!"
done
for p in $pids; do
	wait "$p" || fail "a run --once exited $?: $(tail -n 3 "$T"/agent*.log)"
done
expected=$(cat "$T"/host*/logs/app.log | awk '{s[$2] += $3} END {for (c in s) print c, s[c]}' | sort)
got=$(awk -F'\t' '{s[$3] += $4} END {for (c in s) print c, s[c]}' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "totals accepted from both hosts"
assert_eq 0 "$(double_stat duplicates)" "meter events the double dropped as duplicates"

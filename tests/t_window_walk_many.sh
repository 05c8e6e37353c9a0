#!/usr/bin/env bash
# A late line whose window was closed goes on to the next window of its rule and customer that
# is not closed, past every closed one. With a short `aggregate` and a customer busy every
# window, that can be more than a hundred thousand windows (1 s windows: 28 hours of them).
# Passing them must not fail the commit: a commit that fails is tried again with the same lines,
# and fails again, so the late line and every line after it in its file would never be billed.
# Here 100001 closed windows of 1 s, one line each, then a late line for the first of them and a
# line after it: the double's total per customer must equal awk's sum over the log.
. "$(dirname "$0")/lib.sh"
lm_init window_walk_many
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
# Three days ago (any start time: every window has closed long before run --once starts).
base=$(($(date +%s) - 3 * 86400))
awk -v base="$base" 'BEGIN { for (i = 0; i <= 100000; i++) printf "%d cus_A 1\n", base + i }' >"$log"
write_config "$T/logmeter.conf"
conf="$T/logmeter.conf"
config_v2 "$conf"
config_epoch_rule "$conf" "$log" "aggregate = 1s" "aggregate_grace = 1s"
agent_once "$conf" || fail "run --once over the closed windows exited $?"
assert_eq 100001 "$(accepted_count)" "meter events of the windows"

# The late line, in the first window (closed), and a line of another customer after it.
printf '%d cus_A 5\n%d cus_B 7\n' "$base" "$((base + 10))" >>"$log"
agent_once "$conf" || fail "run --once with the late line exited $?"
expected=$(awk '{ s[$2] += $3 } END { for (c in s) print c, s[c] }' "$log" | sort)
got=$(awk -F'\t' '{ s[$3] += $4 } END { for (c in s) print c, s[c] }' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "billed total per customer"

#!/usr/bin/env bash
# Crash-loop benchmark: tests/t_crash_loop.sh with 1,000 crashes (not part of `make check`, which
# runs it with 50). Run it from the top of a built tree (it uses src/logmeter there):
#
#   bench/crash_loop.sh                      # 1,000 crashes
#   CRASHES=200 SEED=42 bench/crash_loop.sh  # fewer, repeatable
#
# Prints the per-crash table (point, outcome, events accepted so far, events pending, re-sends the
# double absorbed in that run, answers it dropped on purpose, seconds per cycle), the test's
# summary, and the re-sends each kind of crash caused. Keeps the table in
# $REPORT (default ./crash_loop.report). The shared logs: ../shared/data/logs or $LOGMETER_LOGS.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export CRASHES=${CRASHES:-1000}
export REPORT=${REPORT:-$PWD/crash_loop.report}
# Stays smaller than the default so that 1,000 restarts do not grow the log without end.
export CHUNK=${CHUNK:-12000}
export NEW_FILE_EVERY=${NEW_FILE_EVERY:-50}
start=$(date +%s)
bash "$top/tests/t_crash_loop.sh"
secs=$(( $(date +%s) - start ))
echo
echo "events re-sent after each kind of crash (absorbed by Stripe's dedupe), in the run that followed it:"
# Row k's re-sends happened in the run after crash k-1 (the events it left in flight or unrecorded),
# less one per answer the double dropped on purpose in that run.
awk 'NR > 1 {
	p = $2; sub(/:.*/, "", p)
	if ($2 == "kill-9") p = "kill -9 (random moment)"
	if ($3 == "unreached") p = p " (not reached: kill -9)"
	kind[NR] = p; res[NR] = $6 - $7
}
END {
	for (i = 2; i < NR; i++) {
		p = kind[i]; r = res[i + 1]
		n[p]++; t[p] += r; if (r > m[p]) m[p] = r
		all += r; crashes++
	}
	printf "  %-40s %7s %8s %6s\n", "crash", "count", "mean", "max"
	for (p in n) printf "  %-40s %7d %8.2f %6d\n", p, n[p], t[p] / n[p], m[p]
	printf "  %-40s %7d %8.2f\n", "all", crashes, all / crashes
}' "$REPORT"
echo "bench/crash_loop: $CRASHES crashes in $secs s ($(awk -v s="$secs" -v c="$CRASHES" 'BEGIN { printf "%.2f", s / c }') s per crash); the table is in $REPORT"

#!/usr/bin/env bash
# Lines that come after their window's end (a backfill of archived logs, a slow log shipper) are
# billed in their own window, at its start, so in their own invoice period: a window that was
# never sent is opened at its own time and closes at once; only a window already sent passes a
# line on to the next one. Here an archive stamped 20 days ago goes through `backfill` and
# `run --once`: each accepted meter event is stamped with the start of its lines' minute (awk).
. "$(dirname "$0")/lib.sh"
lm_init aggregate_backfill
double_start

mkdir -p "$T/logs" "$T/archive"
log="$T/logs/app.log"
: > "$log"
old=$(( $(date +%s) - 20 * 86400 ))
old=$(( old - old % 60 + 5 ))
{
	printf '%s cus_A 1\n' "$old"
	printf '%s cus_A 2\n' "$((old + 20))"
	printf '%s cus_B 4\n' "$((old + 30))"
	printf '%s cus_A 8\n' "$((old + 3600))"
} > "$T/archive/old.log"
gzip -k "$T/archive/old.log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s" "aggregate_grace = 5s"
conf="$T/logmeter.conf"

"$LOGMETER" backfill -c "$conf" --source app "$T/archive/old.log.gz" >> "$T/backfill.out" 2>&1 ||
	fail "backfill failed: $(cat "$T/backfill.out")"
agent_once "$conf" || fail "run --once exited $?"
expected=$(awk '{s[$2 " " ($1 - $1 % 60)] += $3} END {for (k in s) print k, s[k]}' "$T/archive/old.log" | sort)
got=$(awk -F'\t' '{print $3, $5, $4}' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "accepted (customer, window start, total)"

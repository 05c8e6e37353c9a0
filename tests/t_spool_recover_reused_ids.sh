#!/usr/bin/env bash
# `spool recover` with the queue's row lost and the batches of the newest events lost while their
# rows of outcomes survive: the events read after the recover get ids no surviving row names.
# Before, the next id was taken from the surviving batches alone: the new events got the ids of
# the lost ones, and with them their rows of outcomes (here: delivered, under a window's
# identifier), so the agent took them for delivered and never billed them. Recover now also drops
# the rows of outcomes whose events were lost with their batches: they have nothing to send, and
# counted, they made events of other states out of pending ones.
. "$(dirname "$0")/lib.sh"
lm_init spool_recover_reused_ids
need_dbstat
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
past_windows_log "$log" # closed as soon as a sender runs
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"
# A rule of plain events (one per line) for the lines ending in " plain", which the rule above
# does not take (its value is the last field).
cat >>"$T/logmeter.conf" <<CONF
[rule plain]
source = app
event_name = requests
pattern = ^(?<t>\d+) (?<c>cus_\w+) (?<v>\S+) plain\$
customer = c
value = v
timestamp = t
timestamp_format = epoch
CONF
conf="$T/logmeter.conf"
state="$T/state"
db="$state/spool.db"

agent_once "$conf" || fail "run --once exited $?"
assert_eq "$n_windows" "$(accepted_count)" "window meter events billed"
# Each window's meter event keeps a row of outcomes (its identifier), delivered.
assert_eq "$n_windows" "$(sqlite3 "$db" "SELECT count(*) FROM outcomes WHERE state = 1 AND identifier LIKE 'lmw2-%'")" \
	"rows of outcomes of the delivered window meter events"

# Overwrite every page of the batches table and the queue's page with bytes no b-tree page starts
# with: the meter events and the queue's row are lost, their rows of outcomes kept.
pages=$(sqlite3 "$db" "SELECT pageno FROM dbstat WHERE name IN ('batches', 'queue')")
[ -n "$pages" ] || fail "test bug: no pages of batches and queue"
[ -z "$(comm -12 <(sort <<<"$pages") <(sqlite3 "$db" "SELECT pageno FROM dbstat WHERE name = 'outcomes'" | sort))" ] ||
	fail "test bug: outcomes share a page with batches or queue"
# shellcheck disable=SC2086 # one argument per page
spool_ruin "$db" $pages
"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"
grep -qx "events: pending 0, delivered 0, dead letters 0, unsure 0" "$T/recover.out" ||
	fail "recover's counts (every event was lost): $(cat "$T/recover.out")"
"$LOGMETER" spool check -c "$conf" >"$T/check.out" 2>&1 ||
	fail "spool check after recover: $(cat "$T/check.out")"

# New lines after the recover, of the plain rule, stamped within the last minute: each is billed
# once, under the identifier of its own line (file uid, offset, rule: docs/identifiers.md).
size=$(stat -c %s "$log")
awk -v now="$(date +%s)" 'BEGIN { for (i = 0; i < 10; i++)
	printf "%d cus_%d %d plain\n", now - 30 + i, i % 3, 100 + i }' >>"$log"
cp "$T/accepted.tsv" "$T/accepted_before.tsv"
agent_once "$conf" || fail "run --once after the recover exited $?"
tail -n +$((n_windows + 1)) "$T/accepted.tsv" >"$T/accepted_new.tsv"
cmp -s "$T/accepted_before.tsv" <(head -n "$n_windows" "$T/accepted.tsv") ||
	fail "test bug: the record changed before its end"
expected=$(tail -c +$((size + 1)) "$log" | awk '{ s[$2] += $3; n++ } END { for (c in s) print c, s[c] }' | sort)
got=$(awk -F'\t' '{ s[$3] += $4 } END { for (c in s) print c, s[c] }' "$T/accepted_new.tsv" | sort)
assert_eq "$expected" "$got" "totals billed per customer for the lines after the recover"
assert_eq 10 "$(wc -l <"$T/accepted_new.tsv")" "events billed for the lines after the recover"
"$LOGMETER" spool export -c "$conf" >"$T/after.jsonl" || fail "export exited $?"
assert_eq 10 "$(grep -c '"state":"delivered"' "$T/after.jsonl")" "delivered events in the spool"
assert_eq 10 "$(grep -c '"identifier":"lm1-' "$T/after.jsonl")" "events with line identifiers"
echo "t_spool_recover_reused_ids: 10 events read after the recover billed once each"

#!/usr/bin/env bash
# max_spool_bytes: backpressure, never loss.
#
# 1. The Stripe double is down at first, so pending events fill the spool up to the limit:
#    reading pauses (log line, `status` says so, the file's checkpoint stays below its end and
#    does not move, the spool stays within the limit plus one batch). The double comes back:
#    everything drains, delivered events are pruned early to make room, reading resumes, and the
#    double accepted exactly the expected identifiers.
# 2. `run --once` with a limit smaller than the log's events: it delivers what fitted and exits
#    1; the next run prunes what was delivered, reads on, and ends the job: exactly once again.
. "$(dirname "$0")/lib.sh"
lm_init spool_limit
double_start

mkdir -p "$T/logs"
cp "$LOGS/elastic_apache_logs.log" "$T/logs/access.log"
head -n 4000 "$LOGS/elastic_apache_logs.log" > "$T/logs/once.log"
total=$(apache_bytes_count "$T/logs/access.log")
total_once=$(apache_bytes_count "$T/logs/once.log")
[ "$total" -gt 8000 ] && [ "$total_once" -gt 3000 ] || fail "test bug: $total and $total_once events"

# An empty spool takes about 60 KiB of pages (its tables and indexes); an event about 25 bytes
# (docs/spool.md): 96 KiB hold a few hundred events of the 9,000 of the log.
LIMIT=$((96 * 1024))
# conf NAME FILE: a configuration reading FILE, with the spool in $T/NAME and the limit.
conf() {
	write_config "$T/$1.conf"
	sed -i "s|^state_dir = .*|state_dir = $T/$1\nmax_spool_bytes = 96k\nbatch_lines = 200|" \
		"$T/$1.conf"
	config_apache_bytes "$T/$1.conf" "$2"
}

offset_of() {
	sed -n 's/^ *offset \([0-9]*\) .*/\1/p' <<<"$1" | head -n 1
}

# Paused: status says so, and exits 1 (degraded: a health check fails).
status_paused() {
	local rc=0
	st=$("$LOGMETER" status -c "$1" 2>&1) || rc=$?
	[ "$rc" = 1 ] && grep -q '^ingest: paused (spool limit reached since' <<<"$st"
}

status_reading() {
	st=$("$LOGMETER" status -c "$1" 2>&1) && grep -q '^ingest: reading' <<<"$st"
}

# Bytes of spool.db pages in use, by SQLite's own count (read-only).
spool_used() {
	"$PYTHON3" -c '
import sqlite3, sys
db = sqlite3.connect("file:%s/spool.db?mode=ro" % sys.argv[1], uri=True, timeout=10)
ps, pc, fl = (db.execute("PRAGMA " + p).fetchone()[0] for p in ("page_size", "page_count", "freelist_count"))
print((pc - fl) * ps)' "$1"
}

# check_exactly_once CONF FILE RECORD: RECORD (lines of accepted.tsv) holds exactly the events
# of FILE, and nothing is pending.
check_exactly_once() {
	assert_accepted_once "$1" "$2" "$3"
	st=$("$LOGMETER" status -c "$1")
	grep -q "^events: pending 0, " <<<"$st" || fail "events still pending: $st"
}

# ---- 1. Stripe down, then back ------------------------------------------------------------------
conf one "$T/logs/access.log"
double_stop # connections refused
agent_start "$T/one.conf"
wait_until 30 status_paused "$T/one.conf" || fail "reading never paused: $st"
grep -q "spool limit reached ($T/one/spool.db): reading paused; nothing is lost, resuming when the sender has delivered events" \
	"$T/agent.log" || fail "no clear log line about the pause"
size=$(stat -c %s "$T/logs/access.log")
off1=$(offset_of "$st")
[ "$off1" -lt "$size" ] || fail "paused, but the checkpoint $off1 is at the end ($size)"
used=$(spool_used "$T/one")
# One batch of 200 lines past the limit at most: about 5 KiB, and the index and table pages
# it touched (4 KiB each).
[ "$used" -le $((LIMIT + 48 * 1024)) ] || fail "spool holds $used bytes, limit $LIMIT"
sleep 1.5
st=$("$LOGMETER" status -c "$T/one.conf")
grep -q '^ingest: paused (spool limit reached since' <<<"$st" || fail "the pause ended with Stripe down: $st"
assert_eq "$off1" "$(offset_of "$st")" "checkpoint while paused"
pending=$(sed -n 's/^events: pending \([0-9]*\),.*/\1/p' <<<"$st")
note "paused at offset $off1 of $size with $pending events pending, $used bytes in use"
double_restart
wait_until 180 accepted_at_least "$total" || fail "stuck at $(accepted_count) of $total accepted"
wait_until 60 status_reading "$T/one.conf" || fail "reading did not resume: $st"
assert_eq "$size" "$(offset_of "$st")" "checkpoint at the end"
grep -q "has room again .*: reading resumed" "$T/agent.log" || fail "no log line about the resume"
grep -q "pruned [0-9]* delivered events before their delivered_retention" "$T/agent.log" ||
	fail "no delivered events were pruned to make room"
agent_stop || fail "agent exited $?"
check_exactly_once "$T/one.conf" "$T/logs/access.log" "$T/accepted.tsv"
assert_eq 0 "$(double_stat concurrency_violations)" "requests in flight at once for one customer and meter"

# ---- 2. run --once ------------------------------------------------------------------------------
conf two "$T/logs/once.log"
cp "$T/accepted.tsv" "$T/accepted.one.tsv"
: > "$T/agent.log"
rc=0
agent_once "$T/two.conf" || rc=$?
assert_eq 1 "$rc" "exit code of a --once that could not read everything"
grep -q "run --once: reading stopped for lack of room in the spool" "$T/agent.log" ||
	fail "no log line about the partial --once"
st=$("$LOGMETER" status -c "$T/two.conf")
grep -q "^events: pending 0, " <<<"$st" || fail "the partial --once left events pending: $st"
off=$(offset_of "$st")
[ "$off" -gt 0 ] && [ "$off" -lt "$(stat -c %s "$T/logs/once.log")" ] || fail "checkpoint $off after the partial --once"
runs=1
while [ "$rc" != 0 ]; do
	# Each run reads what a few hundred events take: 4,000 lines need several.
	[ "$runs" -lt 15 ] || fail "--once still partial after $runs runs"
	rc=0
	agent_once "$T/two.conf" || rc=$?
	[ "$rc" = 0 ] || [ "$rc" = 1 ] || fail "run --once exited $rc"
	runs=$((runs + 1))
done
grep -v -F -f <(cut -f1 "$T/accepted.one.tsv") "$T/accepted.tsv" > "$T/accepted.two.tsv" || true
check_exactly_once "$T/two.conf" "$T/logs/once.log" "$T/accepted.two.tsv"
echo "t_spool_limit: $total events exactly once through a pause at offset $off1 of $size; --once: $total_once events exactly once in $runs runs"

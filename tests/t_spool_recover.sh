#!/usr/bin/env bash
# A damaged spool: a non-SQLite file, a newer schema version, a truncated file and garbage pages
# in the middle are each refused at start with a clear message, a non-zero exit code and the file
# left as it was; `spool check` finds each; `spool recover` refuses what it cannot read and
# rebuilds the rest from every readable row: the recovered events are a subset of the original
# ones (same identifiers and fields), the agent starts on the result and delivers what was
# recovered pending. A sound spool with a WAL left by a killed agent is recovered whole, and a
# spool in use is not touched.
. "$(dirname "$0")/lib.sh"
lm_init spool_recover
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
double_start

mkdir -p "$T/logs"
head -n 7000 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
# Batches of 100 lines: the events of a commit are one row (docs/spool.md), so a damaged page
# loses the batches on it; small ones keep that loss small against the 6 garbage pages below.
sed -i 's/^\[agent\]$/[agent]\nbatch_lines = 100/' "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/access.log"
conf="$T/logmeter.conf"
state="$T/state"
db="$state/spool.db"

# A real spool: delivered events, then pending ones (the double is down while more lines come).
agent_once "$conf" || fail "run --once exited $?"
double_stop
sed -n 7001,7300p "$LOGS/elastic_apache_logs.log" >> "$T/logs/access.log"
agent_start "$conf"
n_total=$(apache_bytes_count "$T/logs/access.log")
wait_until 30 eval '[ "$(spooled_count "$conf")" -eq '"$n_total"' ]' || fail "the agent did not spool the appended lines"
agent_stop || fail "agent exited $? on SIGTERM"
[ ! -e "$db-wal" ] || fail "a clean stop left a WAL"
"$LOGMETER" spool export -c "$conf" > "$T/original.jsonl" || fail "export exited $?"
n_pending=$(grep -c '"state":"pending"' "$T/original.jsonl" || true)
[ "$n_pending" -gt 100 ] || fail "test bug: only $n_pending pending events"
out=$("$LOGMETER" spool check -c "$conf") || fail "spool check of a sound spool exited $?: $out"
grep -q "OK (schema version 5; 1 file records; events: pending $n_pending, delivered $((n_total - n_pending)), dead letters 0, unsure 0)" <<<"$out" || fail "spool check: $out"
cp "$db" "$T/pristine.db"
double_restart

# A spool in use is not recovered. agent.log holds the earlier runs' "started" lines: wait for this
# run's, logged once the agent has the spool open.
started_before=$(grep -c "info: started" "$T/agent.log" || true)
agent_start "$conf"
wait_until 60 eval '[ "$(grep -c "info: started" "$T/agent.log")" -gt '"$started_before"' ]' ||
	fail "agent did not start"
# (--force: the spool is sound, and recover leaves a sound spool as it is without it.)
rc=0; out=$("$LOGMETER" spool recover --force -c "$conf" 2>&1) || rc=$?
assert_eq 1 "$rc" "recover of a spool in use"
grep -q "is open in process $AGENT_PID" <<<"$out" || fail "recover in use: $out"
agent_stop || fail "agent exited $?"
ls "$state" | grep -q corrupt && fail "a refused recover left files"

# refused_start WHAT PATTERN: run --once must fail with PATTERN in its log and leave spool.db as is.
refused_start() {
	local what=$1 pattern=$2 rc=0 sum
	sum=$(sha256sum < "$db")
	: > "$T/agent.log"
	agent_once "$conf" || rc=$?
	[ "$rc" -ne 0 ] || fail "$what: the agent started on it"
	[ "$rc" -ne 124 ] || fail "$what: the agent hung"
	grep -q -- "$pattern" "$T/agent.log" || fail "$what: no '$pattern' in: $(cat "$T/agent.log")"
	assert_eq "$sum" "$(sha256sum < "$db")" "$what: spool.db changed"
	rc=0; "$LOGMETER" spool check -c "$conf" > "$T/check.out" 2>&1 || rc=$?
	assert_eq 1 "$rc" "$what: spool check exit code"
	grep -q "^problem: " "$T/check.out" || fail "$what: spool check: $(cat "$T/check.out")"
	assert_eq "$sum" "$(sha256sum < "$db")" "$what: spool check changed spool.db"
}

fresh() {
	rm -f "$state"/spool.db*
	cp "$T/pristine.db" "$db"
}

# recovered_subset: every recovered event is one of the originals, field for field (the state may
# only be the original's); prints the number of recovered events.
recovered_subset() {
	"$LOGMETER" spool export -c "$conf" > "$T/recovered.jsonl" || fail "export after recover exited $?"
	"$PYTHON3" - "$T/original.jsonl" "$T/recovered.jsonl" <<'PY' || fail "recovered events are not a subset of the originals"
import json, sys
orig = {o["identifier"]: o for o in map(json.loads, open(sys.argv[1]))}
n = 0
for o in map(json.loads, open(sys.argv[2])):
    assert o["identifier"] in orig, o
    assert o == orig[o["identifier"]], (o, orig[o["identifier"]])
    n += 1
print(n)
PY
}

# 1. Not an SQLite file.
rm -f "$state"/spool.db*
head -c 200000 /dev/urandom > "$db"
refused_start "random file" "file is not a database"
grep -q "spool recover" "$T/agent.log" || fail "no hint at spool recover: $(cat "$T/agent.log")"
rc=0; out=$("$LOGMETER" spool recover -c "$conf" 2>&1) || rc=$?
assert_eq 1 "$rc" "recover of a random file"
grep -q "is not an SQLite database" <<<"$out" || fail "recover of a random file: $out"

# 2. A newer schema version.
fresh
sqlite3 "$db" "PRAGMA user_version = 99"
refused_start "schema version 99" "schema version 99, newer than this logmeter understands (5)"
grep -q "schema version 99 is newer" "$T/check.out" || fail "check of version 99: $(cat "$T/check.out")"
rc=0; out=$("$LOGMETER" spool recover -c "$conf" 2>&1) || rc=$?
assert_eq 1 "$rc" "recover of a newer schema"
grep -q "schema version 99, newer" <<<"$out" || fail "recover of version 99: $out"
"$LOGMETER" status -c "$conf" >/dev/null 2>&1 && fail "status read a spool of schema version 99"

# 3. Truncated in the middle.
fresh
truncate -s $(( $(stat -c %s "$db") / 2 )) "$db"
refused_start "truncated" "SQLITE_CORRUPT"
"$LOGMETER" spool recover -c "$conf" > "$T/recover.out" 2>&1 || fail "recover of a truncated spool exited $?: $(cat "$T/recover.out")"
ls "$state"/spool.db.corrupt-* >/dev/null 2>&1 || fail "the old spool was not kept"
n_rec=$(recovered_subset)
[ "$n_rec" -gt 0 ] || fail "nothing recovered from the truncated spool"
grep -q "events: pending" "$T/recover.out" || fail "recover report: $(cat "$T/recover.out")"
"$LOGMETER" spool check -c "$conf" > "$T/check.out" || fail "the recovered spool is not sound: $(cat "$T/check.out")"
rec_pending=$(grep -c '"state":"pending"' "$T/recovered.jsonl" || true)
before=$(accepted_count)
agent_once "$conf" || fail "run --once on the recovered spool exited $?"
assert_eq "$((before + rec_pending))" "$(accepted_count)" "recovered pending events delivered (truncated)"
note "truncated: $n_rec of $n_total events recovered, $rec_pending pending delivered"

# 4. Garbage pages in the middle.
fresh
pages=$(( $(stat -c %s "$db") / 4096 ))
dd if=/dev/urandom of="$db" bs=4096 seek=$((pages / 2)) count=6 conv=notrunc status=none
refused_start "garbage pages" "is damaged"
"$LOGMETER" spool recover -c "$conf" > "$T/recover.out" 2>&1 || fail "recover of a spool with garbage pages exited $?: $(cat "$T/recover.out")"
n_rec=$(recovered_subset)
[ "$n_rec" -gt $((n_total / 2)) ] || fail "only $n_rec of $n_total events recovered around 6 bad pages"
"$LOGMETER" spool check -c "$conf" > "$T/check.out" || fail "the recovered spool is not sound: $(cat "$T/check.out")"
rec_pending=$(grep -c '"state":"pending"' "$T/recovered.jsonl" || true)
[ "$rec_pending" -gt 0 ] || fail "no pending events recovered"
grep $'"state":"pending"' "$T/recovered.jsonl" | "$PYTHON3" -c 'import json,sys; [print(json.loads(l)["identifier"]) for l in sys.stdin]' | sort > "$T/rec_pending_ids"
agent_once "$conf" || fail "run --once on the recovered spool exited $?"
cut -f1 "$T/accepted.tsv" | sort > "$T/accepted_ids"
assert_eq "$rec_pending" "$(comm -12 "$T/rec_pending_ids" "$T/accepted_ids" | wc -l)" "recovered pending events delivered (garbage pages)"
assert_eq "$(sort -u "$T/accepted_ids" | wc -l)" "$(wc -l < "$T/accepted_ids")" "an identifier accepted twice"
note "garbage pages: $n_rec of $n_total events recovered, $rec_pending pending delivered"

# 5. A sound spool with the WAL a killed agent left, recovered with --force: recovered whole
# (committed WAL frames applied), the old files kept as spool.db.before-recover-*.
fresh
sed -n 7301,7500p "$LOGS/elastic_apache_logs.log" >> "$T/logs/access.log"
double_stop
agent_start "$conf"
n_total=$(apache_bytes_count "$T/logs/access.log")
wait_until 30 eval '[ "$(spooled_count "$conf")" -eq '"$n_total"' ]' || fail "the agent did not spool the new lines"
agent_kill9
[ -s "$db-wal" ] || fail "test bug: no WAL after kill -9"
"$LOGMETER" spool export -c "$conf" > "$T/original.jsonl" || fail "export with a WAL exited $?"
# Queue positions: of each batch's first event (the others follow it), and of each row of
# outcomes.
queue_of() {
	sqlite3 -cmd ".timeout 5000" "$@" "SELECT 'b', id, n, queue_seq FROM batches UNION ALL SELECT 'o', id, 0, queue_seq FROM outcomes ORDER BY 1, 2"
}
queue_of "file:$db?mode=ro" > "$T/queue_before"
# --force: recover leaves a sound spool as it is without it (t_spool_recover_sound.sh).
"$LOGMETER" spool recover --force -c "$conf" > "$T/recover.out" 2>&1 || fail "recover with a WAL exited $?: $(cat "$T/recover.out")"
grep -q "[1-9][0-9]* committed WAL frames" "$T/recover.out" || fail "no WAL frames applied: $(cat "$T/recover.out")"
n_rec=$(recovered_subset)
assert_eq "$n_total" "$n_rec" "events recovered from a sound spool with a WAL"
ls "$state"/spool.db.before-recover-*-wal >/dev/null 2>&1 || fail "the old WAL was not kept"
# Each event keeps its place in the sender's queue.
queue_of "$db" > "$T/queue_after"
cmp -s "$T/queue_before" "$T/queue_after" || fail "queue positions changed in the recovery"
# Positions a replay handed out (here: three events moved far back, as replayed pending events
# with rows of outcomes), with the count of them in the queue's row lost: recovery makes it
# again, so that new events still come after them.
sqlite3 "$db" "INSERT OR REPLACE INTO outcomes(id, state, attempts, key_generation, queue_seq, updated) SELECT id, 0, 1, 1, id + 100000, 0 FROM batches ORDER BY id LIMIT 3; UPDATE queue SET shift = 0"
third=$(sqlite3 "$db" "SELECT id FROM batches ORDER BY id LIMIT 1 OFFSET 2")
last=$(sqlite3 "$db" "SELECT max(id + n) - 1 FROM batches")
# (--force: `spool check` finds nothing wrong with a lost count of shifted positions.)
"$LOGMETER" spool recover --force -c "$conf" > "$T/recover.out" 2>&1 || fail "second recover exited $?: $(cat "$T/recover.out")"
assert_eq "$((third + 100000 - last))" "$(sqlite3 "$db" "SELECT shift FROM queue")" "queue shift made again by the recovery"
echo "t_spool_recover: refusals checked; recover kept every readable event and the agent delivered the pending ones"

#!/usr/bin/env bash
# Spools that earlier logmeters wrote (schemas 1 to 4, kept as SQL dumps in tests/spools/, each
# saying how it was made) are migrated when the agent opens them, not refused: every event comes
# back through `spool export` with the id, identifier, state, payload, attempts, key generation
# and errors the old spool held (read from the dump with sqlite3, and each line's identifier
# checked against tests/identifiers.py); then the agent delivers exactly the events that were
# pending, and none of those the old spool had delivered or dead-lettered. Schema 4's aggregation
# windows survive: the open ones close into one meter event each with their total.
#
# The dumps' times are moved forward by whole days (which keeps each window aligned) to within a
# day of now, so that their pending events are not yet older than Stripe's 35 days however long
# after the dumps the test runs; and the open windows are made due, so that they close now
# rather than at a time of day the test could run across.
. "$(dirname "$0")/lib.sh"
lm_init migrate
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
DOUBLE_METERS="bandwidth_bytes requests downloads" double_start

now=$(date +%s)
for v in 1 2 3 4; do
	dir=$T/v$v
	mkdir -p "$dir/state" "$dir/logs"
	sqlite3 "$dir/old.db" < "$top_srcdir/tests/spools/schema-$v.sql"
	assert_eq "$v" "$(sqlite3 "$dir/old.db" 'PRAGMA user_version')" "schema of dump $v"
	newest=$(sqlite3 "$dir/old.db" 'SELECT max(timestamp) FROM events')
	days=$(((now - newest) / 86400))
	sqlite3 "$dir/old.db" "UPDATE events SET timestamp = timestamp + $days * 86400" ||
		fail "v$v: cannot move the dump's times"
	n_open=0
	if [ "$v" -ge 4 ]; then
		sqlite3 "$dir/old.db" "UPDATE windows SET start = start + $days * 86400;
			UPDATE windows SET close_after = 0 WHERE state = 0" ||
			fail "v$v: cannot move the dump's windows"
		n_open=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM windows WHERE state = 0')
		[ "$n_open" -gt 0 ] || fail "test bug: no open window in dump $v"
	fi
	cp "$dir/old.db" "$dir/state/spool.db"
	write_config "$dir/logmeter.conf"
	sed -i "s|^state_dir = .*|state_dir = $dir/state|" "$dir/logmeter.conf"
	# The same source and rules; the old logs are not there (nothing is read).
	cat >> "$dir/logmeter.conf" <<CONF
[source apache]
path = $dir/logs/*.log
[rule bytes]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
[rule favicon]
source = apache
event_name = downloads
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET /favicon.ico
customer = ip
value = 1
[rule hits]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET [^"]*\.png
customer = ip
value = 1
CONF
	conf=$dir/logmeter.conf

	# Read-only commands ask for the agent first; the agent migrates (without sending here).
	"$LOGMETER" spool export -c "$conf" > /dev/null 2> "$dir/export.err" && fail "v$v: export read an old spool"
	grep -q "start the agent (logmeter run) once to migrate it" "$dir/export.err" || fail "v$v: $(cat "$dir/export.err")"
	: > "$T/agent.log"
	# The dump's logs are not here: each file it was reading is gone when this first run starts,
	# which it warns of last (what was written after the checkpoint, if anything, was never
	# read), and exits 0.
	gone=$(sqlite3 "$dir/old.db" "SELECT count(*) FROM files WHERE source = 'apache' AND state = 'reading'")
	[ "$gone" = 1 ] || fail "test bug: dump $v reads $gone files"
	rc=0
	agent_once "$conf" --no-send || rc=$?
	assert_eq 0 "$rc" "v$v: run --once --no-send's exit status with its file gone: $(tail -n 1 "$T/agent.log")"
	tail -n 1 "$T/agent.log" | grep -q "warning: run --once: 1 file was gone when the run started" ||
		fail "v$v: the last log line: $(tail -n 1 "$T/agent.log")"
	grep -q "migrated from schema $v to 5" "$T/agent.log" || fail "v$v: no migration logged: $(cat "$T/agent.log")"
	assert_eq 5 "$(sqlite3 "$dir/state/spool.db" 'PRAGMA user_version')" "v$v: schema after the migration"
	assert_eq ok "$(sqlite3 "$dir/state/spool.db" 'PRAGMA integrity_check')" "v$v: integrity"

	# Every event as the old spool had it.
	"$LOGMETER" spool export -c "$conf" > "$dir/export.jsonl" || fail "v$v: export exited $?"
	"$PYTHON3" - "$dir/old.db" "$dir/export.jsonl" "$top_srcdir/tests" <<'PY' || fail "v$v: migrated events differ from the old spool's"
import json, sqlite3, sys
sys.path.insert(0, sys.argv[3])
from identifiers import identifier
db = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in db.execute("PRAGMA table_info(events)")]
inst = db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]
files = {r[0]: r[1:] for r in db.execute("SELECT id, source, uid, path FROM files")}
names = {0: "pending", 1: "delivered", 2: "dead", 3: "unsure"}
old = {}
for r in db.execute("SELECT * FROM events"):
    e = dict(zip(cols, r))
    old[e["id"]] = e
new = {o["id"]: o for o in map(json.loads, open(sys.argv[2]))}
assert sorted(old) == sorted(new), (len(old), len(new))
for i, e in old.items():
    o = new[i]
    src, uid, path = files[e["file_id"]]
    if e["line_offset"] >= 0:  # a window's meter event (at minus its id) has its own kind
        assert e["identifier"] == identifier(inst, src, uid, e["line_offset"], e["rule"]), e
    want = {"identifier": e["identifier"], "rule": e["rule"], "event_name": e["event_name"],
            "payload": {e["payload_customer_key"]: e["customer"], e["payload_value_key"]: e["value"]},
            "customer_key": e["customer_key"], "timestamp": e["timestamp"],
            "state": names[e["state"]], "attempts": e["attempts"],
            "key_generation": e.get("key_generation", 0), "first_unknown": e.get("first_unknown"),
            "last_error": e["last_error"] or None, "file_id": e["file_id"], "file": path,
            "line_offset": e["line_offset"], "created": e["created"]}
    for k, v in want.items():
        assert o[k] == v, (i, k, o[k], v)
    if e["state"] == 1:
        # Delivered at its first attempt, in order: the time of its row of deliveries, which is
        # never later than its own and at most a minute earlier.
        assert o["delivered_at"] is not None and e["delivered_at"] - 60 <= o["delivered_at"] <= e["delivered_at"], (i, o["delivered_at"], e["delivered_at"])
    else:
        assert o["delivered_at"] is None, (i, o)
# Delivered at the first attempt, of a line, with no other history: what needs no row.
plain = sum(1 for e in old.values() if e["state"] == 1 and e["attempts"] == 1
            and e["line_offset"] >= 0 and not e.get("key_generation")
            and e.get("first_unknown") is None and not e["last_error"])
open(sys.argv[2] + ".plain", "w").write("%d\n" % plain)
print("%d events as the old spool had them" % len(old))
PY
	# The events delivered plainly are in batches without a row of their own.
	rows=$(sqlite3 "$dir/state/spool.db" 'SELECT count(*) FROM outcomes')
	total=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM events')
	plain=$(cat "$dir/export.jsonl.plain")
	[ "$plain" -gt $((total / 3)) ] || fail "test bug: dump $v has only $plain plain events"
	[ "$rows" -le $((total - plain)) ] || fail "v$v: $rows rows of outcomes for $total events, $plain of them delivered plainly"

	# The agent delivers what was pending, and nothing else.
	sqlite3 "$dir/old.db" "SELECT identifier FROM events WHERE state = 0" > "$dir/pending_ids"
	[ -s "$dir/pending_ids" ] || fail "test bug: no pending events in dump $v"
	before=$(accepted_count)
	agent_once "$conf" || fail "v$v: run --once exited $?"
	tail -n +$((before + 1)) "$T/accepted.tsv" > "$dir/accepted.tsv"
	cut -f1 "$dir/accepted.tsv" | sort > "$dir/accepted"
	# Besides the pending events, one meter event per window that was open: its customer and
	# total, which no other accepted event has the identifier of.
	sort "$dir/pending_ids" | comm -13 - "$dir/accepted" > "$dir/extra"
	sort "$dir/pending_ids" | comm -23 - "$dir/accepted" > "$dir/missing"
	[ ! -s "$dir/missing" ] || fail "v$v: pending events not delivered: $(head "$dir/missing")"
	assert_eq "$n_open" "$(wc -l < "$dir/extra")" "v$v: meter events of the open windows"
	if [ "$n_open" -gt 0 ]; then
		sqlite3 -separator $'\t' "$dir/old.db" "SELECT customer, total FROM windows WHERE state = 0" |
			sort > "$dir/windows_want"
		grep -F -f "$dir/extra" "$dir/accepted.tsv" | cut -f3,4 | sort > "$dir/windows_got"
		diff -u "$dir/windows_want" "$dir/windows_got" > "$dir/diff" ||
			fail "v$v: windows' meter events: $(head "$dir/diff")"
	fi
	delivered=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM events WHERE state = 1')
	pending=$(wc -l < "$dir/pending_ids")
	dead=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM events WHERE state = 2')
	grep -q "pending 0, delivered $((delivered + pending + n_open)), dead letters $dead, unsure 0" <<<"$("$LOGMETER" status -c "$conf")" ||
		fail "v$v: status after delivery: $("$LOGMETER" status -c "$conf" | grep '^events')"
	note "schema $v: $total events migrated ($rows rows of outcomes), $pending pending delivered, $n_open windows closed"
done
echo "t_migrate: spools of schemas 1 to 4 migrated, every event kept, the pending ones delivered once"

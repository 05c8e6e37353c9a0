#!/usr/bin/env bash
# Spools that earlier logmeters wrote (schemas 1, 2 and 3, kept as SQL dumps in tests/spools/,
# each saying how it was made) are migrated when the agent opens them, not refused: every event
# comes back through `spool export` with the id, identifier, state, payload, attempts, key
# generation and errors the old spool held (read from the dump with sqlite3, and each identifier
# checked against tests/identifiers.py); then the agent delivers exactly the events that were
# pending, and none of those the old spool had delivered or dead-lettered.
. "$(dirname "$0")/lib.sh"
lm_init migrate
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
DOUBLE_METERS="bandwidth_bytes requests downloads" double_start

for v in 1 2 3; do
	dir=$T/v$v
	mkdir -p "$dir/state" "$dir/logs"
	sqlite3 "$dir/old.db" < "$top_srcdir/tests/spools/schema-$v.sql"
	assert_eq "$v" "$(sqlite3 "$dir/old.db" 'PRAGMA user_version')" "schema of dump $v"
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
	agent_once "$conf" --no-send || fail "v$v: run --once --no-send exited $?"
	grep -q "migrated from schema $v to 4" "$T/agent.log" || fail "v$v: no migration logged: $(cat "$T/agent.log")"
	assert_eq 4 "$(sqlite3 "$dir/state/spool.db" 'PRAGMA user_version')" "v$v: schema after the migration"
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
print("%d events as the old spool had them" % len(old))
PY
	# Most events are in batches without a row of their own.
	rows=$(sqlite3 "$dir/state/spool.db" 'SELECT count(*) FROM outcomes')
	total=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM events')
	[ "$rows" -lt $((total / 2)) ] || fail "v$v: $rows rows of outcomes for $total events"

	# The agent delivers what was pending, and nothing else.
	sqlite3 "$dir/old.db" "SELECT identifier FROM events WHERE state = 0" > "$dir/pending_ids"
	[ -s "$dir/pending_ids" ] || fail "test bug: no pending events in dump $v"
	before=$(accepted_count)
	agent_once "$conf" || fail "v$v: run --once exited $?"
	tail -n +$((before + 1)) "$T/accepted.tsv" | cut -f1 | sort > "$dir/accepted"
	sort "$dir/pending_ids" | diff -u - "$dir/accepted" > "$dir/diff" || fail "v$v: accepted events differ from the pending ones: $(head "$dir/diff")"
	delivered=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM events WHERE state = 1')
	pending=$(wc -l < "$dir/pending_ids")
	dead=$(sqlite3 "$dir/old.db" 'SELECT count(*) FROM events WHERE state = 2')
	grep -q "pending 0, delivered $((delivered + pending)), dead letters $dead, unsure 0" <<<"$("$LOGMETER" status -c "$conf")" ||
		fail "v$v: status after delivery: $("$LOGMETER" status -c "$conf" | grep '^events')"
	note "schema $v: $total events migrated ($rows rows of outcomes), $pending pending delivered"
done
echo "t_migrate: spools of schemas 1, 2 and 3 migrated, every event kept, the pending ones delivered once"

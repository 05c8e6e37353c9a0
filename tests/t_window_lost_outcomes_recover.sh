#!/usr/bin/env bash
# `spool recover` that lost the rows of outcomes of aggregation windows' meter events. Such a row
# holds the event's state and its `lmw2-` identifier, and the watermark of deliveries passes every
# event that has one, whatever its state: without the row, an event up to the watermark looked
# delivered. Before, recover said "delivered" for every one of them, the windows whose usage
# Stripe never got (a 500 before it recorded them, or never sent) were never billed, and recover
# said nothing. Now their delivery is taken as unknown: recover makes them unsure (never sent by
# themselves), with their window identifiers, says how many in its output and its log, and after
# `replay --unsure` every window is billed exactly once: Stripe drops as duplicates the ones it
# has (same identifiers, within its 24 hours), and the totals per customer are awk's sums.
. "$(dirname "$0")/lib.sh"
lm_init window_lost_outcomes_recover
need_dbstat
# The first 6 requests are recorded by Stripe and answered 500, the next 6 answered 500 without
# being recorded, the next 6 accepted; every later one (retries, the other windows' first
# attempts) fails at Stripe's edge. Which window gets which answer depends on the sender's order;
# nothing below does.
double_start --faults '500rec*6,500*6,ok*6,503*100000'

mkdir -p "$T/logs"
log="$T/logs/app.log"
past_windows_log "$log" # closed as soon as a sender runs
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"
db="$T/state/spool.db"

agent_start "$conf"
# Every fault before the 503s consumed: 18 requests answered, the 19th failing at the edge.
wait_until 120 eval '[ "$(double_stat faults.503)" -ge 1 ]' ||
	fail "the sender did not get past 18 requests: $(double_stat requests) requests"
agent_stop || fail "agent exited $? on SIGTERM"
assert_eq "$n_windows" "$(sqlite3 "$db" "SELECT count(*) FROM windows WHERE state = 1")" \
	"closed windows"
assert_eq "$n_windows" "$(sqlite3 "$db" "SELECT count(*) FROM outcomes WHERE identifier LIKE 'lmw2-%'")" \
	"rows of outcomes of the meter events before the damage"

# Overwrite every page of the outcomes table with bytes no b-tree page starts with.
pages=$(sqlite3 "$db" "SELECT pageno FROM dbstat WHERE name = 'outcomes'")
[ -n "$pages" ] || fail "test bug: no page of the outcomes table"
# shellcheck disable=SC2086 # one argument per page
spool_ruin "$db" $pages

"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"
grep -qx "events: pending 0, delivered 0, dead letters 0, unsure $n_windows" "$T/recover.out" ||
	fail "recover's counts: $(cat "$T/recover.out")"
grep -q "^warning: $n_windows meter events of aggregation windows lost their rows of outcomes" \
	"$T/recover.out" || fail "recover did not say it: $(cat "$T/recover.out")"
grep -q "warning: $n_windows meter events of aggregation windows lost their rows of outcomes" \
	"$T/recover.err" || fail "recover's log does not say it: $(cat "$T/recover.err")"
"$LOGMETER" spool check -c "$conf" >"$T/check.out" 2>&1 ||
	fail "spool check after recover: $(cat "$T/check.out")"

# Each unsure event says why, and carries its window's identifier, recomputed here as
# docs/identifiers.md describes (instance "test", the spool's id, rule, customer, window start).
"$LOGMETER" spool export -c "$conf" --state unsure >"$T/unsure.jsonl" || fail "export exited $?"
"$PYTHON3" - "$T/unsure.jsonl" "$db" "$log" >"$T/expected_ids" <<'PY' || fail "the unsure events: $(cat "$T/unsure.jsonl")"
import hashlib, json, sqlite3, struct, sys
def field(b):
    return struct.pack(">Q", len(b)) + b
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[2], uri=True)
spool_id = db.execute("SELECT value FROM meta WHERE key = 'spool_id'").fetchone()[0]
windows = set()
for line in open(sys.argv[3]):
    t, c, v = line.split()
    windows.add((c, int(t) - int(t) % 60))
ids = set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    assert e["state"] == "unsure", e
    assert "row of outcomes" in e["last_error"] and "lost" in e["last_error"], e
    ids.add(e["identifier"])
want = set()
for c, start in windows:
    h = hashlib.sha256(b"".join(field(x.encode())
                                for x in ("test", spool_id, "usage", c, str(start))))
    want.add("lmw2-" + h.hexdigest()[:40])
assert ids == want, (sorted(ids), sorted(want))
print("\n".join(sorted(want)))
PY
assert_eq "$n_windows" "$(wc -l <"$T/expected_ids")" "window identifiers"

# Unsure is never sent by itself: a run bills nothing more.
double_restart # same record file: what Stripe has stays a duplicate; no faults
before=$(accepted_count)
agent_once "$conf" || true # exit 1: unsure events are held
assert_eq "$before" "$(accepted_count)" "events accepted by a run after the recover"
# The operator found which Stripe lacks and sends them: each window billed once.
"$LOGMETER" replay -c "$conf" --unsure >"$T/replay.out" 2>&1 ||
	fail "replay --unsure exited $?: $(cat "$T/replay.out")"
agent_once "$conf" || fail "run --once after replay --unsure exited $?"
assert_eq "$(cat "$T/expected_ids")" "$(double_accepted_ids)" "identifiers billed, each once"
expected=$(awk '{ s[$2] += $3 } END { for (c in s) print c, s[c] }' "$log" | sort)
got=$(awk -F'\t' '{ s[$3] += $4 } END { for (c in s) print c, s[c] }' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "totals billed per customer"
echo "t_window_lost_outcomes_recover: $n_windows meter events made unsure, each window billed once"

#!/usr/bin/env bash
# Aggregation windows through crashes: the real nginx log, appended in 20 chunks while the agent
# runs, billed by a rule with `aggregate = 60s` over API v2 (sessions expiring every 5 s, 5 % of
# stream requests failing with 429s, resets and 500s); the agent is killed 20 times, by kill -9
# at random moments and at the named crash points of committing, sending, marking and closing a
# window (one of them waits for the first window to close). A final `run --once` waits for the
# last windows to close and sends them. Then the totals per customer that the double accepted
# equal an independent awk sum over the log, the double accepted at most one meter event per
# (customer, window), every line is in exactly one window, and nothing is pending or open.
. "$(dirname "$0")/lib.sh"
lm_init aggregate

SEED=${SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
RANDOM=$SEED
CRASHES=${CRASHES:-20}
note "seed $SEED, $CRASHES crashes"
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log

double_start --session-ttl 5
double_faults_json "{\"rate\": 0.05, \"kinds\": [\"429\", \"reset\", \"reset_after\", \"500\", \"500rec\"], \"seed\": $SEED}"
mkdir -p "$T/logs"
: > "$T/logs/access.log"
write_config "$T/logmeter.conf"
sed -i 's/^max_requests_per_second = .*/&\napi = v2\nmeter_events_base = '"${DOUBLE_URL//\//\\/}"'/' "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nbatch_lines = 200/' "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
printf 'aggregate = 60s\naggregate_grace = 10s\n' >> "$T/logmeter.conf"
"$LOGMETER" check -c "$T/logmeter.conf" >/dev/null || fail "the configuration is invalid"

total_lines=$(wc -l < "$SRC_LOG")
per=$(( (total_lines + CRASHES - 1) / CRASHES ))
agent_dead() { ! kill -0 "$AGENT_PID" 2>/dev/null; }
points=(kill9 spool_commit_inside kill9 sender_after_answer kill9 spool_commit_after kill9
	spool_mark_inside)
fired=0
for k in $(seq 1 "$CRASHES"); do
	point=${points[$(( (k - 1) % ${#points[@]} ))]}
	[ "$k" -eq $(( CRASHES / 2 )) ] && point=window_close_inside
	sed -n "$(( (k - 1) * per + 1 )),$(( k * per ))p" "$SRC_LOG" >> "$T/logs/access.log"
	unset LOGMETER_CRASH_AT
	n=$(( 1 + RANDOM % 3 ))
	[ "$point" = window_close_inside ] && n=1 # one close transaction a minute
	[ "$point" = kill9 ] || export LOGMETER_CRASH_AT=$point:$n
	agent_start "$T/logmeter.conf"
	unset LOGMETER_CRASH_AT
	if [ "$point" = kill9 ]; then
		# A random moment: the point of this wait is where the kill lands, not a condition.
		sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + (r % 200) / 100 }')"
	elif [ "$point" = window_close_inside ]; then
		# The first window closes at most 70 s after the first line was read.
		wait_until 120 agent_dead || fail "crash $k: no window closed within 120 s"
	else
		wait_until 5 agent_dead || true
	fi
	if agent_dead; then
		wait "$AGENT_PID" 2>/dev/null || true
		AGENT_PID=
		grep -q "crash point $point" "$T/agent.log" && fired=$((fired + 1))
	else
		agent_kill9
	fi
done
grep -q "crash point window_close_inside" "$T/agent.log" ||
	fail "the agent never crashed while closing a window"
note "$fired crashes at named points, the rest by kill -9"

rc=0
timeout 300 "$LOGMETER" run --once -c "$T/logmeter.conf" >>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
assert_eq 0 "$rc" "the final run --once"
cmp -s "$T/logs/access.log" "$SRC_LOG" || fail "the appended log differs from the source log"

# Totals per customer: awk over the log, against the double's record.
LC_ALL=C awk '$9 ~ /^20[0-9]$/ && $10 ~ /^[0-9]+$/ {s[$1] += $10} END {for (c in s) print c, s[c]}' \
	"$T/logs/access.log" | sort > "$T/expected_totals"
LC_ALL=C awk -F'\t' '{s[$3] += $4} END {for (c in s) print c, s[c]}' "$T/accepted.tsv" |
	sort > "$T/accepted_totals"
diff -u "$T/expected_totals" "$T/accepted_totals" > "$T/totals.diff" ||
	fail "accepted totals per customer differ from the log's: $(head -n 20 "$T/totals.diff")"
dup_windows=$(cut -f3,5 "$T/accepted.tsv" | sort | uniq -d | wc -l)
assert_eq 0 "$dup_windows" "(customer, window) pairs accepted more than once"
dup_ids=$(cut -f1 "$T/accepted.tsv" | sort | uniq -d | wc -l)
assert_eq 0 "$dup_ids" "identifiers accepted more than once"
# Each identifier is the window's: instance, the spool's id (read here with Python's sqlite3),
# rule, customer and start (the event's timestamp), hashed here as docs/identifiers.md
# describes, not by logmeter.
"$PYTHON3" - "$T/accepted.tsv" "$T/state/spool.db" <<'PY' || fail "an accepted identifier is not its window's"
import hashlib, sqlite3, struct, sys
def field(b):
    return struct.pack(">Q", len(b)) + b
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[2], uri=True)
spool_id = db.execute("SELECT value FROM meta WHERE key = 'spool_id'").fetchone()[0]
for line in open(sys.argv[1], encoding="utf-8"):
    ident, name, customer, value, ts = line.rstrip("\n").split("\t")[:5]
    h = hashlib.sha256(b"".join(field(x.encode())
                                for x in ("test", spool_id, "bytes", customer, ts)))
    if ident != "lmw2-" + h.hexdigest()[:40]:
        sys.exit("%s is not the identifier of window (%s, %s)" % (ident, customer, ts))
PY

# Every line in exactly one window, no window open, nothing pending.
"$LOGMETER" spool export -c "$T/logmeter.conf" --windows > "$T/windows.json"
"$PYTHON3" - "$T/windows.json" "$T/logs/access.log" <<'PY' || fail "the windows do not hold each line once"
import json, re, sys
offs = []
off = 0
with open(sys.argv[2], "rb") as f:
    for line in f:
        p = line.split(b" ")
        if len(p) > 9 and re.fullmatch(rb"20\d", p[8]) and re.fullmatch(rb"\d+", p[9]):
            offs.append(off)
        off += len(line)
seen = []
for l in open(sys.argv[1]):
    w = json.loads(l)
    if w["state"] != "closed" or w["event_id"] is None:
        sys.exit("window %d is %s" % (w["id"], w["state"]))
    if len(w["lines"]) != w["lines_count"]:
        sys.exit("window %d lists %d lines, counts %d" % (w["id"], len(w["lines"]), w["lines_count"]))
    seen += [x["line_offset"] for x in w["lines"]]
if sorted(seen) != offs:
    sys.exit("%d lines in windows, %d expected, %d distinct" % (len(seen), len(offs), len(set(seen))))
PY
"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status"
grep -q '^events: pending 0, ' "$T/status" || fail "events still pending: $(grep '^events' "$T/status")"
grep -q '^windows: 0 open' "$T/status" || fail "windows still open: $(grep -A3 '^windows' "$T/status")"
note "$(wc -l < "$T/accepted_totals") customers, $(wc -l < "$T/accepted.tsv") window events accepted, $(double_stat duplicates) duplicates absorbed"

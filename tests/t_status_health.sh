#!/usr/bin/env bash
# status, status --json and the metrics as a health check, through the real binary against the
# Stripe double:
#   1. no spool yet: status --json still prints a JSON document (degraded, the reason), exit 1;
#   2. while every request fails: the sender's buckets (in flight, retrying, held, queued) do
#      not overlap: they add up to no more than the events pending;
#   3. the key refused for several retries: the pause's start stays where it began;
#   4. --since @0 counts every dead letter (degraded), as --since 1h does;
#   5. the agent frozen (SIGSTOP): status and the metrics say it is not responding (degraded)
#      within stale_after, and the scrape answers; thawed (SIGCONT), healthy again;
#   6. a metrics address in use: the agent refuses to start, naming the address and port;
#   7. two file names that are not UTF-8 and differ in one byte: two series, two JSON paths.
. "$(dirname "$0")/lib.sh"
lm_init status_health
double_start

mkdir -p "$T/logs"
head -n 300 "$LOGS/elastic_apache_logs.log" >"$T/logs/access.log"
n_bytes=$(apache_bytes_count "$T/logs/access.log")
n_favicon=$(grep -c '"GET /favicon.ico' "$T/logs/access.log")
[ "$n_favicon" -gt 0 ] || fail "test bug: no favicon lines"
conf=$T/logmeter.conf
write_config "$conf"
sed -i 's/^\[agent\]$/[agent]\nmetrics_listen = 127.0.0.1:0\nstale_after = 2s/' "$conf"
config_apache_bytes "$conf" "$T/logs/access.log"
config_no_meter "$conf"
mkdir -p "$T/odd"
# Not the first lines of the other: a file that holds exactly the first lines another file holds
# is taken for its copy and not read (docs/tailing.md, copytruncate).
sed -n '11,15p' "$LOGS/elastic_apache_logs.log" >"$T/odd/caf"$'\xe9'".log"
head -n 7 "$LOGS/elastic_apache_logs.log" >"$T/odd/caf"$'\xe8'".log"
cat >>"$conf" <<CONF
[source odd]
path = $T/odd/*.log
CONF

json() { # json FILE PYTHON-EXPRESSION: evaluated with d = the document in FILE
	"$PYTHON3" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}
status_json() { # status_json FILE: status --json into FILE; its exit status
	"$LOGMETER" status -c "$conf" --json >"$1" 2>>"$T/status.err"
}

# --- 1. no spool yet --------------------------------------------------------------------------
rc=0
status_json "$T/nospool.json" || rc=$?
assert_eq 1 "$rc" "status --json without a spool"
assert_eq degraded "$(json "$T/nospool.json" 'd["health"]["status"]')" "health without a spool"
json "$T/nospool.json" 'd["error"]' | grep -q "no spool" || fail "no reason: $(cat "$T/nospool.json")"
note "no spool: a JSON document saying why"

# --- 2. every request fails: the buckets --------------------------------------------------------
double_faults_json '{"rate": 1.0, "kinds": ["500"], "seed": 1}'
agent_start "$conf"
wait_until 60 grep -q 'metrics: serving http://127.0.0.1:[0-9]*/metrics' "$T/agent.log" ||
	fail "no metrics endpoint in the log"
PORT=$(sed -n 's|.*metrics: serving http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$T/agent.log")
buckets='d["sender"].get("in_flight_events", 0) + d["sender"]["retrying"] + d["sender"]["held"] + d["sender"]["queued"]'
# The sender publishes its buckets about once a second, the spool's count is read now: a
# snapshot taken while the favicon rule's events were still in flight (before Stripe refused
# them) may hold more than the pending count; an overlap of the buckets holds in every snapshot.
retrying() {
	status_json "$T/s.json"
	[ "$(json "$T/s.json" 'd["events"]["pending"]')" = "$n_bytes" ] &&
		[ "$(json "$T/s.json" 'd["sender"]["retrying"] > 0')" = True ] &&
		[ "$(json "$T/s.json" "$buckets")" -le "$n_bytes" ]
}
wait_until 60 retrying ||
	fail "no snapshot with events waiting to retry and in flight, retrying, held and queued adding up to no more than the $n_bytes pending: $(cat "$T/s.json")"
sum=$(json "$T/s.json" "$buckets")
"$LOGMETER" status -c "$conf" >"$T/s.txt" || true
grep -q "^queue: [0-9]* requests in flight with [0-9]* events, [1-9][0-9]* events waiting to retry, 0 held, [0-9]* ready to send; [0-9]* more pending in the spool$" "$T/s.txt" ||
	fail "the queue's line: $(grep -E '^(sender|queue)' "$T/s.txt")"
note "while failing: the sender's buckets add up to $sum of $n_bytes pending"

# --- 3. the key refused: since when -------------------------------------------------------------
good_key=$API_KEY
API_KEY=sk_test_double_another_key
double_restart
paused() { status_json "$T/p.json"; [ "$(json "$T/p.json" 'd["sender"]["state"]')" = paused-auth ]; }
wait_until 30 paused || fail "sending never paused for the refused key"
since=$(json "$T/p.json" 'd["sender"]["paused_since"]')
auth0=$(json "$T/p.json" 'd["sender"]["requests"]["by_outcome"]["auth"]')
retried() {
	status_json "$T/p.json"
	[ "$(json "$T/p.json" 'd["sender"]["requests"]["by_outcome"]["auth"]')" -ge $((auth0 + 3)) ] &&
		[ "$(json "$T/p.json" 'd["sender"]["state"]')" = paused-auth ]
}
wait_until 30 retried || fail "the refused key was not tried again three times"
assert_eq "$since" "$(json "$T/p.json" 'd["sender"]["paused_since"]')" "paused_since after three more refusals"
note "the key refused $(json "$T/p.json" 'd["sender"]["requests"]["by_outcome"]["auth"]') times: paused since $since still"

# --- 4. --since @0 ------------------------------------------------------------------------------
API_KEY=$good_key
double_restart
drained() { status_json "$T/d.json"; [ "$(json "$T/d.json" 'd["events"]["pending"]')" = 0 ]; }
wait_until 60 drained || fail "still pending: $(json "$T/d.json" 'd["events"]["pending"]')"
assert_eq "$n_favicon" "$(json "$T/d.json" 'd["events"]["dead"]')" "dead letters (grep -c favicon)"
healthy() { "$LOGMETER" status -c "$conf" >/dev/null 2>&1; }
wait_until 30 healthy || fail "status not healthy once delivered: $("$LOGMETER" status -c "$conf")"
rc=0
"$LOGMETER" status -c "$conf" --json --since @0 >"$T/since0.json" || rc=$?
assert_eq 1 "$rc" "status --since @0 with dead letters"
assert_eq "$n_favicon" "$(json "$T/since0.json" 'd["health"]["dead_since"]["count"]')" "dead letters since @0"
note "--since @0: $n_favicon dead letters, degraded"

# --- 5. frozen -----------------------------------------------------------------------------------
kill -STOP "$AGENT_PID"
frozen() {
	local rc=0
	"$LOGMETER" status -c "$conf" >"$T/frozen.txt" 2>&1 || rc=$?
	[ "$rc" = 1 ] && grep -q '^health: degraded: sender not responding' "$T/frozen.txt" &&
		grep -q '^health: degraded: ingest not responding' "$T/frozen.txt"
}
if ! wait_until 30 frozen; then
	kill -CONT "$AGENT_PID"
	fail "status of a frozen agent: $(cat "$T/frozen.txt")"
fi
rc=0
curl -sS --noproxy '*' --max-time 10 "http://127.0.0.1:$PORT/metrics" >"$T/frozen.prom" || rc=$?
kill -CONT "$AGENT_PID"
assert_eq 0 "$rc" "curl exit status of a scrape of a frozen agent"
for m in logmeter_degraded; do
	assert_eq 1 "$(sed -n "s/^$m //p" "$T/frozen.prom")" "$m of a frozen agent"
done
for m in logmeter_ingest_responding logmeter_sender_responding; do
	assert_eq 0 "$(sed -n "s/^$m //p" "$T/frozen.prom")" "$m of a frozen agent"
done
wait_until 30 healthy || fail "status after SIGCONT: $("$LOGMETER" status -c "$conf")"
scrape_ok() {
	curl -sS --noproxy '*' --max-time 10 "http://127.0.0.1:$PORT/metrics" >"$T/thawed.prom" &&
		[ "$(sed -n 's/^logmeter_degraded //p' "$T/thawed.prom")" = 0 ]
}
wait_until 30 scrape_ok || fail "metrics after SIGCONT: $(grep -E '^logmeter_(degraded|.*responding)' "$T/thawed.prom")"
note "frozen: not responding in status and the metrics; thawed: healthy"

# --- 6. the metrics address in use ---------------------------------------------------------------
conf2=$T/other.conf
sed "s|^state_dir = .*|state_dir = $T/state2|; s|^metrics_listen = .*|metrics_listen = 127.0.0.1:$PORT|" "$conf" >"$conf2"
rc=0
timeout 60 "$LOGMETER" run --once -c "$conf2" >/dev/null 2>"$T/inuse.err" || rc=$?
assert_eq 1 "$rc" "exit status of an agent whose metrics address is in use"
grep -q "metrics: cannot listen on 127.0.0.1:$PORT: Address already in use" "$T/inuse.err" ||
	fail "the address in use: $(cat "$T/inuse.err")"
note "a metrics address in use: refused, naming 127.0.0.1:$PORT"

# --- 7. names that are not UTF-8 ------------------------------------------------------------------
for b in e9 e8; do
	grep -qF "logmeter_lines_total{source=\"odd\",file=\"$T/odd/caf\\\\x$b.log\",result=\"unmatched\"} " "$T/thawed.prom" ||
		fail "no series of its own for caf\\x$b.log: $(grep -F 'source="odd",file' "$T/thawed.prom")"
done
status_json "$T/odd.json" || true
assert_eq 2 "$(json "$T/odd.json" 'len(set(f["path"] for f in d["files"] if f["source"] == "odd"))')" "JSON paths of the two files"
agent_stop || fail "the agent exited $?"
note "names that are not UTF-8: a series and a path each"

#!/usr/bin/env bash
# The metrics endpoint ([agent] metrics_listen, libmicrohttpd) scraped while the agent runs
# through faults, each scrape parsed by Debian's python3-prometheus-client and compared with
# `logmeter status --json` taken just before and after it (tests/metrics_check.py): first while
# every request fails with a 500 (nothing delivered, outcomes unknown), then while Stripe refuses
# the key (key refused, degraded: status exits 1), then once everything is delivered. Three log
# files with metrics_max_files = 2: two have series of their own, the per-source sums count all
# three, and their line counts are those of awk over the real log.
. "$(dirname "$0")/lib.sh"
lm_init metrics

# The parser: Debian's python3-prometheus-client, for the system's python3.
PARSER_PY=
for py in /usr/bin/python3 "$PYTHON3"; do
	if "$py" -c 'import prometheus_client.parser' 2>/dev/null; then
		PARSER_PY=$py
		break
	fi
done
[ -n "$PARSER_PY" ] || fail "python3-prometheus-client is missing (sh .ci/deps installs it)"

double_start
mkdir -p "$T/logs"
head -n 450 "$LOGS/elastic_apache_logs.log" | split -l 150 - "$T/logs/part."
for f in "$T"/logs/part.*; do mv "$f" "$f.log"; done
cat "$T"/logs/part.*.log >"$T/all.log"
n_lines=$(wc -l <"$T/all.log")
n_bytes=$(apache_bytes_count "$T/all.log")
n_favicon=$(grep -c '"GET /favicon.ico' "$T/all.log")
[ "$n_favicon" -gt 0 ] || fail "test bug: no favicon lines"
# A line can make a bytes event and a dead letter: matched lines are those either rule takes.
n_matched=$(LC_ALL=C awk '($9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/) || /"GET \/favicon.ico/' "$T/all.log" | wc -l)

write_config "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nmetrics_listen = 127.0.0.1:0\nmetrics_max_files = 2/' "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/*.log"
config_no_meter "$T/logmeter.conf"

status_json() {
	"$LOGMETER" status --json -c "$T/logmeter.conf" >"$1" 2>>"$T/status.err"
}
PORT=
scrape() {
	_lm_curl -f "http://127.0.0.1:$PORT/metrics" >"$1"
}
# compare NAME: status, scrape, status, then tests/metrics_check.py on the three.
compare() {
	status_json "$T/$1.before.json" || true
	scrape "$T/$1.prom" || fail "$1: scraping failed"
	status_json "$T/$1.after.json" || true
	"$PARSER_PY" "$top_srcdir/tests/metrics_check.py" "$T/$1.prom" "$T/$1.before.json" \
		"$T/$1.after.json" 2 || fail "$1: the scrape disagrees with status --json"
}
jq_py() { # jq_py FILE EXPR: a value of a JSON file, with python
	"$PYTHON3" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}
metric() { # metric NAME: its value in a fresh scrape (one sample without labels)
	scrape "$T/m.prom" && sed -n "s/^$1 //p" "$T/m.prom"
}

# --- every request answered 500: nothing delivered, everything read ----------------------------
# (The unknown meter is refused before the 500 faults act, as at Stripe: validation comes first.)
double_faults_json '{"rate": 1.0, "kinds": ["500"], "seed": 1}'
agent_start "$T/logmeter.conf"
wait_until 60 grep -q 'metrics: serving http://127.0.0.1:[0-9]*/metrics' "$T/agent.log" ||
	fail "no metrics endpoint in the log"
PORT=$(sed -n 's|.*metrics: serving http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$T/agent.log")
read_all() {
	status_json "$T/s.json"
	[ "$(jq_py "$T/s.json" 'sum(f["counters"]["lines"] for f in d["files"])')" = "$n_lines" ] &&
		[ "$(jq_py "$T/s.json" 'd["sender"]["requests"]["by_outcome"]["unknown"] >= 5')" = True ] &&
		[ "$(jq_py "$T/s.json" 'd["events"]["dead"]')" = "$n_favicon" ]
}
wait_until 60 read_all || fail "the agent did not read $n_lines lines and meet 500s: $(cat "$T/s.json")"
compare failing
assert_eq "$n_bytes" "$(metric logmeter_pending_events)" "pending while Stripe fails"
src_lines() { sed -n "s/^logmeter_source_lines_total{source=\"apache\",result=\"$1\"} //p" "$T/failing.prom"; }
assert_eq "$n_matched" "$(src_lines matched)" "matched lines of the three files (awk)"
assert_eq "$((n_lines - n_matched))" "$(src_lines unmatched)" "unmatched lines (awk)"
assert_eq 2 "$(grep -c '^logmeter_file_lag_bytes{' "$T/failing.prom")" "files with series of their own"
assert_eq 3 "$(sed -n 's/^logmeter_files{source="apache",state="reading"} //p' "$T/failing.prom")" "files being read"
note "while failing: $(metric logmeter_pending_events) pending, $(sed -n 's/^logmeter_requests_total{api="v1",outcome="unknown"} //p' "$T/m.prom") unknown outcomes"

# --- the key refused: degraded ---------------------------------------------------------------------
good_key=$API_KEY
API_KEY=sk_test_double_another_key
double_restart
key_refused() { [ "$(metric logmeter_key_refused)" = 1 ]; }
wait_until 30 key_refused || fail "logmeter_key_refused never 1"
compare refused
assert_eq 1 "$(metric logmeter_degraded)" "degraded while the key is refused"
rc=0
"$LOGMETER" status -c "$T/logmeter.conf" >"$T/refused.txt" || rc=$?
assert_eq 1 "$rc" "status exit while the key is refused"
grep -q '^health: degraded: sending paused since .*401' "$T/refused.txt" || fail "status: $(cat "$T/refused.txt")"

# --- Stripe back: everything delivered, the dead letters counted ------------------------------------
API_KEY=$good_key
double_restart
drained() { [ "$(metric logmeter_pending_events)" = 0 ]; }
wait_until 60 drained || fail "still $(metric logmeter_pending_events) pending"
# The spool says drained at once; the sender publishes its request counters about once a
# second: wait until what it published covers the last answer before comparing.
outcome_now() { scrape "$T/m.prom" && sed -n "s/^logmeter_requests_total{api=\"v1\",outcome=\"$1\"} //p" "$T/m.prom"; }
published() { [ "$(outcome_now delivered)" = "$n_bytes" ] && [ "$(outcome_now rejected)" = "$n_favicon" ]; }
wait_until 30 published || note "request counters after 30 s: delivered $(outcome_now delivered), rejected $(outcome_now rejected)"
compare drained
assert_eq "$n_bytes" "$(double_stat accepted)" "events the double accepted"
assert_eq "$n_bytes" "$(sed -n 's/^logmeter_spool_events{rule="bytes",state="delivered"} //p' "$T/drained.prom")" "delivered bytes events"
assert_eq "$n_favicon" "$(metric logmeter_dead_events)" "dead letters (grep -c favicon)"
# Each bytes event was accepted by one request, each favicon event refused by one (the 500s
# recorded nothing, the 401s were not Stripe's work): counted by awk and grep, not by logmeter.
outcome() { sed -n "s/^logmeter_requests_total{api=\"v1\",outcome=\"$1\"} //p" "$T/drained.prom"; }
assert_eq "$n_bytes" "$(outcome delivered)" "requests with outcome delivered"
assert_eq "$n_favicon" "$(outcome rejected)" "requests with outcome rejected"
[ "$(outcome unknown)" -gt 0 ] && [ "$(outcome auth)" -gt 0 ] || fail "no unknown or auth outcomes counted"
rc=0
"$LOGMETER" status -c "$T/logmeter.conf" >/dev/null || rc=$?
assert_eq 0 "$rc" "status exit when healthy, dead letters not asked about"
rc=0
"$LOGMETER" status --json --since 1h -c "$T/logmeter.conf" >"$T/since.json" || rc=$?
assert_eq 1 "$rc" "status exit with dead letters since an hour ago"
assert_eq "$n_favicon" "$(jq_py "$T/since.json" 'd["health"]["dead_since"]["count"]')" "dead letters since"
# 404 and 405 for what is not a scrape.
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")" "GET /"
assert_eq 405 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/metrics")" "POST /metrics"
agent_stop || fail "the agent exited $?"
note "scrapes agree with status --json while failing, refused and drained"

# The example alert rules name only metrics the endpoint serves (the drained scrape has them all).
names=$(sed -n 's/^ *expr: //p' "$top_srcdir/docs/examples/logmeter-alerts.yml" | grep -o 'logmeter_[a-z_]*' | sort -u)
[ "$(wc -w <<<"$names")" -ge 6 ] || fail "test bug: metrics in the alert rules: $names"
for n in $names; do
	grep -q "^# TYPE $n " "$T/drained.prom" || fail "the alert rules use $n, which the endpoint does not serve"
done
note "the alert rules use $(wc -w <<<"$names") metrics the endpoint serves"

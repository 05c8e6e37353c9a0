#!/usr/bin/env bash
# API v2 while Stripe cannot be reached: `status` should say why nothing is delivered. With v1
# its `last error` line names the failed connection; with v2 the meter event session cannot be
# made, no event is attempted, and `status` said "last error: none" with the events pending (and
# `status --json` and the metrics counted no failed request), though the agent's log repeats
# "cannot create a meter event session". Now the session request is counted as a request, by
# outcome, and its failure is the last error of the events it was for, as a failed request's is
# (docs/status-json.md), without counting an attempt of theirs: none left this host.
#
# Failed on main: "status does not say why 182 events wait: events: pending 182, ...;last error:
# none;sender: sending;requests: 0 since ...;health: ok".
. "$(dirname "$0")/lib.sh"
lm_init v2_status_outage

mkdir -p "$T/logs"
head -n 3000 "$LOGS/elastic_nginx_logs_prefix29480.log" > "$T/logs/access.log"
double_start
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nmetrics_listen = 127.0.0.1:0/' "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
expected=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
double_stop # the port is closed: connections are refused
agent_start "$T/logmeter.conf"
all_spooled() { [ "$(spooled_count "$T/logmeter.conf")" = "$expected" ]; }
wait_until 60 all_spooled || fail "the agent did not spool $expected events"
failed_session() { grep -q 'cannot create a meter event session' "$T/agent.log"; }
wait_until 60 failed_session || fail "no failed session in the agent's log"
says_why() {
	"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status"
	grep -q '^last error: .*\(session\|connect\)' "$T/status" &&
		grep -q '^requests: [0-9]* since .*, \(retry\|unknown\) [1-9]' "$T/status"
}
wait_until 60 says_why ||
	fail "status does not say why $expected events wait: $(grep -E '^(events|last error|sender|requests|health)' "$T/status" | tr '\n' ';')"
grep -q '^sender: sending' "$T/status" || fail "status: $(grep '^sender' "$T/status")"
# The same facts in the JSON and the metrics (the events' last error; the session requests by
# outcome: a refused connection is a retry, or unknown if curl saw it otherwise).
"$LOGMETER" status -c "$T/logmeter.conf" --json > "$T/status.json" || true
"$PYTHON3" - "$T/status.json" <<'PY' || fail "status --json: $(head -c 2000 "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert "meter event session" in (d["last_error"] or ""), d["last_error"]
assert d["sender"]["state"] == "sending", d["sender"]["state"]
by = d["sender"]["requests"]["by_outcome"]
assert by["retry"] + by["unknown"] >= 1, by
assert by["delivered"] == 0, by
PY
wait_until 60 grep -q 'metrics: serving http://127.0.0.1:[0-9]*/metrics' "$T/agent.log" ||
	fail "no metrics endpoint in the log"
port=$(sed -n 's|.*metrics: serving http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$T/agent.log")
_lm_curl -f "http://127.0.0.1:$port/metrics" > "$T/metrics" || fail "cannot scrape the metrics"
awk '/^logmeter_requests_total\{api="v2",outcome="(retry|unknown)"\}/ {n += $2} END {exit !(n >= 1)}' \
	"$T/metrics" || fail "the metrics count no failed request: $(grep '^logmeter_requests_total' "$T/metrics")"
agent_stop || true
# Nothing was attempted: no event counts an attempt or an unknown outcome, and those it was for
# carry why they wait.
export_tsv "$T/logmeter.conf" pending > "$T/pending.tsv"
assert_eq "$expected" "$(wc -l < "$T/pending.tsv")" "pending events"
assert_eq 0 "$(awk -F'\t' '$9 != 0 || $15 != ""' "$T/pending.tsv" | wc -l)" "events with an attempt or an unknown outcome"
[ "$(awk -F'\t' 'index($11, "cannot create a meter event session") > 0' "$T/pending.tsv" | wc -l)" -ge 1 ] ||
	fail "no pending event says why it waits"
note "ok"

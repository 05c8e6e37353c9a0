#!/usr/bin/env bash
# The metrics endpoint across reloads (docs/metrics.md): each SIGHUP stops the server process
# and starts another on the agent's listening socket. The endpoint must answer after every
# reload, with the lines read since (awk over the real log), not refuse connections because the
# stopped server shut the shared socket down.
. "$(dirname "$0")/lib.sh"
lm_init metrics_reload
double_start

CONF=$T/logmeter.conf
mkdir -p "$T/logs"
APACHE=$LOGS/elastic_apache_logs.log
write_config "$CONF"
sed -i 's/^\[agent\]$/[agent]\nmetrics_listen = 127.0.0.1:0/' "$CONF"
config_apache_bytes "$CONF" "$T/logs/access.log"
sed -n 1,100p "$APACHE" >"$T/logs/access.log"

agent_start "$CONF"
wait_until 60 grep -q 'metrics: serving http://127.0.0.1:[0-9]*/metrics' "$T/agent.log" ||
	fail "no metrics endpoint in the log"
PORT=$(sed -n 's|.*metrics: serving http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$T/agent.log")
# lines_ok N: a scrape answers, and says the source read N lines (matched and unmatched).
lines_ok() {
	_lm_curl -f "http://127.0.0.1:$PORT/metrics" >"$T/m.prom" 2>"$T/curl.err" &&
		[ "$(sed -n 's/^logmeter_source_lines_total{source="apache",result="[a-z]*"} //p' \
			"$T/m.prom" | awk '{ s += $1 } END { print s + 0 }')" = "$1" ]
}
reloads=0
# reload: SIGHUP, and wait for the agent to say it reloaded.
reload() {
	reloads=$((reloads + 1))
	kill -HUP "$AGENT_PID"
	wait_until 60 eval '[ "$(grep -c "configuration reloaded" "$T/agent.log")" -ge $reloads ]' ||
		fail "reload $reloads: the agent did not reload"
}

wait_until 60 lines_ok 100 || fail "before any reload: $(cat "$T/curl.err")"

note "1. a reload that changes nothing"
reload
sed -n 101,250p "$APACHE" >>"$T/logs/access.log"
wait_until 60 lines_ok 250 || fail "after reload 1: $(cat "$T/curl.err")"

note "2. a reload that restarts the sender"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 999/' "$CONF"
reload
sed -n 251,400p "$APACHE" >>"$T/logs/access.log"
wait_until 60 lines_ok 400 || fail "after reload 2: $(cat "$T/curl.err")"
wait_until 60 accepted_at_least "$(apache_bytes_count "$T/logs/access.log")" ||
	fail "$(accepted_count) events accepted"
agent_stop || fail "the agent exited with an error"
assert_accepted_once "$CONF" "$T/logs/access.log"
! grep -q "Could not obtain daemon fdsets" "$T/agent.log" || fail "libmicrohttpd lost its socket"
note "ok: the endpoint answered after $reloads reloads"

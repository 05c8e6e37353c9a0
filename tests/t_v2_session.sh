#!/usr/bin/env bash
# API v2: a stream that keeps answering "session expired" (401 temporary_session_expired) to
# fresh sessions is a session problem, not a refused key (Stripe made the sessions with that key):
# the agent says so, pauses for auth_pause and tries a new session until the stream takes the
# events, as Stripe's SDKs retry an expired session; `run --once` then delivers everything and
# exits 0. And when a `run --once` does end on a refusal (here answers that are not Stripe's, a
# redirect), `status` afterwards shows it: health degraded (exit 1) and the refusal as the last
# error, until a run sends the events.
. "$(dirname "$0")/lib.sh"
lm_init v2_session
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log

double_start
mkdir -p "$T/logs"
head -n 3000 "$SRC_LOG" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
conf="$T/logmeter.conf"
expected=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$expected" -gt 50 ] || fail "only $expected lines to bill"

# Five expired-session answers in a row: more than the three that pause sending.
double_faults '401session*5'
rc=0
agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once with sessions expiring at once"
assert_eq "$expected" "$(accepted_count)" "events accepted"
grep -q "meter event sessions keep expiring" "$T/agent.log" ||
	fail "the agent did not report the sessions' problem"
if grep -q "refused the API key" "$T/agent.log"; then
	fail "a session problem was reported as a refused key: $(grep 'refused the API key' "$T/agent.log")"
fi
"$LOGMETER" status -c "$conf" > "$T/status1.out" || fail "status after a complete run is not healthy"

# A run ended by answers that are not Stripe's: its refusal stays visible in status.
printf '%s\n' "$(sed -n 3001,4000p "$SRC_LOG")" >> "$T/logs/access.log"
more=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
double_faults '302*50'
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once stopped by a redirect"
src=0
"$LOGMETER" status -c "$conf" > "$T/status2.out" || src=$?
assert_eq 1 "$src" "status's exit after the run stopped"
grep -q '^health: degraded: the last run stopped with sending paused' "$T/status2.out" ||
	fail "status does not say why sending stopped: $(cat "$T/status2.out")"
grep -q '^last error: the answer was not Stripe' "$T/status2.out" ||
	fail "status's last error: $(grep 'last error' "$T/status2.out")"

# A run that sends everything clears it.
double_faults_json '{"clear": true}'
agent_once "$conf" || fail "the last run --once failed"
assert_eq "$more" "$(accepted_count)" "events accepted in the end"
"$LOGMETER" status -c "$conf" > "$T/status3.out" ||
	fail "status after the events were sent: $(grep health "$T/status3.out")"

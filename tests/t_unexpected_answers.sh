#!/usr/bin/env bash
# Answers that are not Stripe's answer about the event (a redirect from a misconfigured proxy, a
# 200 from a captive portal) never make dead letters: sending pauses like after a refused key,
# `status` and the log say why, and it resumes by itself; `run --once` stops with exit 1 and
# leaves the events pending. Afterwards every event is accepted exactly once.
. "$(dirname "$0")/lib.sh"
lm_init unexpected_answers
double_start

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 120 "$LOGS/elastic_apache_logs.log" > "$log"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"
n=$(apache_bytes_count "$log")

# --once: a redirect stops the run (exit 1), the events stay pending, nothing is dead.
double_faults '302'
rc=0; agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "exit code of run --once after a redirect"
grep -q 'redirect to https://portal.invalid/login' "$T/agent.log" || fail "the log does not name the redirect"
grep -q 'check api_base and any proxy' "$T/agent.log" || fail "the log does not say what to check"
# (Requests already in flight beside the redirected one finish and are recorded.)
st=$("$LOGMETER" status -c "$conf")
grep -q "pending $((n - $(accepted_count))), delivered $(accepted_count), dead letters 0, unsure 0" <<<"$st" ||
	fail "status after the redirect: $st"

# The agent: a captive portal's 200 pauses sending for auth_pause; status says so while it lasts.
sed -i 's/^auth_pause = .*/auth_pause = 60s/' "$conf"
double_faults '200html'
agent_start "$conf"
# Paused: status says so, and exits 1 (degraded: a health check fails).
paused() {
	local rc=0
	"$LOGMETER" status -c "$conf" >"$T/status" 2>&1 || rc=$?
	[ "$rc" = 1 ] && grep -q '^sender: paused since' "$T/status"
}
wait_until 30 paused || fail "status never showed the pause: $(cat "$T/status")"
grep -q "the answer was not Stripe's answer about the event: HTTP 200: the answer is not the meter event sent" "$T/status" ||
	fail "status does not say why: $(cat "$T/status")"
grep -q "dead letters 0" "$T/status" || fail "the 200 made dead letters: $(cat "$T/status")"
# Paused means paused: nothing more reaches the double until the pause ends.
requests=$(double_stat requests)
sleep 1
assert_eq "$requests" "$(double_stat requests)" "requests while paused"
agent_stop || fail "agent exited $? on SIGTERM"

# A short pause: it resumes by itself, and everything goes through once.
sed -i 's/^auth_pause = .*/auth_pause = 500ms/' "$conf"
double_faults '302,200html'
agent_start "$conf"
wait_until 60 accepted_at_least "$n" || fail "only $(accepted_count) of $n accepted"
grep -q 'trying Stripe again with one request' "$T/agent.log" || fail "no probe after the pause"
agent_stop || fail "agent exited $? on SIGTERM"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered $n, dead letters 0, unsure 0" <<<"$st" || fail "status: $st"
assert_accepted_once "$conf" "$log"
note "redirect and captive portal: paused, never dead-lettered; $n events accepted once"

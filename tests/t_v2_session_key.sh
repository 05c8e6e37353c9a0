#!/usr/bin/env bash
# API v2: the key is rolled at Stripe while the agent runs. The stream refuses the old session's
# token (the restarted double forgot it), so the agent asks for a new session with the key it
# has, and the session request, the one request that carries the key, is refused with a 401 in
# Stripe's v2 error shape (the operation's errors are v2.error; docs/stripe-contract.md,
# section 14). That is the key refused, not a session: sending pauses for auth_pause, `status`
# says the key was refused, and at the end of each pause the key is read anew from its file
# (docs/systemd.md) and one session request tries it; no busy loop: every refused request is
# one pause the agent logged. Once the new key is written to the file, every event of the real
# nginx log is accepted exactly once (identifiers from awk and tests/identifiers.py), none
# before.
. "$(dirname "$0")/lib.sh"
lm_init v2_session_key

src=$LOGS/elastic_nginx_logs_prefix29480.log
mkdir -p "$T/logs"
head -n 2000 "$src" > "$T/logs/access.log"
double_start
old_key=$API_KEY
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
first=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$first" -ge 1 ] || fail "test bug: no events in the first part"

agent_start "$T/logmeter.conf"
wait_until 60 accepted_at_least "$first" || fail "only $(accepted_count) of $first events accepted"

# ---- the key rolled: the double takes only a new one, and forgets every session ----------------
new_key="sk_test_rolled_$(_lm_random)"
[ "$new_key" != "$old_key" ] || fail "test bug: the same key"
API_KEY=$new_key
double_restart
tail -n +2001 "$src" | head -n 2000 >> "$T/logs/access.log"
total=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$total" -gt "$first" ] || fail "test bug: no events in the second part"

status_json() {
	"$LOGMETER" status --json -c "$T/logmeter.conf" > "$T/status.json" 2>>"$T/status.err" || true
	"$PYTHON3" -c '
import json, sys
s = json.load(open(sys.argv[1]))["sender"]
print(s.get("state"), "|", s.get("pause_reason"))' "$T/status.json"
}
paused_for_key() {
	case $(status_json) in
	"paused-auth | Stripe refused the API key: "*"Invalid API Key provided"*) return 0 ;;
	esac
	return 1
}
wait_until 60 paused_for_key || fail "status does not say the key was refused: $(status_json)"
# The old key read anew at two pauses' ends and refused again: the file is what is read.
refused_at_least() { [ "$(double_stat session_unauthorized)" -ge "$1" ]; }
wait_until 60 refused_at_least 3 ||
	fail "only $(double_stat session_unauthorized) session requests refused"
assert_eq "$first" "$(accepted_count)" "events accepted while the key is refused"
assert_eq 0 "$(double_stat stream_ok)" "stream requests answered 200 while the key is refused"
# Polled as the JSON was: between two pauses one session request tries the key.
text_paused() {
	"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status.txt" 2>&1 || true
	grep -q 'sending paused since .*Stripe refused the API key' "$T/status.txt"
}
wait_until 60 text_paused || fail "the text status does not say so: $(grep -i paus "$T/status.txt")"

# ---- the new key written to the file: read at the end of the pause, no restart ----------------
(umask 077 && printf '%s\n' "$new_key" > "$T/stripe.key.new")
mv -f "$T/stripe.key.new" "$T/stripe.key"
wait_until 60 accepted_at_least "$total" || fail "only $(accepted_count) of $total events accepted"
agent_stop || fail "the agent did not stop cleanly"

# Each request that carried the refused key started a pause of its own (logged, and waited out
# before the next one): none was made in a loop. The meter check at start took the old key, so
# only session requests were refused (their 401s, and any of GET /v1/billing/meters, counted in
# the double's log).
refused=$(awk -F'\t' '$3 == 401 && ($2 ~ /^\/v2\/billing\/meter_event_session/ ||
	$2 ~ /^\/v1\/billing\/meters/)' "$T/double.log" | wc -l)
assert_eq "$(double_stat session_unauthorized)" "$refused" "401s to requests with the key"
assert_eq "$refused" "$(grep -c 'Stripe refused the API key' "$T/agent.log")" \
	"refusals logged as pauses (one per refused request)"
grep -q 'trying Stripe again with one request' "$T/agent.log" || fail "no probe after a pause"
! grep -q "$old_key\|$new_key" "$T/agent.log" || fail "a key is in the agent's log"

uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
nginx_bytes_offsets "$T/logs/access.log" | identifiers_of nginx "$uid" bytes | sort > "$T/expected_ids"
double_accepted_ids > "$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/ids.diff" ||
	fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"
assert_eq "$total" "$(wc -l < "$T/accepted_ids")" "events accepted"
note "ok: $total events accepted once; $refused session requests refused the rolled key"

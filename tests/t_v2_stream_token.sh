#!/usr/bin/env bash
# API v2: the stream refuses the session's token with a 401 in Stripe's v2 error shape (the
# stream's errors are v2.error: code and message; docs/stripe-contract.md, section 14), as for a
# token Stripe no longer knows. The stream is authorised by that token alone, never by the API
# key, so it is the session that is refused: the agent makes a new session and sends the same
# events again under the same identifiers. First `run --once` with the double's fault 401token
# (it forgets the request's session and answers as to an unknown token); then a running agent
# whose double restarts (every session forgotten) between two parts of the log; then `run
# --once` with fault 401v1 (the token refused with v1's 401, which has no code). Every event of
# the real nginx log is accepted exactly once (identifiers from awk and tests/identifiers.py),
# and the key is never said to be refused.
#
# Failed on main: the 401 was taken for a refused API key ("Stripe refused the API key ...:
# stopping; events stay pending") and `run --once` exited 3 with the events pending; after the
# v2-shaped 401 was handled, v1's 401 to the stream still was.
. "$(dirname "$0")/lib.sh"
lm_init v2_stream_token

src=$LOGS/elastic_nginx_logs_prefix29480.log
mkdir -p "$T/logs"
head -n 3000 "$src" > "$T/logs/access.log"
double_start
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
first=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$first" -ge 1 ] || fail "test bug: no events in the first part"

# ---- run --once: the first stream request's token refused -------------------------------------
double_faults '401token'
rc=0
agent_once "$T/logmeter.conf" || rc=$?
assert_eq 0 "$rc" "run --once exit status ($(grep -E 'error|refused' "$T/agent.log" | tail -n 2))"
assert_eq 1 "$(double_stat faults.401token)" "401token faults answered"
# Requests in flight under the refused token are refused too (the double forgot it); only the
# first answer ends the session.
[ "$(double_stat unknown_tokens)" -ge 1 ] || fail "no unknown token was refused"
assert_eq 2 "$(double_stat sessions)" "sessions made (the refused one and its successor)"
assert_eq "$first" "$(accepted_count)" "events accepted by run --once"

# ---- a running agent; the double restarts and forgets every session ----------------------------
agent_start "$T/logmeter.conf"
tail -n +3001 "$src" | head -n 1500 >> "$T/logs/access.log"
second=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$second" -gt "$first" ] || fail "test bug: no events in the second part"
wait_until 60 accepted_at_least "$second" || fail "only $(accepted_count) of $second events accepted"
double_restart
tail -n +4501 "$src" | head -n 1500 >> "$T/logs/access.log"
total=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$total" -gt "$second" ] || fail "test bug: no events in the third part"
wait_until 60 accepted_at_least "$total" || fail "only $(accepted_count) of $total events accepted"
# The restarted double refused the old token and made the one session that replaced it.
[ "$(double_stat unknown_tokens)" -ge 1 ] || fail "no unknown token was refused after the restart"
assert_eq 1 "$(double_stat sessions)" "sessions made after the restart"
agent_stop || fail "the agent did not stop cleanly"

# ---- run --once: the token refused with v1's 401 (a type, no code) -----------------------------
# Not the shape Stripe documents for the stream, but a 401 to a request that carries the token
# alone refuses the token whatever its body: a new session, the same events again.
tail -n +6001 "$src" | head -n 1500 >> "$T/logs/access.log"
last=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$last" -gt "$total" ] || fail "test bug: no events in the fourth part"
total=$last
double_faults '401v1'
rc=0
agent_once "$T/logmeter.conf" || rc=$?
assert_eq 0 "$rc" \
	"run --once exit status after v1's 401 ($(grep -E 'error|refused' "$T/agent.log" | tail -n 2))"
assert_eq 1 "$(double_stat faults.401v1)" "401v1 faults answered"
assert_eq 3 "$(double_stat sessions)" "sessions made after the restart (run --once: 2)"
assert_eq "$total" "$(accepted_count)" "events accepted by the last run --once"

! grep -q 'refused the API key' "$T/agent.log" ||
	fail "the key was said to be refused: $(grep 'refused the API key' "$T/agent.log" | head -n 1)"
uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
nginx_bytes_offsets "$T/logs/access.log" | identifiers_of nginx "$uid" bytes | sort > "$T/expected_ids"
double_accepted_ids > "$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/ids.diff" ||
	fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"
assert_eq "$total" "$(wc -l < "$T/accepted_ids")" "events accepted"
note "ok: $total events accepted once through a refused token and a restart"

#!/usr/bin/env bash
# API v2: Stripe answers the meter event session request as it may answer any request (a 500, a
# 429 with and without Retry-After, a connection dropped or reset, a session made and its answer
# lost: 500rec, drop_after, cut_after), injected by the double's session fault queue
# (tests/stripe_double.py, SESSION FAULTS). Each only delays sending: every event of the real
# nginx log is accepted exactly once (identifiers from awk and tests/identifiers.py against the
# double's record). Then a session request answered 429 with Retry-After: 300 holds every request
# for the 300 s Stripe asked, as a stream request's Retry-After does: `status` says so, and no
# request is made meanwhile; a restarted agent sends the rest, once.
#
# Failed on main at the Retry-After: the session was asked for again after the backoff
# (tens of milliseconds) and `status` never said "waiting until ..., as Stripe asked".
. "$(dirname "$0")/lib.sh"
lm_init v2_session_faults

src=$LOGS/elastic_nginx_logs_prefix29480.log
mkdir -p "$T/logs"
head -n 3000 "$src" > "$T/logs/access.log"
faults='500,429,429ra:1,drop,reset,500rec,drop_after,cut_after'
nfaults=8
double_start --session-faults "$faults"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
first=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$first" -ge 100 ] || fail "test bug: only $first events in the first part"

# ---- every session fault, then a session: all delivered once -----------------------------------
agent_start "$T/logmeter.conf"
wait_until 120 accepted_at_least "$first" || fail "only $(accepted_count) of $first events accepted"
assert_eq 0 "$(double_stat session_fault_queue)" "session faults left in the queue"
for k in 500 429 429ra drop reset 500rec drop_after cut_after; do
	assert_eq 1 "$(double_stat session_faults.$k)" "session fault $k answered"
done
# One session request per fault and the one answered: each fault was met by a new request.
assert_eq $((nfaults + 1)) "$(double_stat session_requests)" "session requests"
assert_eq 0 "$(double_stat faults.500)" "stream faults (none was queued)"

# ---- a session's 429 with Retry-After: 300 holds every request ----------------------------------
double_session_faults '429ra:300'
double_faults '401session' # the next stream request ends the session: a new one is asked for
tail -n +3001 "$src" | head -n 3000 >> "$T/logs/access.log"
total=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$total" -gt "$first" ] || fail "test bug: no events in the second part"
waiting() {
	"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status"
	grep -q '^sender: waiting until .*, as Stripe asked (Retry-After)' "$T/status"
}
wait_until 60 waiting ||
	fail "status does not say the sender waits for Retry-After: $(grep -E '^(sender|last error|requests)' "$T/status" | tr '\n' ';')"
assert_eq $((nfaults + 2)) "$(double_stat session_requests)" "session requests after the 429"
# The requests in flight with the ended session's token are refused too.
[ "$(double_stat sessions_expired)" -ge 1 ] || fail "no stream request met the ended session"
# 300 s are far from over (every wait above is bounded at 60 s): nothing more was asked or sent.
assert_eq "$first" "$(accepted_count)" "events accepted while Stripe asked to wait"
# The events the ended session's request carried, and those after them, wait, with why.
grep -q '^last error: cannot create a meter event session: .*429' "$T/status" ||
	fail "last error: $(grep '^last error' "$T/status")"
agent_stop || fail "the agent did not stop cleanly"
assert_eq $((nfaults + 2)) "$(double_stat session_requests)" "session requests during the 300 s"

# ---- a new agent sends the rest, once -----------------------------------------------------------
agent_start "$T/logmeter.conf"
wait_until 120 accepted_at_least "$total" || fail "only $(accepted_count) of $total events accepted"
agent_stop || fail "the agent did not stop cleanly"
uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
nginx_bytes_offsets "$T/logs/access.log" | identifiers_of nginx "$uid" bytes | sort > "$T/expected_ids"
double_accepted_ids > "$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/ids.diff" ||
	fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"
assert_eq "$total" "$(wc -l < "$T/accepted_ids")" "events accepted"
note "ok: $total events accepted once through $nfaults session faults and a Retry-After"

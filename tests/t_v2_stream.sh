#!/usr/bin/env bash
# API v2 (meter event streams): a 200,000-line log, the real nginx log seven times over, sent with
# `api = v2` to the double, whose meter event sessions expire every 5 seconds and which answers
# 429s, resets (before and after it took the events), 500s (with and without the events taken)
# and "session expired" 401s at random. Every expected event is accepted exactly once (the
# identifiers computed by awk and tests/identifiers.py), in requests of 50 events or more on
# average; the sessions were renewed, and the expired ones answered by a new session and the
# same events. A request Stripe's stream refuses (a bad field) is split until the event alone is
# a dead letter with Stripe's reason. docs/stripe-contract.md, section 14.
. "$(dirname "$0")/lib.sh"
lm_init v2_stream

SEED=${SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
note "seed $SEED"
mkdir -p "$T/logs"
for i in 1 2 3 4 5 6 7; do
	cat "$LOGS/elastic_nginx_logs_prefix29480.log"
done > "$T/logs/access.log"
lines=$(wc -l < "$T/logs/access.log")
[ "$lines" -ge 200000 ] || fail "the log has $lines lines, fewer than 200,000"

double_start --session-ttl 5
double_faults_json "{\"rate\": 0.05, \"kinds\": [\"429\", \"reset\", \"reset_after\", \"500\", \"500rec\", \"401session\"], \"seed\": $SEED}"
write_config "$T/logmeter.conf"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 5000\napi = v2\nmeter_events_base = '"${DOUBLE_URL//\//\\/}"'/' "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
cat >> "$T/logmeter.conf" <<'CONF'
[rule hits]
source = nginx
event_name = requests
pattern = ^(?<ip>\S+)
customer = ip
value = 1
CONF
"$LOGMETER" check -c "$T/logmeter.conf" >/dev/null || fail "the configuration is invalid"

rc=0
timeout 600 "$LOGMETER" run --once -c "$T/logmeter.conf" >>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
assert_eq 0 "$rc" "run --once"

uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
# expected_ids: the bytes rule's lines and every line for the hits rule (awk, identifiers.py).
expected_ids() {
	{
		nginx_bytes_offsets "$T/logs/access.log" | identifiers_of nginx "$uid" bytes
		LC_ALL=C awk '{print off+0} {off += length($0) + 1}' "$T/logs/access.log" |
			identifiers_of nginx "$uid" hits
	} | sort
}
expected_ids > "$T/expected"
expected=$(wc -l < "$T/expected")
note "$lines lines, $expected events expected"
double_accepted_ids > "$T/accepted"
dups=$(uniq -d "$T/accepted" | wc -l)
assert_eq 0 "$dups" "identifiers accepted more than once"
diff -u "$T/expected" "$T/accepted" > "$T/ids.diff" ||
	fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"

ok=$(double_stat stream_ok)
events=$(double_stat stream_events)
sessions=$(double_stat sessions)
expired=$(double_stat sessions_expired)
faults=$(( $(double_stat faults.429) + $(double_stat faults.reset) + $(double_stat faults.reset_after) + $(double_stat faults.500) + $(double_stat faults.500rec) ))
note "$ok requests answered 200 carried $events events; $sessions sessions, $expired expired answers, $faults faults"
[ $(( events / ok )) -ge 50 ] || fail "requests averaged $(( events / ok )) events, fewer than 50"
[ "$sessions" -ge 2 ] || fail "only $sessions meter event sessions were created"
[ "$expired" -ge 1 ] || fail "no request met an expired session"
[ "$faults" -ge 5 ] || fail "only $faults faults were injected"
grep -q '"api_key\|sk_test_' "$T/double.log" && fail "a key reached the double's log"

# A request the stream refuses synchronously (400 invalid_fields; injected, since logmeter
# itself refuses what Stripe's schema would): it is halved until one event is alone, and only
# that one becomes a dead letter, with the stream's reason; the others are accepted. One request
# at a time, so that the refusals meet the halves in order: 100, 50, 25, 13, 7, 4, 2, 1.
double_faults_json '{"clear": true}'
double_faults '400fields*8'
sed -i 's/^max_requests_per_second = .*/&\nmax_concurrency = 1/' "$T/logmeter.conf"
tail -n 300 "$LOGS/elastic_nginx_logs_prefix29480.log" >> "$T/logs/access.log"
rc=0
timeout 300 "$LOGMETER" run --once -c "$T/logmeter.conf" >>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
# The run made a dead letter: exit 1, counted in its last log line.
assert_eq 1 "$rc" "second run --once"
tail -n 1 "$T/agent.log" | grep -q "run --once: during this run 1 event became a dead letter: " ||
	fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
sizes=$(grep -P '\t400\t400fields\t' "$T/double.log" | grep -o 'events=[0-9]*' | cut -d= -f2 | tr '\n' ' ')
assert_eq "100 50 25 13 7 4 2 1 " "$sizes" "sizes of the refused requests"
"$LOGMETER" spool export -c "$T/logmeter.conf" --state dead > "$T/dead.json"
assert_eq 1 "$(wc -l < "$T/dead.json")" "dead letters"
grep -q 'HTTP 400: events\[0\]: refused (injected 400fields)' "$T/dead.json" ||
	fail "the dead letter lacks the stream's reason: $(head -c 400 "$T/dead.json")"
dead_id=$("$PYTHON3" -c 'import json,sys; print(json.loads(sys.stdin.readline())["identifier"])' < "$T/dead.json")
expected_ids | grep -vx "$dead_id" > "$T/expected"
double_accepted_ids > "$T/accepted"
diff -u "$T/expected" "$T/accepted" > "$T/ids.diff" ||
	fail "after the refused request, accepted identifiers differ: $(head -n 20 "$T/ids.diff")"
note "ok"

#!/usr/bin/env bash
# The 24-hour edge: Stripe dedupes identifiers for "at least 24 hours" only. An event whose
# attempts keep ending with unknown outcomes (here a 500 after Stripe recorded it, then errors at
# Stripe's edge) is re-sent with its identifier until its first unknown outcome is older than
# unsure_after (3 s here, 23 h by default); then it is not re-sent blindly: it becomes unsure,
# `status` and `spool export` show it, and `replay --unsure` sends it anyway.
. "$(dirname "$0")/lib.sh"
lm_init unsure
double_start --faults '500rec,503*100000'

mkdir -p "$T/logs"
log="$T/logs/access.log"
LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$LOGS/elastic_apache_logs.log" | head -n 1 > "$log"
write_config "$T/logmeter.conf"
sed -i 's/^\[stripe\]$/[stripe]\nunsure_after = 3s/' "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

agent_start "$conf"
unsure() { "$LOGMETER" status -c "$conf" > "$T/status" 2>&1 && grep -q 'pending 0, delivered 0, dead letters 0, unsure 1' "$T/status"; }
wait_until 60 unsure || fail "the event did not become unsure: $(cat "$T/status")"
grep -q '^unsure: 1 events had an attempt with an unknown outcome' "$T/status" || fail "status does not explain: $(cat "$T/status")"
# Unsure means not re-sent: the double sees no more requests for it.
requests=$(double_stat requests)
sleep 2
assert_eq "$requests" "$(double_stat requests)" "requests after the event became unsure"
grep -q 'unsure: an attempt .* had an unknown outcome' "$T/agent.log" || fail "the log does not say why"
agent_stop || fail "agent exited $? on SIGTERM"
"$LOGMETER" spool export -c "$conf" --state unsure > "$T/unsure.jsonl" || fail "export exited $?"
assert_eq 1 "$(wc -l < "$T/unsure.jsonl")" "unsure events exported"
"$PYTHON3" -c '
import json, sys
e = json.loads(open(sys.argv[1]).read())
assert e["state"] == "unsure", e
assert e["first_unknown"] and e["key_generation"] >= 2, e
assert e["last_error"].startswith("unsure: "), e
# The operator decides from the last answer: it is quoted.
assert "(last: HTTP 50" in e["last_error"], e' "$T/unsure.jsonl" || fail "export: $(cat "$T/unsure.jsonl")"
# Stripe recorded it (the 500 came after): the identifier is the only thing keeping a re-send
# from billing it twice, and only while Stripe remembers it.
assert_eq 1 "$(accepted_count)" "events Stripe recorded"

double_faults_json '{"clear": true}'
"$LOGMETER" replay -c "$conf" --unsure > "$T/replay.out" 2> "$T/replay.err" || fail "replay exited $?"
grep -q 'may have accepted it' "$T/replay.err" || fail "replay --unsure does not warn: $(cat "$T/replay.err")"
grep -q '1 event moved to pending' "$T/replay.out" || fail "replay: $(cat "$T/replay.out")"
agent_once "$conf" || fail "run --once exited $?"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered 1, dead letters 0, unsure 0" <<<"$st" || fail "status: $st"
assert_eq 1 "$(accepted_count)" "events accepted after the replay (Stripe answered already exists)"
[ "$(double_stat duplicates)" -ge 1 ] || fail "the replay was not answered 'already exists'"
# Nothing unsure now: replay --unsure says so, warns of nothing and exits 0 (docs/spool.md).
rc=0
"$LOGMETER" replay -c "$conf" --unsure > "$T/replay0.out" 2> "$T/replay0.err" || rc=$?
assert_eq 0 "$rc" "replay --unsure with nothing unsure"
grep -qx 'replay: nothing unsure: no event is unsure' "$T/replay0.out" || fail "replay with nothing unsure: $(cat "$T/replay0.out")"
[ ! -s "$T/replay0.err" ] || fail "replay --unsure warned with nothing unsure: $(cat "$T/replay0.err")"
note "unsure after 3 s of unknown outcomes; not re-sent until replay --unsure; accepted once"

# A dead letter whose earlier attempt had an unknown outcome: Stripe recorded the event (500rec),
# then the meter was deactivated and the retry was refused. Replaying it a day later must not
# re-send it blindly: the agent makes it unsure, and Stripe keeps it once. (unsure_after back to
# its default; the day passes in the spool: the first unknown outcome is moved a day back.)
sed -i 's/^unsure_after = 3s$/unsure_after = 23h/' "$conf"
LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$LOGS/elastic_apache_logs.log" | sed -n 2p >> "$log"
double_faults '500rec,503*100000'
agent_start "$conf"
wait_until 30 accepted_at_least 2 || fail "the second event was not recorded by the double"
agent_stop || fail "agent exited $? on SIGTERM"
DOUBLE_METERS="requests" double_restart
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once's exit status with a dead letter"
tail -n 1 "$T/agent.log" | grep -q "run --once: during this run 1 event became a dead letter: " ||
	fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered 1, dead letters 1, unsure 0" <<<"$st" || fail "status before the replay: $st"
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
# A dead letter has a row of outcomes (docs/spool.md): age its first unknown outcome by a day.
sqlite3 "$T/state/spool.db" "UPDATE outcomes SET first_unknown = first_unknown - 86400 WHERE state = 2"
DOUBLE_METERS="bandwidth_bytes requests" double_restart
"$LOGMETER" replay -c "$conf" --dead > "$T/replay2.out" 2>&1 || fail "replay --dead exited $?: $(cat "$T/replay2.out")"
grep -q 'had an attempt with an unknown outcome more than unsure_after ago' "$T/replay2.out" ||
	fail "replay --dead does not warn: $(cat "$T/replay2.out")"
agent_once "$conf" || fail "run --once exited $?"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered 1, dead letters 0, unsure 1" <<<"$st" || fail "status after the replay: $st"
assert_eq 2 "$(accepted_count)" "events Stripe recorded (each once)"
# One event is unsure, but none became so since tomorrow: nothing selected, no warning.
tomorrow=$(($(date +%s) + 86400))
"$LOGMETER" replay -c "$conf" --unsure --since "@$tomorrow" > "$T/replay3.out" 2> "$T/replay3.err" ||
	fail "replay --unsure --since tomorrow exited $?"
grep -qx "replay: nothing unsure: no event is unsure since $(date -u -d "@$tomorrow" +%Y-%m-%dT%H:%M:%SZ)" "$T/replay3.out" ||
	fail "replay --unsure --since tomorrow: $(cat "$T/replay3.out")"
[ ! -s "$T/replay3.err" ] || fail "replay --unsure --since tomorrow warned: $(cat "$T/replay3.err")"
"$LOGMETER" replay -c "$conf" --unsure --dry-run > "$T/replay4.out" 2> "$T/replay4.err" ||
	fail "replay --unsure --dry-run exited $?"
grep -q 'may have accepted it' "$T/replay4.err" || fail "replay --unsure --dry-run does not warn: $(cat "$T/replay4.err")"
grep -q '1 event would move to pending' "$T/replay4.out" || fail "replay --unsure --dry-run: $(cat "$T/replay4.out")"
note "a replayed dead letter with an old unknown outcome became unsure, not sent again"

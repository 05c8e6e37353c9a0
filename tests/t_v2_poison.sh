#!/usr/bin/env bash
# API v2: an event the stream can never take must not block sending. A customer id that is not
# UTF-8 (a log line may hold any bytes; JSON cannot carry them) becomes a dead letter saying so,
# the other events are delivered and `run --once` ends.
. "$(dirname "$0")/lib.sh"
lm_init v2_poison
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
printf 'cus_A 1\ncus_B 2\ncus_\377 7\ncus_A 3\ncus_C 4\n' > "$log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source app]
path = $log
[rule usage]
source = app
event_name = requests
pattern = ^(?<c>\S+) (?<v>\S+)$
customer = c
value = v
CONF
conf="$T/logmeter.conf"

rc=0
timeout 60 "$LOGMETER" run --once -c "$conf" >>"$T/agent.out" 2>>"$T/agent.log" || rc=$?
# It ends, with exit status 1: the run made a dead letter, which its last log line counts.
assert_eq 1 "$rc" "run --once with a customer id that is not UTF-8"
tail -n 1 "$T/agent.log" | grep -q "run --once: during this run 1 event became a dead letter: " ||
	fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
expected=$(LC_ALL=C grep -c -P '^cus_\w+ \d+$' "$log")
assert_eq "$expected" "$(accepted_count)" "events accepted"
assert_eq 1 "$(sqlite3 "$T/state/spool.db" "SELECT count(*) FROM outcomes WHERE state = 2 AND last_error LIKE '%customer is not valid UTF-8%'")" \
	"the event that is not UTF-8 as a dead letter with its reason"
n=$(grep -c 'cannot start a stream request' "$T/agent.log" || true)
assert_eq 0 "$n" "failed stream requests"

# (A dead letter with a 16-digit value can only come from a spool of an earlier logmeter: a line
# with one is refused at ingest and a window no longer grows past 15 digits. Schema 5 keeps a
# value in its commit's blob, which SQL cannot edit to make one here; test_stripe_v2's
# test_event_check holds the check that keeps such an event dead.)

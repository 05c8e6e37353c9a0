#!/usr/bin/env bash
# API v2 takes every event on the stream and reports later what Stripe could not bill: a rule
# whose meter is missing, or whose windows go to a meter that counts events, would be "delivered"
# and billed nothing. The agent holds such rules' events instead (they stay pending, unsent), says
# so, `status` is degraded and names the rules; `run --once` sends the other rules' events and
# exits 1. Once the meters are right, the next run sends the held events, and the double's totals
# per (event_name, customer) equal an awk sum over the log.
. "$(dirname "$0")/lib.sh"
lm_init v2_meters
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log

DOUBLE_METERS="bandwidth_bytes requests:::count" double_start
mkdir -p "$T/logs"
head -n 2000 "$SRC_LOG" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
cat >> "$T/logmeter.conf" <<'CONF'
[rule hits]
source = nginx
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 20\d
customer = ip
value = 1
aggregate = 2s
aggregate_grace = 1s
[rule errors]
source = nginx
event_name = server_errors
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" [45]\d\d
customer = ip
value = 1
CONF
conf="$T/logmeter.conf"

# The log's lines: bytes per IP of 20x lines (billed), 20x lines per IP, 4xx/5xx lines per IP.
LC_ALL=C awk '$9 ~ /^20[0-9]$/ && $10 ~ /^[0-9]+$/ {print "bandwidth_bytes", $1, $10}
	$9 ~ /^20[0-9]$/ {print "requests", $1, 1}
	$9 ~ /^[45][0-9][0-9]$/ {print "server_errors", $1, 1}' "$T/logs/access.log" |
	awk '{s[$1 " " $2] += $3} END {for (k in s) print k, s[k]}' | sort > "$T/expected_all"
grep '^bandwidth_bytes ' "$T/expected_all" > "$T/expected_bytes"
[ "$(grep -c '^server_errors ' "$T/expected_all")" -gt 0 ] || fail "no 4xx/5xx line in the log"

rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once with rules held for their meters"
totals() {
	awk -F'\t' '{s[$2 " " $3] += $4} END {for (k in s) print k, s[k]}' "$T/accepted.tsv" | sort
}
assert_eq "$(cat "$T/expected_bytes")" "$(totals)" "totals accepted: only the rule whose meter sums"
assert_eq 0 "$(double_stat error_reports)" "error reports at Stripe (events it could not bill)"
grep -q 'rule errors: the account has no meter with event_name server_errors: .*holds them' \
	"$T/agent.log" || fail "the agent did not say it holds rule errors' events"
grep -q 'rule hits: aggregate = 2s .* formula count.*holds its events' "$T/agent.log" ||
	fail "the agent did not say it holds rule hits' events"
if grep -q 'become dead letters' "$T/agent.log"; then
	fail "the agent says the events become dead letters, which v2 never does"
fi
grep -q 'run --once: [1-9][0-9]* events of rules whose meters would not bill them are held' \
	"$T/agent.log" || fail "run --once did not say how many events it held"
src=0
"$LOGMETER" status -c "$conf" > "$T/status.out" || src=$?
assert_eq 1 "$src" "status's exit with held rules"
grep -q '^health: degraded: the events of rules hits errors are held, not sent' "$T/status.out" ||
	fail "status does not name the held rules: $(grep health "$T/status.out")"
grep -q '^events: pending [1-9]' "$T/status.out" || fail "the held events are not pending: $(grep events: "$T/status.out")"

# The meters made right: everything held is sent, each once.
DOUBLE_METERS="bandwidth_bytes requests server_errors" double_restart
agent_once "$conf" || fail "run --once after the meters were fixed exited $?"
assert_eq "$(cat "$T/expected_all")" "$(totals)" "totals accepted in the end"
"$LOGMETER" status -c "$conf" > "$T/status2.out" ||
	fail "status after the held events were sent: $(grep health "$T/status2.out")"

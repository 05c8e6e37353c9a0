#!/usr/bin/env bash
# `logmeter test-rule` shows, for real Apache lines, the event each rule makes or why none, and the
# results agree with an independent awk over the same lines.
. "$(dirname "$0")/lib.sh"
lm_init test_rule

head -n 300 "$LOGS/elastic_apache_logs.log" > "$T/sample.log"
cat > "$T/logmeter.conf" <<CONF
[agent]
state_dir = $T/state
[stripe]
api_base = http://127.0.0.1:9
[source apache]
path = $T/*.log
[rule bytes]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "[^"]*" 2\d\d (?<bytes>\S+)
customer = ip
value = bytes
timestamp = time
[rule hits]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) 
customer = ip
value = 1
CONF

out=$("$LOGMETER" test-rule -c "$T/logmeter.conf" "$T/sample.log") || fail "test-rule failed"
[ ! -e "$T/state/spool.db" ] || fail "test-rule created a spool"

# Independent expectations, from awk over the same lines.
awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {print NR": bytes: "$1" "$10}' "$T/sample.log" > "$T/expect.txt"
awk '$9 ~ /^2[0-9][0-9]$/ && $10 == "-" {print NR}' "$T/sample.log" > "$T/expect_invalid.txt"
sed -n 's/^\([0-9]*\): bytes: event event_name=bandwidth_bytes customer=\([^ ]*\) value=\([0-9]*\) .*/\1: bytes: \2 \3/p' <<<"$out" > "$T/got.txt"
diff -u "$T/expect.txt" "$T/got.txt" || fail "events differ from awk's"
[ -s "$T/expect.txt" ] || fail "test bug: no 2xx lines in the sample"
sed -n 's/^\([0-9]*\): bytes: invalid: .*/\1/p' <<<"$out" > "$T/got_invalid.txt"
diff -u "$T/expect_invalid.txt" "$T/got_invalid.txt" || fail "invalid lines differ from awk's"

# Timestamps: line 1 is 17/May/2015:10:05:03 +0000.
want=$(date -u -d '2015-05-17 10:05:03' +%s)
grep -q "^1: bytes: event .* timestamp=$want " <<<"$out" || fail "line 1 timestamp is not $want: $(grep '^1: bytes' <<<"$out")"

# Every line gets a verdict from each rule: 300 lines x 2 rules.
[ "$(grep -c '^[0-9]*: \(bytes\|hits\): ' <<<"$out")" = 600 ] || fail "not one result per rule per line"
[ "$(grep -c '^[0-9]*: hits: event ' <<<"$out")" = 300 ] || fail "the constant-value rule missed lines"

# --rule limits the output to one rule; stdin works; lines that match nothing say so.
out=$(printf 'garbage\n' | "$LOGMETER" test-rule -c "$T/logmeter.conf" --rule bytes -)
[ "$out" = "1: bytes: no match" ] || fail "--rule/stdin: $out"
rc=0; "$LOGMETER" test-rule -c "$T/logmeter.conf" --rule nope - </dev/null 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "an unknown --rule was accepted"
# An epoch timestamp past any calendar (the largest one) is still shown with what it is, never an
# empty date, and is a dead letter a day ahead. The other one, for comparison, has its date.
cat > "$T/epoch.conf" <<CONF
[agent]
state_dir = $T/state
[stripe]
api_base = http://127.0.0.1:9
[source app]
path = $T/app.log
[rule epoch]
source = app
event_name = requests
pattern = ^(?<t>\d+) (?<c>cus_\w+)
customer = c
value = 1
timestamp = t
timestamp_format = epoch
CONF
out=$(printf '9223372036854775807 cus_A\n1431857103 cus_B\n' | "$LOGMETER" test-rule -c "$T/epoch.conf" -) ||
	fail "test-rule of epoch timestamps failed"
grep -q '^1: epoch: event .* timestamp=9223372036854775807 (no calendar date) -> dead letter: more than a day ahead' <<<"$out" ||
	fail "the largest timestamp: $out"
grep -q "^2: epoch: event .* timestamp=1431857103 ($(date -u -d @1431857103 +%Y-%m-%dT%H:%M:%SZ)) -> dead letter: outside" <<<"$out" ||
	fail "an old timestamp: $out"
echo "t_test_rule: $(wc -l < "$T/expect.txt") events and $(wc -l < "$T/expect_invalid.txt") invalid lines as awk says"

#!/usr/bin/env bash
# Live tailing: lines appended in pieces (one split in the middle of a line) while the agent runs
# are each delivered once, with the identifiers computed independently from their byte offsets.
. "$(dirname "$0")/lib.sh"
lm_init live_tail
double_start

mkdir -p "$T/logs"
: > "$T/logs/app.log"
write_config "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source app]
path = $T/logs/app.log
[rule hits]
source = app
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" (?<status>\d{3})
customer = ip
value = 1
CONF
# The double wants customer ids it can see: bill the IP as the customer directly.
agent_start "$T/logmeter.conf"
wait_until 60 grep -q 'started' "$T/agent.log" || fail "agent did not start"

src="$LOGS/elastic_nginx_logs_prefix29480.log"
# 1: a block of 40 whole lines.
head -n 40 "$src" >> "$T/logs/app.log"
wait_until 60 accepted_at_least 40 || fail "first 40 lines not delivered"
# 2: one line written in two pieces, split in the middle, with a pause between them.
line41=$(sed -n 41p "$src")
printf '%s' "${line41:0:30}" >> "$T/logs/app.log"
sleep 1.5
[ "$(wc -l < "$T/accepted.tsv")" = 40 ] || fail "a partial line was delivered before its newline"
printf '%s\n' "${line41:30}" >> "$T/logs/app.log"
# 3: 60 more lines, one at a time.
sed -n 42,101p "$src" | while IFS= read -r l; do printf '%s\n' "$l" >> "$T/logs/app.log"; done
wait_until 30 accepted_at_least 101 || fail "appended lines not delivered: $(wc -l < "$T/accepted.tsv")"
sleep 1
agent_stop || fail "agent did not stop cleanly"

cmp -s "$T/logs/app.log" <(head -n 101 "$src") || fail "test bug: the log is not the first 101 lines"
uid=$(file_uid "$T/logmeter.conf" "$T/logs/app.log")
LC_ALL=C awk '{print off+0; off += length($0) + 1}' "$T/logs/app.log" |
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test app "$uid" hits | sort > "$T/expected_ids"
cut -f1 "$T/accepted.tsv" | sort > "$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/diff" || fail "identifiers differ: $(head "$T/diff")"
assert_eq 101 "$(wc -l < "$T/accepted.tsv")" "events accepted (each line once)"
# The customer of each event is the IP at that line.
paste <(LC_ALL=C awk '{print off+0 "\t" $1; off += length($0) + 1}' "$T/logs/app.log" | cut -f1 |
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test app "$uid" hits) <(awk '{print $1}' "$T/logs/app.log") | sort > "$T/expected_cust"
cut -f1,3 "$T/accepted.tsv" | sort > "$T/accepted_cust"
diff -u "$T/expected_cust" "$T/accepted_cust" > /dev/null || fail "customers differ"
echo "t_live_tail: 101 lines appended in pieces, 101 events, each once"

#!/usr/bin/env bash
# A timestamp_format with %Z: strptime(3) reads the zone name and ignores it, so "10:00:00 UTC"
# was billed at 10:00 of the agent's local time zone, hours off. UTC, GMT and Z mean offset 0
# whatever TZ the agent runs with; a name whose offset cannot be known (PST) makes the line
# invalid, counted, rather than billed at a guessed time. Likewise a %z offset no zone has (beyond
# -12:00 or +14:00; strptime takes up to 24 hours) and a second 61 (strptime takes it; a leap
# second is 60) are garbled texts, not times to bill at. `run` bills what `test-rule` shows.
. "$(dirname "$0")/lib.sh"
lm_init timestamp_zone
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/logs"
log=$T/logs/app.log
now=$(date +%s)
# Times within Stripe's window, written in UTC by date(1), not by logmeter.
t1=$(date -u -d "@$((now - 3600))" '+%Y-%m-%d %H:%M:%S')
t2=$(date -u -d "@$((now - 7200))" '+%Y-%m-%d %H:%M:%S')
t3=$(date -u -d "@$((now - 600))" '+%Y-%m-%d %H:%M:%S')
{
	printf '%s UTC cus_ONE 3\n' "$t1"
	printf '%s GMT cus_TWO 5\n' "$t2"
	printf '%s PST cus_PST 7\n' "$t3"
} > "$log"
# One wall-clock minute 16 hours ago at several offsets (-12:00 is then 4 hours ago): the first
# three are times, the last three are not.
off=$T/logs/off.log
d=$(date -u -d "@$((now - 16 * 3600))" '+%Y-%m-%d')
hm=$(date -u -d "@$((now - 16 * 3600))" '+%H:%M')
{
	printf '%sT%s:00+0530 cus_IST 1
' "$d" "$hm"
	printf '%sT%s:00+1400 cus_KIRI 2
' "$d" "$hm"
	printf '%sT%s:00-1200 cus_BAKER 3
' "$d" "$hm"
	printf '%sT%s:00-2400 cus_BAD 4
' "$d" "$hm"
	printf '%sT%s:00+1500 cus_BAD 5
' "$d" "$hm"
	printf '%sT%s:61+0000 cus_BAD 6
' "$d" "$hm"
} > "$off"
conf=$T/logmeter.conf
write_config "$conf"
cat >> "$conf" <<CONF
[source off]
path = $off
[rule offsets]
source = off
event_name = requests
pattern = ^(?<t>\S+) (?<c>cus_\w+) (?<v>\d+)\$
customer = c
value = v
timestamp = t
timestamp_format = %Y-%m-%dT%H:%M:%S%z
[source app]
path = $log
[rule usage]
source = app
event_name = requests
pattern = ^(?<t>\S+ \S+ [A-Z]+) (?<c>cus_\w+) (?<v>\d+)\$
customer = c
value = v
timestamp = t
timestamp_format = %Y-%m-%d %H:%M:%S %Z
CONF

# Expected: the UTC and GMT lines at their own time (GNU date reads the zone), customer and value
# as written; the PST line is not billed.
awk '$3 == "UTC" || $3 == "GMT" { print $4, $5, $1 " " $2 " " $3 }' "$log" |
	while read -r c v when; do printf '%s %s %s\n' "$c" "$v" "$(date -u -d "$when" +%s)"; done |
	sort > "$T/want"
assert_eq 2 "$(wc -l < "$T/want")" "test bug: expected events"
# GNU date reads the offsets (it refuses none of these, so the bad ones are left out by name).
awk '$2 != "cus_BAD" { print $2, $3, $1 }' "$off" |
	while read -r c v when; do printf '%s %s %s\n' "$c" "$v" "$(date -u -d "$when" +%s)"; done |
	sort > "$T/want_off"
assert_eq 3 "$(wc -l < "$T/want_off")" "test bug: expected events with offsets"

# A local time zone far from UTC (a POSIX TZ string: no tzdata needed).
export TZ=EST5EDT,M3.2.0,M11.1.0
"$LOGMETER" test-rule -c "$conf" "$log" > "$T/test_rule.out" || fail "test-rule exited $?"
sed -n 's/^[0-9]*: usage: event .* customer=\([^ ]*\) value=\([^ ]*\) timestamp=\([0-9]*\) .*/\1 \2 \3/p' \
	"$T/test_rule.out" | sort > "$T/test_rule.got"
diff -u "$T/want" "$T/test_rule.got" > "$T/diff" || fail "test-rule's timestamps: $(cat "$T/diff")"
grep -q '^3: usage: invalid: timestamp .* PST' "$T/test_rule.out" ||
	fail "test-rule did not call the PST line invalid: $(cat "$T/test_rule.out")"
! grep -q -- '->' "$T/test_rule.out" || fail "test-rule holds or refuses an event: $(cat "$T/test_rule.out")"
"$LOGMETER" test-rule -c "$conf" "$off" > "$T/test_rule_off.out" || fail "test-rule exited $?"
sed -n 's/^[0-9]*: offsets: event .* customer=\([^ ]*\) value=\([^ ]*\) timestamp=\([0-9]*\) .*/\1 \2 \3/p' \
	"$T/test_rule_off.out" | sort > "$T/test_rule_off.got"
diff -u "$T/want_off" "$T/test_rule_off.got" > "$T/diff" || fail "test-rule's offsets: $(cat "$T/diff")"
assert_eq 3 "$(grep -c '^[456]: offsets: invalid: timestamp' "$T/test_rule_off.out")" "garbled timestamps test-rule calls invalid"

agent_once "$conf" || fail "run --once exited $?: $(tail -n 5 "$T/agent.log")"
awk -F'\t' '{ print $3, $4, $5 }' "$T/accepted.tsv" | sort > "$T/got"
sort "$T/want" "$T/want_off" > "$T/want_all"
diff -u "$T/want_all" "$T/got" > "$T/diff" || fail "billed timestamps: $(cat "$T/diff")"
assert_eq 9 "$(status_sum "$conf" 7)" "lines"
assert_eq 4 "$(status_sum "$conf" 10)" "invalid lines"
echo "t_timestamp_zone: UTC, GMT and offset lines billed at their own time under TZ=$TZ, the PST line and garbled offsets and seconds invalid"

#!/usr/bin/env bash
# A rule whose `aggregate` changes on a reload (SIGHUP), from 60 s to an hour, after one of its
# windows of 60 s closed. A line's window under the new setting is the hour's, but its start is
# the closed window's, which no other window may take (its identifier is the rule's, the
# customer's and the start's): the line goes into a window from the closed one's end to the
# hour's end (docs/architecture.md, "Aggregation windows"). It went into the next hour's window,
# ahead of its time and counted late, though it came in time. A line of the closed window
# itself is late, and goes on into the same window. A customer without a window of 60 s gets the
# hour's window. Checked: every window's customer, start, end, total, lines and late lines, from
# awk over the log; the closed window's total as the double accepted it, once.
#
# Times: the lines are stamped in the hour before the one the test starts in, S: the window of
# 60 s is due at once and every line of it is late (committed more than its aggregate_grace after
# its end). The windows of the hour close after S + 3 h (aggregate_grace = 2h), more than an hour
# after any start time: none closes during the test, so every line of the second part goes where
# the windows of the spool place it when it is read, whatever the order of the batches, and none
# of them is late but the one whose window of 60 s was closed.
. "$(dirname "$0")/lib.sh"
lm_init window_reload_length
DOUBLE_METERS="usage"
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
now=$(date +%s)
S=$((now / 3600 * 3600 - 3600))
write_config "$T/base.conf"
rule() {
	cat "$T/base.conf"
	cat <<CONF
[source app]
path = $log
[rule usage]
source = app
event_name = usage
pattern = ^(?<t>\d+) (?<c>cus_\w+) (?<v>\d+)$
customer = c
value = v
timestamp = t
timestamp_format = epoch
$1
CONF
}
rule "aggregate = 60s" >"$T/conf"
rule "aggregate = 1h
aggregate_grace = 2h" >"$T/hour.conf"

note "1: a window of 60 s, closed and sent"
printf '%s cus_A %s\n' $((S + 5)) 3 $((S + 20)) 4 $((S + 59)) 5 >"$log"
n1=$(wc -l <"$log")
agent_start "$T/conf"
closed() { [ "$(accepted_count)" -ge 1 ]; }
wait_until 60 closed || fail "the window of 60 s was not sent: $("$LOGMETER" spool export -c "$T/conf" --windows)"

note "2: aggregate = 1h on a reload; lines after it, one of them of the closed window"
cp "$T/hour.conf" "$T/conf"
kill -HUP "$AGENT_PID"
reloaded() { grep -q 'configuration reloaded' "$T/agent.log"; }
wait_until 60 reloaded || fail "the reload was not logged: $(grep -i reload "$T/agent.log" | tail -3)"
printf '%s cus_A %s\n' $((S + 60)) 10 $((S + 61)) 20 $((S + 30)) 40 $((S + 1800)) 80 $((S + 3599)) 160 >>"$log"
printf '%s cus_B %s\n' $((S + 7)) 1 $((S + 600)) 2 $((S + 3599)) 4 >>"$log"
total=$(wc -l <"$log")
read_all() { [ "$(spool_lines)" -ge "$total" ]; }
spool_lines() {
	"$LOGMETER" spool export -c "$T/conf" --windows 2>/dev/null |
		"$PYTHON3" -c 'import json, sys; print(sum(json.loads(l)["lines_count"] for l in sys.stdin))'
}
wait_until 60 read_all || fail "not every line is in a window: $(spool_lines) of $total"
agent_stop || fail "agent exited $? on SIGTERM"

# The windows from the log alone: the first n1 lines under 60 s (their start the minute's; late
# if its end plus the grace of 10 s had passed when the test began); the others under an hour,
# after the closed window: a customer with a window of 60 s in the hour has its window start at
# that window's end, a line of that window (stamped before its end) late; another customer the
# hour's window.
LC_ALL=C awk -v n1="$n1" -v now="$now" '
NR <= n1 { s = int($1 / 60) * 60; k = $2 " " s " " (s + 60); t[k] += $3; c[k]++; l[k] += (s + 70 <= now)
	   if (!(($2) in end) || s + 60 > end[$2]) end[$2] = s + 60; next }
{ h = int($1 / 3600) * 3600
  if (($2) in end && end[$2] > h) { s = end[$2]; late = ($1 < s) } else { s = h; late = 0 }
  k = $2 " " s " " (h + 3600); t[k] += $3; c[k]++; l[k] += late }
END { for (k in t) print k, t[k], c[k], l[k] }' "$log" | sort >"$T/expected"
"$LOGMETER" spool export -c "$T/conf" --windows >"$T/windows.json" || fail "spool export --windows exited $?"
"$PYTHON3" -c '
import json, sys
for l in open(sys.argv[1]):
    w = json.loads(l)
    print(w["customer"], w["start"], w["end"], w["total"], w["lines_count"], w["late"])' \
	"$T/windows.json" | sort >"$T/got"
diff "$T/expected" "$T/got" >"$T/diff" || fail "windows (customer start end total lines late), expected < got: $(cat "$T/diff")"
assert_eq 3 "$(wc -l <"$T/got")" "windows"
# The closed window's total as Stripe took it: the first n1 lines' sum, once, at its start.
expect=$(head -n "$n1" "$log" | awk '{ s += $3 } END { print s }')
assert_eq "$expect" "$(awk -F'\t' '$3 == "cus_A" { s += $4 } END { print s + 0 }' "$T/accepted.tsv")" \
	"usage accepted for cus_A's window of 60 s"
assert_eq "$S" "$(awk -F'\t' '{ print $5 }' "$T/accepted.tsv")" "the accepted window's timestamp"
assert_eq 0 "$(double_stat duplicates)" "events sent twice"
note "$(tr '\n' ';' <"$T/got")"

#!/usr/bin/env bash
# `test-rule FILE` shows the events `run` makes of FILE: the agent reads a file under one source
# only (the first in configuration order whose path matches it), so the rules of another source
# make nothing of it, however well their patterns match its lines. test-rule used to apply every
# source's rules to every file: with two sources of one log format (nginx and apache access logs,
# as the shipped examples have), each line showed two events where run bills one. A file no
# source reads (a copy elsewhere) and standard input still get every source's rules, said so.
. "$(dirname "$0")/lib.sh"
lm_init test_rule_source
double_start

mkdir -p "$T/a" "$T/b" "$T/elsewhere"
log=$T/a/app.log
printf 'cus_ONE 3\ncus_TWO 5\nnothing here\ncus_ONE 7\n' > "$log"
conf=$T/logmeter.conf
write_config "$conf"
cat >> "$conf" <<CONF
[source first]
path = $T/a/*.log
[source second]
path = $T/b/*.log
[rule by_first]
source = first
event_name = requests
pattern = ^(?<c>cus_\w+) (?<v>\d+)\$
customer = c
value = v
[rule by_second]
source = second
event_name = bandwidth
pattern = ^(?<c>cus_\w+) (?<v>\d+)\$
customer = c
value = v
CONF

# Expected, from the file: one event per cus_ line, by the first source's rule only.
awk '/^cus_/ { print "requests", $1, $2 }' "$log" | sort > "$T/want"
assert_eq 3 "$(wc -l < "$T/want")" "test bug: expected events"

agent_once "$conf" || fail "run --once exited $?: $(tail -n 5 "$T/agent.log")"
awk -F'\t' '{ print $2, $3, $4 }' "$T/accepted.tsv" | sort > "$T/billed"
diff -u "$T/want" "$T/billed" > "$T/diff" || fail "run billed: $(cat "$T/diff")"

events_of() { sed -n 's/^[0-9]*: [a-z_]*: event event_name=\([^ ]*\) customer=\([^ ]*\) value=\([^ ]*\) .*/\1 \2 \3/p' "$1" | sort; }

# The file by its absolute path, and by a relative one.
"$LOGMETER" test-rule -c "$conf" "$log" > "$T/tr.out" 2> "$T/tr.err" || fail "test-rule exited $?"
events_of "$T/tr.out" > "$T/shown"
diff -u "$T/billed" "$T/shown" > "$T/diff" || fail "test-rule shows other events than run bills: $(cat "$T/diff")"
[ ! -s "$T/tr.err" ] || fail "test-rule said: $(cat "$T/tr.err")"
(cd "$T/a" && "$LOGMETER" test-rule -c "$conf" app.log) > "$T/tr_rel.out" || fail "test-rule (relative) exited $?"
events_of "$T/tr_rel.out" > "$T/shown_rel"
diff -u "$T/billed" "$T/shown_rel" > "$T/diff" || fail "test-rule with a relative path: $(cat "$T/diff")"

# --rule of the other source: nothing, and why.
"$LOGMETER" test-rule -c "$conf" --rule by_second "$log" > "$T/tr2.out" 2> "$T/tr2.err" || fail "test-rule --rule exited $?"
[ ! -s "$T/tr2.out" ] || fail "--rule by_second shows: $(cat "$T/tr2.out")"
grep -q "read by source 'first'; rule 'by_second' reads source 'second'" "$T/tr2.err" || fail "--rule by_second: $(cat "$T/tr2.err")"

# A copy no source reads, and standard input: every source's rules, as before.
cp "$log" "$T/elsewhere/copy.log"
"$LOGMETER" test-rule -c "$conf" "$T/elsewhere/copy.log" > "$T/tr3.out" 2> "$T/tr3.err" || fail "test-rule (copy) exited $?"
assert_eq 6 "$(grep -c ': event ' "$T/tr3.out")" "events shown for a file no source reads"
grep -q "no source's path matches it" "$T/tr3.err" || fail "the copy: $(cat "$T/tr3.err")"
assert_eq 6 "$("$LOGMETER" test-rule -c "$conf" - < "$log" | grep -c ': event ')" "events shown for standard input"
echo "t_test_rule_source: test-rule shows the $(wc -l < "$T/want") events run bills of a file, by its source's rules only"

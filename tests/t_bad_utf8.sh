#!/usr/bin/env bash
# A line that is not valid UTF-8, read by a rule that asks for UTF-8 ((*UTF)): the rule cannot
# match it, and that is logged and counted as what it is (invalid UTF-8, with the offset of the bad
# byte), not as a line the rule "matched but made no event". The other lines are billed; every
# line is counted once; test-rule says the same of the same file.
. "$(dirname "$0")/lib.sh"
lm_init bad_utf8
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/u8"
L=$T/u8/app.log
conf=$T/logmeter.conf
write_config "$conf"
rule_conf u8 "$L" >> "$conf"
sed -i 's/^pattern = ^(?<ip>/pattern = (*UTF)^(?<ip>/' "$conf"
grep -q '^pattern = (\*UTF)' "$conf" || fail "test bug: the pattern does not ask for UTF-8"

# Six real lines; in the 4th, a byte that is no UTF-8 (0xff) in its request path.
lines 1 6 > "$T/lines"
LC_ALL=C awk 'NR == 4 { sub(/ HTTP\//, "\xff HTTP/") } { print }' "$T/lines" > "$L"
[ "$(LC_ALL=C grep -c $'\xff' "$L")" = 1 ] || fail "test bug: no bad byte in line 4"
bad=$(LC_ALL=C grep -b -o $'\xff' "$L" | cut -d: -f1)
line4=$(head -n 3 "$L" | wc -c)

agent_once "$conf" || fail "run --once exited $?"
assert_eq 5 "$(accepted_count)" "events accepted"
grep -q "app.log: line at offset $line4 is not valid UTF-8 at byte $((bad - line4)): .*rule 'rid_u8' asks for UTF-8" "$T/agent.log" ||
	fail "the bad line was not logged as such: $(grep -i utf "$T/agent.log")"
! grep -q "matched but made no event" "$T/agent.log" || fail "logged as matched: $(grep matched "$T/agent.log")"
assert_eq 6 "$(status_sum "$conf" 7)" "lines"
assert_eq 5 "$(status_sum "$conf" 8)" "matched"
assert_eq 0 "$(status_sum "$conf" 10)" "invalid"
assert_eq 0 "$(status_sum "$conf" 9)" "unmatched"
"$LOGMETER" status -c "$conf" | grep -q "invalid UTF-8 1  torn lines 0$" || fail "status: $("$LOGMETER" status -c "$conf" | grep 'lines ')"
"$LOGMETER" status --json -c "$conf" | "$PYTHON3" -c '
import json, sys
assert json.load(sys.stdin)["files"][0]["counters"]["bad_utf8"] == 1' || fail "status --json: no bad_utf8 of 1"
"$LOGMETER" test-rule -c "$conf" "$L" > "$T/test_rule.out" 2>&1 || fail "test-rule exited $?"
grep -q "^4: rid_u8: not valid UTF-8 at byte $((bad - line4))" "$T/test_rule.out" || fail "test-rule: $(cat "$T/test_rule.out")"
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" u8 "$L" # line 4 has its rid too: expected, then taken out
grep -v "^4$" "$T/expected_rids" > "$T/r" && mv "$T/r" "$T/expected_rids"
"$PYTHON3" "$top_srcdir/tests/identifiers.py" test u8 "$(uid_of "$conf" u8 "$L")" rid_u8 <<<"$line4" > "$T/bad_id"
grep -v -F -f "$T/bad_id" "$T/expected_ids" > "$T/r" && mv "$T/r" "$T/expected_ids"
check_accepted
echo "t_bad_utf8: the line that is not UTF-8 counted and logged as such, the 5 others billed"

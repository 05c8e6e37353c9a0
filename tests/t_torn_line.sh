#!/usr/bin/env bash
# A line torn by a crash: the writer had written the start of a line, up to the first digit of
# its byte count, when the machine went down; the file kept its size but not its data, so 3000
# NUL bytes stand where the rest was, and the restarted writer appended new lines after them
# (docs/tailing.md, "Lines"). The torn text is not billed ("... 200 5" may have been "... 200
# 5213"), nor joined to the line after the NULs ("... 200 5" + "83.149..." read as one line bills
# 583 to the torn line's client and loses the next line); the line after the NULs is billed at its
# own offset. The agent reads the file while it is written; the events the double accepted
# (identifier, customer, value) are exactly those awk finds in the log with the torn fragment
# removed, with the offsets after it moved by the fragment's length; status, status --json and
# the log count the torn line once and the NULs as NUL bytes; test-rule shows it as torn.
. "$(dirname "$0")/lib.sh"
lm_init torn_line
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/l"
L=$T/l/access.log
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$L"
NULS=3000

# The real log's first 300 lines; the torn one is the first 2xx line from line 101 on whose byte
# count has two digits or more and whose next line is a 2xx line too (so that the joined line
# would match the rule), cut after the first digit of its byte count.
head -n 300 "$LOGS/elastic_apache_logs.log" > "$T/src.log"
read -r k cutlen < <(LC_ALL=C awk '{ l[NR] = $0; s[NR] = $9; b[NR] = $10 }
	END {
		for (i = 101; i < NR; i++)
			if (s[i] ~ /^2[0-9][0-9]$/ && b[i] ~ /^[0-9][0-9]+$/ &&
			    s[i + 1] ~ /^2[0-9][0-9]$/ && b[i + 1] ~ /^[0-9]+$/) {
				print i, index(l[i], " " s[i] " " b[i] " ") + length(s[i]) + 2
				exit
			}
	}' "$T/src.log")
[ -n "$k" ] && [ "$cutlen" -gt 0 ] || fail "test bug: no line to tear in the log"
head -n $((k - 1)) "$T/src.log" > "$T/before"
sed -n "${k}p" "$T/src.log" | head -c "$cutlen" > "$T/fragment"
tail -n +$((k + 1)) "$T/src.log" > "$T/after"
LC_ALL=C grep -qP ' 2\d\d \d$' "$T/fragment" || fail "test bug: the fragment does not end in the first digit of its bytes: $(cat "$T/fragment")"
note "line $k torn after $cutlen bytes: ...$(tail -c 30 "$T/fragment")"

# The lines before the crash, read while the agent runs.
agent_start "$conf"
cat "$T/before" > "$L"
n_before=$(apache_bytes_count "$T/before")
wait_until 60 accepted_at_least "$n_before" || fail "lines before the crash: $(accepted_count) of $n_before"
# The crash: the fragment and the NULs where the rest of its data was; the writer restarted and
# appends the lines after them.
{
	cat "$T/fragment"
	head -c "$NULS" /dev/zero
} >> "$L"
cat "$T/after" >> "$L"
cat "$T/before" "$T/after" > "$T/removed"
n_want=$(apache_bytes_count "$T/removed")
wait_until 60 caught_up "$conf" || fail "the agent did not read to the end of the file"
wait_until 60 accepted_at_least "$n_want" || fail "lines after the crash: $(accepted_count) of $n_want"
agent_stop || fail "agent did not stop cleanly"

# Expected: awk over the log without the torn fragment; offsets after it moved by the fragment and
# the NULs; identifiers by tests/identifiers.py; customer and value by awk.
at=$(wc -c < "$T/before")
shift_by=$((cutlen + NULS))
[ "$(wc -c < "$L")" = $((at + shift_by + $(wc -c < "$T/after"))) ] || fail "test bug: the log is not before + fragment + NULs + after"
uid=$(file_uid "$conf" "$L")
LC_ALL=C awk -v at="$at" -v d="$shift_by" '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {
		o = off + 0; if (o >= at) o += d; print o "\t" $1 "\t" $10 }
	{ off += length($0) + 1 }' "$T/removed" > "$T/want_lines"
cut -f1 "$T/want_lines" | identifiers_of apache "$uid" bytes > "$T/want_ids"
[ "$(wc -l < "$T/want_ids")" = "$n_want" ] || fail "test bug: $(wc -l < "$T/want_ids") identifiers for $n_want lines"
paste "$T/want_ids" <(cut -f2,3 "$T/want_lines") | sort > "$T/want.tsv"
cut -f1,3,4 "$T/accepted.tsv" | sort > "$T/got.tsv"
diff -u "$T/want.tsv" "$T/got.tsv" > "$T/diff" ||
	fail "the double's events differ from the log without the torn fragment: $(grep '^[-+][^-+]' "$T/diff" | head -6)"
# The line after the NULs is one of them, at its own offset (the first byte after the NULs).
next_line=$((at + shift_by))
grep -q "^$next_line"$'\t' "$T/want_lines" || fail "test bug: the line after the NULs makes no event"

# Counted: one torn line, the NULs, every line of the log but the torn one.
assert_eq 1 "$(status_sum "$conf" 17)" "torn lines"
assert_eq "$NULS" "$(status_sum "$conf" 12)" "NUL bytes"
assert_eq $(($(wc -l < "$T/removed"))) "$(status_sum "$conf" 7)" "lines"
assert_eq "$n_want" "$(status_sum "$conf" 8)" "matched"
"$LOGMETER" status --json -c "$conf" | "$PYTHON3" -c '
import json, sys
c = json.load(sys.stdin)["files"][0]["counters"]
assert c["torn_lines"] == 1 and c["nul_bytes"] == int(sys.argv[1]), c' "$NULS" ||
	fail "status --json: no torn_lines of 1"
grep -q "access.log: skipped a torn line at offset $at: $cutlen bytes followed by NUL bytes" "$T/agent.log" ||
	fail "the torn line was not logged: $(grep -i torn "$T/agent.log")"

# test-rule shows the torn line as such, and the line after the NULs on the same line number.
"$LOGMETER" test-rule -c "$conf" "$L" > "$T/test_rule.out" 2>&1 || fail "test-rule exited $?"
grep -q "^$k: torn: $cutlen bytes followed by NUL bytes" "$T/test_rule.out" ||
	fail "test-rule: $(grep "^$k:" "$T/test_rule.out")"
want_after=$(sed -n 1p "$T/after" | LC_ALL=C awk '{ print "customer=" $1 " value=" $10 }')
grep -q "^$k: bytes: event event_name=bandwidth_bytes $want_after " "$T/test_rule.out" ||
	fail "test-rule: the line after the NULs: $(grep "^$k:" "$T/test_rule.out")"
echo "t_torn_line: the torn line counted and not billed, the $n_want other 2xx lines billed once at their offsets"

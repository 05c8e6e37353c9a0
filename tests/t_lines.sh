#!/usr/bin/env bash
# What real log lines contain, appended to one file while the agent runs (max_line_length 512):
# CRLF endings (the CR must not reach a captured value: the rule captures "[^ ]+$"), invalid
# UTF-8, lines over the limit (2 KB, 513 bytes, and 3 MB written in pieces) between ordinary ones,
# lines of exactly 512 bytes (with and without CR), NULs inside a line (the text before them torn,
# the text after them a line of its own), a run of NULs from a sparse extension, a preallocated
# region (fallocate) overwritten in place, and a last line without its newline, completed while
# running and across a restart. Every rid of a line within the limit is accepted once, and the
# agent's counters (lines, long lines, NUL bytes, torn lines) match those computed from the file
# (tests/lines_model.py).
. "$(dirname "$0")/lib.sh"
lm_init lines
. "$top_srcdir/tests/tail_lib.sh"
command -v fallocate >/dev/null 2>&1 || skip "fallocate not found"
double_start

mkdir -p "$T/l"
L=$T/l/app.log
: > "$L"
write_config "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nmax_line_length = 512/' "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source lines]
path = $L
[rule rid_lines]
source = lines
event_name = requests
pattern = ^(?<ip>\S+) .* rid=(?<rid>[^ ]+)$
customer = ip
value = rid
CONF
export LINE_MAX=512

echo 1 > "$T/rid"
# next COUNT: the next COUNT lines, on stdout (the rid counter is a file: next runs in subshells).
next() {
	local r
	r=$(cat "$T/rid")
	lines "$r" "$1"
	echo $((r + $1)) > "$T/rid"
}
# sized BYTES: one line of exactly BYTES bytes before its newline (the user agent padded).
sized() {
	local l pad
	l=$(next 1)
	pad=$(($1 - ${#l}))
	[ "$pad" -ge 0 ] || fail "test bug: line longer than $1"
	LC_ALL=C awk -v l="$l" -v n="$pad" 'BEGIN {
		p = "A"; while (length(p) < n) p = p p
		p = substr(p, 1, n); sub(/" rid=/, p "\" rid=", l); print l }'
}
n_expected() { # the rids a line within the limit carries, in the file now
	rids_of "$L" | wc -l
}
delivered() {
	accepted_at_least "$(n_expected)"
}
agent_start "$T/logmeter.conf"
wait_until 60 grep -q 'started' "$T/agent.log" || fail "agent did not start"

note "plain, CRLF and invalid UTF-8 lines"
next 10 >> "$L"
next 10 | sed 's/$/\r/' >> "$L"
next 5 | LC_ALL=C sed 's/"-" "/"-" "\xff\xfe\xc0\xaf /' >> "$L"
[ "$(LC_ALL=C grep -c $'\xff\xfe' "$L")" = 5 ] || fail "test bug: no invalid UTF-8 written"
wait_until 60 delivered || fail "plain, CRLF and invalid UTF-8 lines: $(accepted_count) of $(n_expected)"

note "lines over the limit, and at it"
sized 2000 >> "$L"
next 3 >> "$L"
sized 512 >> "$L"
sized 511 | sed 's/$/\r/' >> "$L"
sized 512 | sed 's/$/\r/' >> "$L"
sized 513 >> "$L"
big=$(sized 3000000)
printf '%s' "${big:0:1000000}" >> "$L"
sleep 0.3
printf '%s' "${big:1000000:1500000}" >> "$L"
sleep 0.3
printf '%s\n' "${big:2500000}" >> "$L"
unset big
next 5 >> "$L"
wait_until 60 delivered || fail "lines around the long ones: $(accepted_count) of $(n_expected)"

note "NULs: inside a line, a sparse extension, a preallocated region written in place"
next 1 | sed 's/HTTP/\x00\x00\x00HTTP/' >> "$L"
truncate -s +10000 "$L"
next 3 >> "$L"
off=$(stat -c %s "$L")
fallocate -o "$off" -l 65536 "$L"
sleep 0.5 # the agent sees the zeros before they are overwritten
next 4 > "$T/inplace"
dd if="$T/inplace" of="$L" bs=1 seek="$off" conv=notrunc status=none
wait_until 60 delivered || fail "lines written into the preallocated region: $(accepted_count) of $(n_expected)"
off=$((off + $(stat -c %s "$T/inplace")))
next 4 > "$T/inplace"
dd if="$T/inplace" of="$L" bs=1 seek="$off" conv=notrunc status=none
wait_until 60 delivered || fail "more lines written into the preallocated region: $(accepted_count) of $(n_expected)"
next 2 >> "$L" # after the rest of the zeros
wait_until 60 delivered || fail "lines after the preallocated region: $(accepted_count) of $(n_expected)"

note "a last line without its newline"
part=$(next 1)
printf '%s' "${part:0:40}" >> "$L"
wait_until 60 delivered || fail "before the partial line: $(accepted_count) of $(n_expected)"
sleep 1
[ "$(accepted_count)" = "$(n_expected)" ] || fail "a line was delivered before its newline"
printf '%s\n' "${part:40}" >> "$L"
wait_until 60 delivered || fail "the completed line: $(accepted_count) of $(n_expected)"
part=$(next 1)
printf '%s' "${part:0:50}" >> "$L"
sleep 1
agent_stop || fail "agent did not stop cleanly"
[ "$(accepted_count)" = "$(n_expected)" ] || fail "a line was delivered before its newline (restart)"
printf '%s\n' "${part:50}" >> "$L"
next 2 >> "$L"
agent_start "$T/logmeter.conf"
wait_until 60 delivered || fail "after the restart: $(accepted_count) of $(n_expected)"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$T/logmeter.conf" lines "$L"
check_accepted

# The counters, computed from the file independently.
read -r want_lines want_long want_nuls want_torn < <("$PYTHON3" -c '
import sys
sys.path.insert(0, sys.argv[1])
from lines_model import split
recs = list(split(open(sys.argv[2], "rb").read(), 512))
kinds = [r[0] for r in recs]
print(kinds.count("line") + kinds.count("long"), kinds.count("long"), sum(r[4] for r in recs),
      kinds.count("torn"))' "$top_srcdir/tests" "$L")
assert_eq 3 "$want_long" "test bug: long lines written"
assert_eq 1 "$want_torn" "test bug: torn lines written"
assert_eq "$want_lines" "$(status_sum "$T/logmeter.conf" 7)" "lines"
assert_eq "$want_long" "$(status_sum "$T/logmeter.conf" 11)" "long lines"
assert_eq "$want_nuls" "$(status_sum "$T/logmeter.conf" 12)" "NUL bytes"
assert_eq "$want_torn" "$(status_sum "$T/logmeter.conf" 17)" "torn lines"
assert_eq "$(wc -l < "$T/expected_rids")" "$(status_sum "$T/logmeter.conf" 8)" "matched"
assert_eq 0 "$(status_sum "$T/logmeter.conf" 14)" "checkpoint resets"
assert_eq 0 "$(status_sum "$T/logmeter.conf" 6)" "lag"
echo "t_lines: $(wc -l < "$T/expected_rids") rids accepted once; $want_long long lines and $want_nuls NUL bytes skipped and counted"

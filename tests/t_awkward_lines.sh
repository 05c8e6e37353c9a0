#!/usr/bin/env bash
# `test-rule` and `run --once` make the same events of the same awkward file (max_line_length
# 512): real nginx lines with a request id, CRLF lines, a CRLF line of exactly 512 bytes before
# its CR (billed: the CR does not count) and lines of 512 and 513 bytes with and without CR, a
# line ending in two CRs, NULs inside a line (the text before them torn, the text after them a line
# of its own), before a line (a run longer than the limit), between a CR and its newline (torn)
# and as a line of their own, over-long lines (one of 100 KB, more than test-rule reads at once,
# one cut by NULs), invalid UTF-8, and a last line without its newline.
# The events test-rule announces (line number, customer, value) are exactly those the Stripe
# double accepted from the agent (identifier from the line's offset, customer, value), and both
# are exactly the set computed from the file by an independent Python split. Then the last line
# gets its newline: both read it, and nothing else changes.
. "$(dirname "$0")/lib.sh"
lm_init awkward_lines
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/l"
L=$T/l/app.log
write_config "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nmax_line_length = 512/' "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source awkward]
path = $L
[rule rid_awkward]
source = awkward
event_name = requests
pattern = ^(?<ip>\S+) .* rid=(?<rid>[^ ]+)$
customer = ip
value = rid
CONF

# The file, from real nginx lines; each line carries " rid=N" at its end (N distinct), the value
# billed. A CR that reached the rule would make the value invalid.
"$PYTHON3" - "$LOGS/elastic_nginx_logs_prefix29480.log" "$L" "$T/last_rest" "$T/crlf_at_limit" <<'PY'
import sys
src = [l for l in open(sys.argv[1], "rb").read().split(b"\n") if l][:400]
rid = 0
def line(n=None):
    """The next real line with its rid, padded in the middle to n bytes if n is given."""
    global rid
    rid += 1
    base = src[rid % len(src)] + b" rid=%d" % rid
    if n is not None:
        cut = base.index(b" ") + 1
        base = base[:cut] + b"A" * (n - len(base)) + base[cut:]
        assert len(base) == n
    return base
out = []
out += [line() + b"\n" for _ in range(20)]
out += [line() + b"\r\n" for _ in range(10)]
for _ in range(5):  # invalid UTF-8 after the client address
    l = line()
    cut = l.index(b" ") + 1
    out.append(l[:cut] + b"\xff\xfe\xc0\xaf " + l[cut:] + b"\n")
open(sys.argv[4], "w").write("%d\n" % (sum(l.count(b"\n") for l in out) + 1))
out.append(line(512) + b"\r\n")      # CRLF exactly at the limit: billed
out.append(line(512) + b"\n")        # at the limit: billed
out.append(line(513) + b"\n")        # one over: skipped
out.append(line(513) + b"\r\n")      # one over, with its CR: skipped
out.append(line(511) + b"\r\r\n")    # 512 with the first CR: billed (the rule ignores the other)
out.append(line(512) + b"\r\r\n")    # 513 with the first CR: skipped
out.append(line(2000) + b"\n")       # over-long
out.append(line(100000) + b"\n")     # over-long, longer than one read of test-rule
l = line(1200)                        # over-long, cut by NULs: long, then a line of 600
out.append(l[:600] + b"\0" * 50 + l[600:] + b"\n")
l = line(500)                         # torn by NULs before its rid: "rid=N" matches nothing
cut = l.index(b" rid=") + 1
out.append(l[:cut] + b"\0" * 40 + l[cut:] + b"\n")
l = line()                            # NULs inside: the address torn, the rest a line
cut = l.index(b" ") + 1
out.append(l[:cut] + b"\0\0\0" + l[cut:] + b"\n")
out.append(b"\0" * 2000 + line() + b"\n")   # a run of NULs longer than the limit before a line
out.append(b"\0" * 10 + b"\n")              # a line of NULs: no line
out.append(line() + b"\r\0\0\n")            # NULs between the CR and the newline: torn
out.append(line() + b"\n")
out.append(b"\0\0" + line(513) + b"\n")     # NULs before an over-long line
out += [line() + b"\n" for _ in range(10)]
last = line()
out.append(last[:40])                       # no newline yet
open(sys.argv[2], "wb").write(b"".join(out))
open(sys.argv[3], "wb").write(last[40:] + b"\n")
PY

# expected FILE: the independent split (tests/lines_model.py, from docs/tailing.md), one row per
# '\n', per torn piece before it, and one for an unfinished last line: number, kind (event, long,
# nul, no-match, invalid, torn, pending, pending-nul), offset of its first byte that is not NUL,
# customer, value; and on the last row the counters: lines, long lines, NUL bytes, checkpoint,
# torn lines.
expected() {
	"$PYTHON3" - "$top_srcdir/tests" "$1" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[1])
from lines_model import split
MAX = 512
data = open(sys.argv[2], "rb").read()
rule = re.compile(rb"^(\S+) .* rid=([^ ]+)$")
lines = longs = nuls = torn = number = 0
for kind, off, number, bare, n in split(data, MAX):
    nuls += n
    if kind == "line":
        lines += 1
        # the rule ignores one more trailing CR (rule.h)
        m = rule.search(bare[:-1] if bare.endswith(b"\r") else bare)
        if m and m.group(2).isdigit():
            print("%d\tevent\t%d\t%s\t%s" % (number, off, m.group(1).decode(), m.group(2).decode()))
            continue
        kind = "invalid" if m else "no-match"
    elif kind == "long":
        lines += 1
        longs += 1
    elif kind == "torn":
        torn += 1
    print("%d\t%s\t%d\t-\t-" % (number, kind, off))
pos = data.rfind(b"\n") + 1
rest = data[pos:]
if rest.strip(b"\0"):
    # a line without its newline: its leading NULs are consumed, not the line
    assert b"\0" not in rest.lstrip(b"\0"), "test bug: NULs inside the unfinished line"
    lead = len(rest) - len(rest.lstrip(b"\0"))
    nuls += lead
    pos += lead
    print("%d\tpending\t%d\t-\t-" % (number + 1, pos))
elif rest:
    print("%d\tpending-nul\t%d\t-\t-" % (number + 1, pos))
print("counters\t%d\t%d\t%d\t%d\t%d" % (lines, longs, nuls, pos, torn))
PY
}

# compare: test-rule's verdicts and the double's accepted events against the expected split.
compare() {
	local phase=$1 uid
	expected "$L" > "$T/expected.tsv" || fail "test bug: the expected split failed"
	grep -P '\tevent\t' "$T/expected.tsv" | cut -f1,4,5 | sort > "$T/exp_tr.tsv"
	[ "$(wc -l < "$T/exp_tr.tsv")" -ge 40 ] || fail "test bug: too few expected events"

	# test-rule, on the file and on stdin: the same verdicts.
	"$LOGMETER" test-rule -c "$T/logmeter.conf" "$L" > "$T/tr.out" || fail "$phase: test-rule failed"
	"$LOGMETER" test-rule -c "$T/logmeter.conf" - < "$L" > "$T/tr_stdin.out" || fail "$phase: test-rule - failed"
	# Lines without a time of their own are stamped with the clock at the reading, which may
	# have ticked between the two runs: compare without the timestamps.
	sed 's/ timestamp=[0-9]* ([^)]*)//' "$T/tr.out" > "$T/tr_file.cmp"
	sed 's/ timestamp=[0-9]* ([^)]*)//' "$T/tr_stdin.out" > "$T/tr_stdin.cmp"
	grep -q ' timestamp=' "$T/tr_file.cmp" && fail "test bug: timestamps left in the comparison"
	diff -q "$T/tr_file.cmp" "$T/tr_stdin.cmp" > /dev/null || fail "$phase: test-rule gives other verdicts on stdin"
	sed -n 's/^\([0-9]*\): rid_awkward: event event_name=requests customer=\([^ ]*\) value=\([^ ]*\) .*/\1\t\2\t\3/p' \
		"$T/tr.out" | sort > "$T/got_tr.tsv"
	diff -u "$T/exp_tr.tsv" "$T/got_tr.tsv" > "$T/diff" ||
		fail "$phase: test-rule's events differ from the expected split: $(head -20 "$T/diff")"
	# Every other verdict: skipped (long), a line of NULs, no match, the unfinished last line.
	for kind in long nul no-match invalid torn pending pending-nul; do
		case $kind in
		long) re='skipped: line of [0-9]* bytes is longer than max_line_length (512)' ;;
		nul) re='no line: only NUL bytes' ;;
		torn) re='torn: [0-9]* bytes followed by NUL bytes, its end missing' ;;
		no-match) re='rid_awkward: no match' ;;
		invalid) re='rid_awkward: invalid' ;;
		pending) re='not read: the last line has no newline yet (run waits for it)' ;;
		pending-nul) re='not read: [0-9]* NUL bytes at the end' ;;
		esac
		diff -u <(awk -F'\t' -v k="$kind" '$2 == k {print $1}' "$T/expected.tsv") \
			<(sed -n "s/^\([0-9]*\): $re.*/\1/p" "$T/tr.out") > "$T/diff" ||
			fail "$phase: test-rule's '$kind' lines differ from the expected split: $(head -20 "$T/diff")"
	done
	[ "$(grep -vc ': rid_awkward: event ' "$T/tr.out")" = "$(grep -Pvc '\tevent\t|^counters' "$T/expected.tsv")" ] ||
		fail "$phase: test-rule printed lines the expected split does not have: $(grep -v ': rid_awkward: event ' "$T/tr.out" | head)"

	# run --once: the double accepted exactly the expected events, by identifier (the offset).
	agent_once "$T/logmeter.conf" || fail "$phase: run --once exited $?"
	uid=$(file_uid "$T/logmeter.conf" "$L")
	grep -P '\tevent\t' "$T/expected.tsv" | "$PYTHON3" -c '
import sys
sys.path.insert(0, sys.argv[1])
from identifiers import identifier
for row in sys.stdin:
    number, kind, offset, customer, value = row.rstrip("\n").split("\t")
    print("\t".join((identifier("test", "awkward", sys.argv[2], int(offset), "rid_awkward"),
                     customer, value, number)))' "$top_srcdir/tests" "$uid" | sort > "$T/exp_run.tsv"
	cut -f1,3,4 "$T/accepted.tsv" | sort > "$T/got_run.tsv"
	diff -u <(cut -f1-3 "$T/exp_run.tsv") "$T/got_run.tsv" > "$T/diff" ||
		fail "$phase: the double's events differ from the expected split: $(head -20 "$T/diff")"
	# And so test-rule's events are the double's: line number -> identifier, customer, value.
	diff -u <(awk -F'\t' '{print $4 "\t" $2 "\t" $3}' "$T/exp_run.tsv" | sort) "$T/got_tr.tsv" > "$T/diff" ||
		fail "$phase: test-rule and run disagree: $(head -20 "$T/diff")"

	# The agent's counters and checkpoint (the start of the unfinished last line).
	read -r _ want_lines want_long want_nuls want_offset want_torn < <(grep '^counters' "$T/expected.tsv")
	[ "$want_torn" -ge 3 ] || fail "test bug: $want_torn torn lines in the file"
	assert_eq "$want_lines" "$(status_sum "$T/logmeter.conf" 7)" "$phase: lines"
	assert_eq "$want_long" "$(status_sum "$T/logmeter.conf" 11)" "$phase: long lines"
	assert_eq "$want_nuls" "$(status_sum "$T/logmeter.conf" 12)" "$phase: NUL bytes"
	assert_eq "$want_offset" "$(status_sum "$T/logmeter.conf" 4)" "$phase: checkpoint"
	assert_eq "$want_torn" "$(status_sum "$T/logmeter.conf" 17)" "$phase: torn lines"
	note "$phase: $(wc -l < "$T/got_tr.tsv") events from test-rule and from run, as the split says; $want_long long lines, $want_nuls NUL bytes"
}

compare "unfinished last line"
# the CRLF line of exactly 512 bytes is billed by both (test-rule used to count its CR)
n=$(cat "$T/crlf_at_limit")
grep -q "^$n: rid_awkward: event " "$T/tr.out" || fail "the CRLF line at the limit (line $n) is not an event: $(grep "^$n:" "$T/tr.out")"
grep -q '^[0-9]*: not read: the last line has no newline yet' "$T/tr.out" || fail "test bug: no unfinished last line"

cat "$T/last_rest" >> "$L"
compare "completed last line"
grep -q 'not read' "$T/tr.out" && fail "test-rule still says a line is not read"
echo "t_awkward_lines: test-rule and run --once make the same $(wc -l < "$T/got_tr.tsv") events of the awkward file"

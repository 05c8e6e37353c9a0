#!/usr/bin/env bash
# A log of short lines (some 9 bytes each) cut with `truncate -s N` to N bytes inside its first
# KiB, past its 32nd line end, nothing written after the cut until the agent has seen it: the
# lines the cut kept were read already and are not read again; the lines appended after it are
# read once. The values are the line numbers, so the double's accepted values must be each line
# number written, once.
. "$(dirname "$0")/lib.sh"
lm_init truncate_short
double_start

mkdir -p "$T/ts"
write_config "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source ts]
path = $T/ts/app.log

[rule short]
source = ts
event_name = requests
pattern = ^(?<c>cus_\\w+) (?<v>\\d+)\$
customer = c
value = v
CONF
conf=$T/logmeter.conf
L=$T/ts/app.log
# gen FIRST LAST: the lines "cus_a N" for N = FIRST..LAST.
gen() {
	seq "$1" "$2" | awk '{ print "cus_a " $1 }'
}
record_uid() {
	"$PYTHON3" - "$T/state" "$(stat -c %i "$L")" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s/spool.db?mode=ro" % sys.argv[1], uri=True, timeout=10)
row = db.execute("SELECT uid FROM files WHERE ino = ? ORDER BY id DESC LIMIT 1", (int(sys.argv[2]),)).fetchone()
print(row[0] if row else "")
PY
}

gen 1 100 > "$L"
agent_start "$conf"
wait_until 60 accepted_at_least 100 || fail "first lines not delivered: $(accepted_count) of 100"
uid1=$(record_uid)
# Cut inside line 56 ("cus_a 56" starts at byte 495), past the 32 line ends the head marks used to
# stop at.
truncate -s 500 "$L"
wait_until 60 eval '[ "$(record_uid)" != "$uid1" ]' || fail "the cut was not seen"
gen 101 120 >> "$L"
wait_until 60 accepted_at_least 120 || fail "lines after the cut not delivered: $(accepted_count) of 120"
agent_stop || fail "agent did not stop cleanly"

# Each value 1..120 once: 1..100 read before the cut, 101..120 after it (the new record goes on
# from the cut, so the first of them is not glued to the piece of line 56 the cut kept).
seq 1 120 > "$T/expected"
cut -f4 "$T/accepted.tsv" | sort -n > "$T/got"
diff -u "$T/expected" "$T/got" > "$T/diff" ||
	fail "accepted values differ (- lost, + extra or twice): $(grep '^[-+][0-9]' "$T/diff" | head -20 | tr '\n' ' ')"
grep -q "ts/app.log: truncated in place to 500 bytes, which were read already" "$T/agent.log" ||
	fail "the cut was not logged as one that kept lines already read"
echo "t_truncate_short: 120 values each accepted once across a cut at 500 bytes of a file of short lines"

#!/usr/bin/env bash
# logmeter backfill of a piece cut from a log billed before, through the real binary against the
# Stripe double. The piece does not start with its file's first bytes, so nothing identifies it
# as that file (docs/backfill.md); but its lines' events, with a rule that takes each line's own
# timestamp, are in the spool already, so backfill refuses it, in the dry run too, and bills
# nothing of it; a file never billed, of the same log's other lines, is billed in full (counts from
# grep -cP over the real log, with its dates moved to yesterday so that Stripe takes them).
. "$(dirname "$0")/lib.sh"
lm_init backfill_piece
double_start

PATTERN='^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "[^"]*" 2\d\d (?<bytes>\d+)'
mkdir -p "$T/logs" "$T/archive"
conf=$T/logmeter.conf
write_config "$conf"
cat >>"$conf" <<CONF
[source apache]
path = $T/logs/access.log
[rule bytes]
source = apache
event_name = bandwidth_bytes
pattern = $PATTERN
customer = ip
value = bytes
timestamp = time
CONF
yesterday=$(date -u -d yesterday +%d/%b/%Y)
sed -E "s|\[[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:|[$yesterday:|" "$LOGS/elastic_apache_logs.log" >"$T/log"
count() { grep -cP "$PATTERN" "$1" || true; }
bf() { # bf OUT ARGS...: stdout to OUT, stderr to backfill.err
	local out=$1
	shift
	timeout 120 "$LOGMETER" backfill -c "$conf" "$@" >"$out" 2>>"$T/backfill.err"
}
events() {
	"$LOGMETER" status -c "$conf" --json 2>/dev/null | "$PYTHON3" -c 'import json, sys
e = json.load(sys.stdin)["events"]
print(e["pending"] + e["delivered"] + e["dead"] + e["unsure"])'
}

sed -n '1,2000p' "$T/log" | gzip >"$T/archive/access.log.1.gz"
bf "$T/whole.out" "$T/archive/access.log.1.gz" || fail "backfill of the whole archive exited $?"
want=$(zcat "$T/archive/access.log.1.gz" | grep -cP "$PATTERN")
assert_eq "$want" "$(accepted_count)" "events of the whole archive"
assert_eq "$want" "$(events)" "events in the spool"

# Pieces of it: its middle, its end. Nothing of the spool tells them apart from new files but
# their events.
zcat "$T/archive/access.log.1.gz" | sed -n '500,900p' >"$T/archive/middle.log"
zcat "$T/archive/access.log.1.gz" | tail -n 300 | gzip >"$T/archive/end.log.gz"
for f in middle.log end.log.gz; do
	rc=0
	bf "$T/dry.out" --dry-run "$T/archive/$f" || rc=$?
	assert_eq 1 "$rc" "dry run of the piece $f"
	grep -q "^refused: $T/archive/$f: starts like no file read before, but [0-9]* of its first [0-9]* events have the rule, customer, value and timestamp of events in the spool (of the file read as $T/archive/access.log.1.gz, identity [0-9a-f]*, among others): its lines look billed already" "$T/dry.out" ||
		fail "dry run of $f: $(cat "$T/dry.out")"
	rc=0
	bf "$T/piece.out" "$T/archive/$f" || rc=$?
	assert_eq 1 "$rc" "backfill of the piece $f"
	grep -q "$T/archive/$f: starts like no file read before, but .*: refused rather than billed twice" "$T/backfill.err" ||
		fail "no refusal of $f: $(cat "$T/backfill.err")"
done
assert_eq "$want" "$(events)" "events in the spool after the pieces"
assert_eq "$want" "$(accepted_count)" "events accepted after the pieces"
note "pieces cut from the middle and the end of an archive billed before: refused, nothing billed"

# Lines never billed, of the same clients and the same day: billed in full.
sed -n '2001,2600p' "$T/log" >"$T/archive/other.log"
bf "$T/other.out" "$T/archive/other.log" || fail "backfill of a file never billed exited $?"
want=$((want + $(count "$T/archive/other.log")))
assert_eq "$want" "$(accepted_count)" "events after a file never billed"
[ -z "$(double_accepted_ids | uniq -d)" ] || fail "an identifier accepted twice"
note "a file never billed beside them: billed, $(count "$T/archive/other.log") events"

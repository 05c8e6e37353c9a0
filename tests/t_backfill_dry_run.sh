#!/usr/bin/env bash
# logmeter backfill --dry-run says what the real run does, and archives are read whole, through
# the real binary against the Stripe double (counts from zcat | grep -cP and awk):
#   1. before the agent ever ran (no spool): the dry run counts every line as new and makes no
#      spool; the same archive twice in one command is new once, as in the real run;
#   2. a rule without `timestamp =`: the real run is refused without --stamp-now (exit 2), and
#      the dry run says the events would be stamped with the time of the backfill;
#   3. the file a running agent reads: refused by the dry run as by the real run (exit 1);
#   4. a .gz whose last line has no newline: every line billed, and status shows its offset and
#      size in the same unit (bytes of content), lag 0; a plain file's unfinished last line is
#      left, and said;
#   5. a relative path is recorded absolute.
. "$(dirname "$0")/lib.sh"
lm_init backfill_dry_run
double_start

PATTERN='^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)' # config_apache_bytes's
APACHE=$LOGS/elastic_apache_logs.log
mkdir -p "$T/logs" "$T/archive"
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$T/logs/access.log"

bf() { # bf OUT ARGS...: stdout to OUT, stderr to agent.log; its exit status
	local out=$1
	shift
	timeout 120 "$LOGMETER" backfill -c "$conf" "$@" >"$out" 2>>"$T/agent.log"
}
count_gz() { zcat "$1" | grep -cP "$PATTERN" || true; }
status_line() { # status_line PATH: the "offset N  size N  lag N bytes" line of PATH's record
	"$LOGMETER" status -c "$conf" | grep -A2 "^  $1\$" | sed -n 's/^    \(offset .*\)$/\1/p'
}

# --- 1. no spool yet ----------------------------------------------------------------------------
sed -n '1,400p' "$APACHE" | gzip >"$T/archive/a.log.gz"
want=$(count_gz "$T/archive/a.log.gz")
bf "$T/dry.out" --dry-run "$T/archive/a.log.gz" "$T/archive/a.log.gz" ||
	fail "dry run before any spool exited $?: $(tail -n 3 "$T/agent.log")"
[ ! -e "$T/state/spool.db" ] || fail "a dry run made a spool"
assert_eq 2 "$(wc -l <"$T/dry.out")" "lines of the dry run"
grep -q "^$T/archive/a.log.gz: gzip, [0-9]* bytes, 400 lines: $want events, all new (a file never read)" "$T/dry.out" ||
	fail "dry run, first: $(cat "$T/dry.out")"
grep -q "^$T/archive/a.log.gz: gzip, [0-9]* bytes, 400 lines: $want events, all from the lines before offset [0-9]*, read by this backfill before, as $T/archive/a.log.gz: 0 new" "$T/dry.out" ||
	fail "dry run, the same archive again: $(cat "$T/dry.out")"
note "no spool yet: the dry run counts $want new events once, makes no spool"

# --- 2. --stamp-now -------------------------------------------------------------------------------
grep -q "$want of the new ones come from rules without \`timestamp =\` and would be stamped with the time of the backfill, which needs --stamp-now" "$T/dry.out" ||
	fail "the dry run does not say the events would be stamped now: $(cat "$T/dry.out")"
rc=0
bf "$T/run.out" "$T/archive/a.log.gz" || rc=$?
assert_eq 2 "$rc" "a real run without --stamp-now"
grep -q "rule 'bytes' has no \`timestamp =\`: its events of an archive would be stamped with the time of the backfill" "$T/agent.log" ||
	fail "no word of the timestamp"
[ ! -e "$T/state/spool.db" ] || fail "a refused run made a spool"
bf "$T/run.out" --stamp-now "$T/archive/a.log.gz" "$T/archive/a.log.gz" || fail "backfill exited $?"
assert_eq "$want" "$(accepted_count)" "the same archive twice in one command"
grep -q ": 0 events added: every line of it was read already, as $T/archive/a.log.gz " "$T/run.out" ||
	fail "run: $(cat "$T/run.out")"
note "without timestamp: refused without --stamp-now, billed once with it"

# --- 3. the live file, beside the agent -----------------------------------------------------------
sed -n '401,500p' "$APACHE" >"$T/logs/access.log"
agent_start "$conf"
E=$((want + $(grep -cP "$PATTERN" "$T/logs/access.log")))
wait_until 30 accepted_at_least "$E" || fail "the agent did not bill its file"
rc=0
bf "$T/live.out" --dry-run "$T/logs/access.log" || rc=$?
assert_eq 1 "$rc" "dry run of the file the agent reads"
grep -q "^refused: $T/logs/access.log: the running agent is reading this file" "$T/live.out" ||
	fail "dry run of the live file: $(cat "$T/live.out")"
agent_stop || fail "the agent exited $?"
note "the live file: the dry run refuses it as the run does"

# --- 4. the last line without a newline -----------------------------------------------------------
sed -n '7001,7010p' "$APACHE" | head -c -1 >"$T/archive/nonl.log"
gzip -k "$T/archive/nonl.log"
n=$(grep -cP "$PATTERN" "$T/archive/nonl.log") # grep counts a last line without its newline
[ "$n" = 10 ] || fail "test bug: lines 7001-7010 are not all 2xx ($n)"
bf "$T/nonl.out" --stamp-now "$T/archive/nonl.log.gz" || fail "backfill of nonl.log.gz exited $?"
grep -q ": 10 events added from 10 lines (a file never read" "$T/nonl.out" || fail "nonl.log.gz: $(cat "$T/nonl.out")"
assert_eq $((E + 10)) "$(accepted_count)" "events of a .gz without a final newline"
size=$(zcat "$T/archive/nonl.log.gz" | wc -c)
assert_eq "offset $size  size $size  lag 0 bytes" "$(status_line "$T/archive/nonl.log.gz")" "status of the archive"
rm "$T/archive/nonl.log"
sed -n '7021,7030p' "$APACHE" | head -c -1 >"$T/archive/plain.log"
[ "$(grep -cP "$PATTERN" "$T/archive/plain.log")" = 10 ] || fail "test bug: lines 7021-7030 are not all 2xx"
bf "$T/plain.out" --stamp-now "$T/archive/plain.log" || fail "backfill of plain.log exited $?"
last=$(tail -n 1 "$T/archive/plain.log" | wc -c)
size=$(wc -c <"$T/archive/plain.log")
grep -q ": 9 events added from 9 lines (a file never read: identity [0-9a-f]*); its last $last bytes are a line without its newline, not read" "$T/plain.out" ||
	fail "plain.log: $(cat "$T/plain.out")"
assert_eq "offset $((size - last))  size $size  lag $last bytes" "$(status_line "$T/archive/plain.log")" "status of the plain file"
assert_eq $((E + 19)) "$(accepted_count)" "events of the plain file"
note "a .gz's last line without a newline billed; a plain file's left, and said"

# --- 5. a relative path ----------------------------------------------------------------------------
sed -n '601,700p' "$APACHE" | gzip >"$T/archive/rel.log.gz"
(cd "$T/archive" && timeout 120 "$LOGMETER" backfill -c "$conf" --stamp-now rel.log.gz >"$T/rel.out" 2>>"$T/agent.log") ||
	fail "backfill of a relative path exited $?"
"$LOGMETER" status -c "$conf" | grep -qx "  $T/archive/rel.log.gz" || fail "the record's path is not absolute"
assert_eq $((E + 19 + $(count_gz "$T/archive/rel.log.gz"))) "$(accepted_count)" "events of rel.log.gz"
[ -z "$(double_accepted_ids | uniq -d)" ] || fail "an identifier accepted twice"
note "a relative path recorded absolute"

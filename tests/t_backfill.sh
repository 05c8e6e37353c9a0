#!/usr/bin/env bash
# logmeter backfill through the real binary, against the Stripe double:
#   1. a log billed live up to line 200, then appended to while the agent was stopped, rotated and
#      gzipped: --dry-run says how many events it makes and how many come from lines already
#      read; backfilling it bills lines 201.. only, under the identifiers of the live file, so the
#      double accepts every line of it exactly once; backfilling it again adds nothing;
#   2. a .gz of a log never tailed: every line billed once (counts from zcat | grep -cP);
#   3. while the agent runs: backfill only commits and the agent's sender delivers; the file the
#      agent is reading is refused;
#   4. a truncated .gz and an xz file are refused, nothing of them billed.
. "$(dirname "$0")/lib.sh"
lm_init backfill
double_start

PATTERN='^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)' # config_apache_bytes's
APACHE=$LOGS/elastic_apache_logs.log
mkdir -p "$T/logs" "$T/archive"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/access.log"
conf=$T/logmeter.conf

backfill() { # backfill ARGS...: stdout to $T/backfill.out, stderr to agent.log; its exit code
	local rc=0
	timeout 120 "$LOGMETER" backfill --stamp-now -c "$conf" "$@" >"$T/backfill.out" 2>>"$T/agent.log" || rc=$?
	return $rc
}
count_gz() { zcat "$1" | grep -cP "$PATTERN" || true; }

# --- 1. billed live, appended while stopped, rotated, compressed: the overlap --------------------
sed -n '1,200p' "$APACHE" >"$T/logs/access.log"
agent_once "$conf" || fail "run --once exited $?"
live=$(apache_bytes_count "$T/logs/access.log")
assert_eq "$live" "$(accepted_count)" "events billed live"
uid=$(file_uid "$conf" "$T/logs/access.log")
sed -n '201,320p' "$APACHE" >>"$T/logs/access.log"
mv "$T/logs/access.log" "$T/archive/access.log.1"
gzip "$T/archive/access.log.1"
gz=$T/archive/access.log.1.gz
total=$(count_gz "$gz")
before=$(zcat "$gz" | head -n 200 | grep -cP "$PATTERN" || true)
[ "$before" = "$live" ] || fail "test bug: grep -P ($before) and awk ($live) disagree"
[ $((total - before)) -gt 0 ] || fail "test bug: no new events in lines 201-320"

backfill --dry-run "$gz" || fail "backfill --dry-run exited $?"
grep -q "^$gz: gzip, [0-9]* bytes, 320 lines: $total events; $before from the lines before offset [0-9]*, already read as $T/logs/access.log (identity $uid; $live of its events are in the spool); $((total - before)) new; $((total - before)) of the new ones come from rules without \`timestamp =\` and would be stamped with the time of the backfill (--stamp-now)$" "$T/backfill.out" ||
	fail "dry run: $(cat "$T/backfill.out")"
assert_eq "$live" "$(accepted_count)" "a dry run sent nothing"

backfill "$gz" || fail "backfill exited $?"
grep -q "^$gz: gzip, [0-9]* bytes: $((total - before)) events added from 120 lines after offset [0-9]*, where the file read as $T/logs/access.log stood (identity $uid)$" "$T/backfill.out" ||
	fail "backfill: $(cat "$T/backfill.out")"
# Every 2xx line of the archive once, under the live file's identity: offsets by awk over zcat.
zcat "$gz" >"$T/archive.txt"
apache_bytes_offsets "$T/archive.txt" | identifiers_of apache "$uid" bytes | sort >"$T/expected_ids"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/ids.diff" ||
	fail "accepted identifiers differ from the archive's lines, each once: $(head -n 20 "$T/ids.diff")"
assert_eq "$total" "$(accepted_count)" "events accepted in all (zcat | grep -cP)"

backfill "$gz" || fail "backfill again exited $?"
grep -q ": 0 events added: every line of it was read already, as $T/logs/access.log (identity $uid, up to offset [0-9]*)$" "$T/backfill.out" || fail "again: $(cat "$T/backfill.out")"
assert_eq "$total" "$(accepted_count)" "a second backfill billed nothing"
note "overlap: $before events billed live, $((total - before)) by backfill, none twice"

# --- 2. a .gz never tailed: every line once ------------------------------------------------------
sed -n '1001,1400p' "$APACHE" | gzip >"$T/archive/old.log.gz"
want=$(count_gz "$T/archive/old.log.gz")
n0=$(accepted_count)
backfill --dry-run "$T/archive/old.log.gz" || fail "dry run exited $?"
grep -q "^$T/archive/old.log.gz: gzip, [0-9]* bytes, 400 lines: $want events, all new (a file never read); $want of the new ones come from rules without \`timestamp =\` and would be stamped with the time of the backfill (--stamp-now)$" "$T/backfill.out" ||
	fail "dry run: $(cat "$T/backfill.out")"
backfill "$T/archive/old.log.gz" || fail "backfill exited $?"
assert_eq $((n0 + want)) "$(accepted_count)" "events of the new archive (zcat | grep -cP)"
ouid=$(file_uid "$conf" "$T/archive/old.log.gz")
zcat "$T/archive/old.log.gz" >"$T/old.txt"
apache_bytes_offsets "$T/old.txt" | identifiers_of apache "$ouid" bytes | sort >"$T/expected_old"
tail -n "+$((n0 + 1))" "$T/accepted.tsv" | cut -f1 | sort >"$T/accepted_old"
diff -u "$T/expected_old" "$T/accepted_old" >"$T/old.diff" || fail "new archive: $(head "$T/old.diff")"
[ -z "$(double_accepted_ids | uniq -d)" ] || fail "an identifier accepted twice"
note "new archive: $want events, each once"

# --- 3. while the agent runs ------------------------------------------------------------------
sed -n '2001,2100p' "$APACHE" >"$T/logs/access.log"
agent_start "$conf"
n1=$(accepted_count)
live2=$(apache_bytes_count "$T/logs/access.log")
wait_until 30 accepted_at_least $((n1 + live2)) || fail "the agent did not bill the live file"
sed -n '3001,3300p' "$APACHE" | gzip >"$T/archive/other.log.gz"
want=$(count_gz "$T/archive/other.log.gz")
backfill "$T/archive/other.log.gz" || fail "backfill beside the agent exited $?"
grep -q 'an agent runs on .*: backfill commits the events, the agent sends them' "$T/agent.log" ||
	fail "backfill did not see the agent"
wait_until 30 accepted_at_least $((n1 + live2 + want)) ||
	fail "the agent did not send the backfilled events: $(accepted_count) of $((n1 + live2 + want))"
rc=0
backfill "$T/logs/access.log" || rc=$?
assert_eq 1 "$rc" "backfill of the file the agent reads"
grep -q 'the running agent is reading this file' "$T/agent.log" || fail "no refusal for the live file"
agent_stop || fail "the agent exited $?"
assert_eq $((n1 + live2 + want)) "$(accepted_count)" "events accepted beside the agent"
[ -z "$(double_accepted_ids | uniq -d)" ] || fail "an identifier accepted twice"
note "beside the agent: $want events committed by backfill, sent by the agent"

# --- 4. bad archives: refused, nothing billed ------------------------------------------------------
n2=$(accepted_count)
sed -n '4001,4400p' "$APACHE" | gzip >"$T/full.gz"
head -c $(($(stat -c %s "$T/full.gz") / 2)) "$T/full.gz" >"$T/archive/cut.log.gz"
rc=0
backfill "$T/archive/cut.log.gz" || rc=$?
assert_eq 1 "$rc" "backfill of a truncated .gz"
grep -q 'cut.log.gz: not a sound gzip file' "$T/agent.log" || fail "no clear error for the truncated .gz"
if command -v xz >/dev/null 2>&1; then
	sed -n '1,10p' "$APACHE" | xz >"$T/archive/x.log.xz"
	rc=0
	backfill "$T/archive/x.log.xz" || rc=$?
	assert_eq 1 "$rc" "backfill of an xz file"
	grep -q 'x.log.xz: xz-compressed: backfill reads plain and gzip files only' "$T/agent.log" ||
		fail "no clear error for xz"
fi
assert_eq "$n2" "$(accepted_count)" "events from bad archives"
note "a truncated .gz and an xz file refused with their reason"

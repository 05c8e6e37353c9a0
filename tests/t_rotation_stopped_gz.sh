#!/usr/bin/env bash
# logrotate with `compress` and no `delaycompress` while logmeter is not running (a cron
# `run --once` between two runs): the lines written after the last run are only in the .gz.
#   rs (create): app.log renamed to app.log.1 and gzipped at once (app.log.1.gz), a new app.log
#      created: the record's file is gone at the next start.
#   ct (copytruncate): app.log copied to app.log.1, truncated, the copy gzipped: the truncation is
#      found and no plain copy is there.
#   od (create, `olddir = old`): app.log renamed into old/ and gzipped there (old/app.log.1.gz).
# Each record is read on from its checkpoint through the .gz (its own uid and offsets), then
# marked drained (before, those lines were lost): every rid is accepted once, nothing lost, and
# a third run reads nothing again. And:
#   dx: app.log rotated and its rotation deleted; beside it lie .gz files that must not be read:
#      other.log.1.gz (another log, not named as a rotation of app.log); app.log-20250101.gz, a
#      copy of app.log whose first KiB is the same but whose last line before the checkpoint
#      differs (its rid edited), with lines after it whose rids were never written: read, they
#      would be accepted; and app.log.2.gz, a copy that holds what was read gzipped and cut short
#      (not a sound gzip file: skipped with a warning). dx's lines after its checkpoint are lost
#      (its rotation is gone), as before, with its warning.
# Rids and identifiers come from awk and tests/identifiers.py over what was written (zcat of the
# .gz files).
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_gz
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rs" "$T/ct" "$T/od/old" "$T/dx"
conf=$T/logmeter.conf
write_config "$conf"
rule_conf rs "$T/rs/app.log" >> "$conf"
rule_conf ct "$T/ct/app.log" >> "$conf"
rule_conf od "$T/od/app.log" "olddir = old" >> "$conf"
rule_conf dx "$T/dx/app.log" >> "$conf"
L=$T/rs/app.log
C=$T/ct/app.log
O=$T/od/app.log
D=$T/dx/app.log
writer_init

put_rids "$L" 20
put_rids "$C" 20
put_rids "$O" 20
put_rids "$D" 20
agent_once "$conf" || fail "first run --once exited $?"
assert_eq "$written" "$(accepted_count)" "events accepted by the first run"
# What the first run read of dx's app.log (its checkpoint), for the decoys.
cp "$D" "$T/read_dx"
sz_rs=$(wc -c < "$L")

# Between the runs: lines written, then logrotate. Each log's new file is created before any
# file is compressed or deleted: ext4 gives a freed inode to the next file created, also in
# another directory, and a new log of one source with the inode of another source's record is
# another matter than this test's.
put_rids "$L" 15
put_rids "$C" 15
put_rids "$O" 15
put_rids "$D" 15 # lost with the rotation deleted below
mv "$L" "$L.1" # create
put_rids "$L" 10
cp "$C" "$C.1" # copytruncate
: > "$C"
put_rids "$C" 10
mv "$O" "$T/od/old/app.log.1" # olddir
put_rids "$O" 10
mv "$D" "$D.1"
put_rids "$D" 10
gzip "$L.1" "$C.1" "$T/od/old/app.log.1"
rm "$D.1"

# The decoys. app.log-20250101: what the first run read, its last line's rid changed (same
# length), and then lines with rids never written.
sz=$(wc -c < "$T/read_dx")
LC_ALL=C awk -v n="$(wc -l < "$T/read_dx")" 'NR == n { sub(/ rid=[0-9]+$/, " rid=99") } { print }' \
	"$T/read_dx" > "$D-20250101"
lines 9001 5 >> "$D-20250101"
[ "$(wc -c < "$D-20250101")" -gt "$sz" ] || fail "test bug: the decoy is not longer than the checkpoint"
cmp -s -n 1024 "$T/read_dx" "$D-20250101" || fail "test bug: the decoy's first KiB differs from app.log's"
cmp -s -n "$sz" "$T/read_dx" "$D-20250101" && fail "test bug: the decoy holds what was read"
gzip "$D-20250101"
{ cat "$T/read_dx"; lines 9101 5; } > "$T/dx/other.log.1"
gzip "$T/dx/other.log.1"
{ cat "$T/read_dx"; lines 9201 200; } | gzip > "$T/whole.gz"
head -c "$(($(wc -c < "$T/whole.gz") - 20))" "$T/whole.gz" > "$D.2.gz"
gzip -t "$D.2.gz" 2> /dev/null && fail "test bug: app.log.2.gz is sound"

agent_once "$conf" || fail "second run --once exited $?"

uid_rs=$(spool_sql "$conf" "SELECT uid FROM files WHERE source = 'rs' ORDER BY id LIMIT 1")
uid_ct=$(spool_sql "$conf" "SELECT uid FROM files WHERE source = 'ct' ORDER BY id LIMIT 1")
uid_od=$(spool_sql "$conf" "SELECT uid FROM files WHERE source = 'od' ORDER BY id LIMIT 1")
uid_dx=$(spool_sql "$conf" "SELECT uid FROM files WHERE source = 'dx' ORDER BY id LIMIT 1")
zcat "$L.1.gz" > "$T/rs_rotated"
zcat "$C.1.gz" > "$T/ct_rotated"
zcat "$T/od/old/app.log.1.gz" > "$T/od_rotated"
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_from rs "$uid_rs" "$T/rs_rotated" 0
expect_from ct "$uid_ct" "$T/ct_rotated" 0
expect_from od "$uid_od" "$T/od_rotated" 0
expect_from dx "$uid_dx" "$T/read_dx" 0
expect_file "$conf" rs "$L"
expect_file "$conf" ct "$C"
expect_file "$conf" od "$O"
expect_file "$conf" dx "$D"
assert_eq "$((written - 15))" "$(wc -l < "$T/expected_rids")" "rids written (first run, .gz files, new logs), but dx's lost ones"
check_accepted

grep -qF "$L: reading what it held after its checkpoint $sz_rs from $L.1.gz" "$T/agent.log" ||
	fail "rs: the rest of app.log not read from app.log.1.gz: $(grep -F "$L" "$T/agent.log" | tail -n 5)"
grep -qF "$C: reading what it held after its checkpoint" "$T/agent.log" ||
	fail "ct: the rest of app.log not read from app.log.1.gz"
grep -qF "$O: reading what it held after its checkpoint" "$T/agent.log" ||
	fail "od: the rest of app.log not read from old/app.log.1.gz"
grep -qF "$D.2.gz: skipped while looking for the rest of $D: $D.2.gz: not a sound gzip file" "$T/agent.log" ||
	fail "the unsound app.log.2.gz not skipped with a warning"
grep -qF "$D-20250101.gz: starts as $D did, but does not hold what logmeter read of it before offset $sz" "$T/agent.log" ||
	fail "the decoy app.log-20250101.gz not judged another file"
grep -qF "$D: gone while logmeter was stopped (deleted, or moved out of its directory): nothing after offset $sz" "$T/agent.log" ||
	fail "dx: the lost rest not announced"
! grep -F "other.log" "$T/agent.log" || fail "other.log.1.gz looked at"
! grep -E "(rs|ct|od)/app.log: .*nothing after offset" "$T/agent.log" || fail "a record's rest announced as lost"
! grep -F "reading it from the start as a new file;" "$T/agent.log" || fail "ct: the truncation announced as a loss"
assert_eq drained "$(spool_sql "$conf" "SELECT state FROM files WHERE uid = ?" "$uid_rs")" "state of rs's first record"
assert_eq drained "$(spool_sql "$conf" "SELECT state FROM files WHERE uid = ?" "$uid_ct")" "state of ct's first record"
assert_eq drained "$(spool_sql "$conf" "SELECT state FROM files WHERE uid = ?" "$uid_od")" "state of od's first record"
assert_eq gone "$(spool_sql "$conf" "SELECT state FROM files WHERE uid = ?" "$uid_dx")" "state of dx's first record"

# A later run does not read the .gz files again.
agent_once "$conf" || fail "third run --once exited $?"
check_accepted
assert_eq 3 "$(grep -c "reading what it held after its checkpoint" "$T/agent.log")" "reads of a .gz over three runs"
echo "t_rotation_stopped_gz: $written rids each accepted once but dx's 15 lost with its deleted rotation, the rest of a log compressed by logrotate (create, copytruncate, olddir) between two runs read from its .gz, decoys left unread"

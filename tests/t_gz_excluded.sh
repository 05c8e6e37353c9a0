#!/usr/bin/env bash
# Rotated, compressed files are never read as text:
#   z   glob access.log* with the default exclude (*.gz): rotation with delaycompress (the older
#       rotated file gzipped, the plain one removed by gzip) while the agent runs; an old .gz
#       there from the start
#   y   glob * with its own exclude (*.old), which replaces *.gz: a plain .old file is excluded
#       by name, and a .gz (and a .xz) that the glob lets through is refused by its content
#       (compression magic), with a clear error, whether it is there at start or appears later
# Every rid of the plain files is accepted once; no compressed file is ever opened as a tail.
. "$(dirname "$0")/lib.sh"
lm_init gz_excluded
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/z" "$T/y"
write_config "$T/logmeter.conf"
{
	rule_conf z "$T/z/access.log*"
	rule_conf y "$T/y/*" "exclude = *.old"
} >> "$T/logmeter.conf"

rid=1
written=0
put() { # put FILE COUNT
	lines "$rid" "$2" >> "$1"
	rid=$((rid + $2))
	written=$((written + $2))
}
delivered() {
	accepted_at_least "$written"
}
# The compressed files hold lines with rids of their own (500000 on): none may be accepted.
lines 500001 50 | gzip > "$T/z/access.log.3.gz"
lines 500101 50 | gzip > "$T/y/app.log.2.gz"
lines 500201 50 > "$T/y/app.log.old"
put "$T/z/access.log" 20
put "$T/y/app.log" 20

agent_start "$T/logmeter.conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
wait_until 60 grep -q "y/app.log.2.gz: .*gzip-compressed" "$T/agent.log" ||
	fail "no clear error for the .gz the glob of y lets through"

note "rotation with delaycompress while the agent runs"
Z=$T/z/access.log
put "$Z" 10
mv "$Z" "$Z.1"
: > "$Z"
put "$Z" 10
wait_until 60 delivered || fail "after the first rotation: $(accepted_count) of $written"
put "$Z" 10
ino2=$(stat -c %i "$Z.1")
cp "$Z.1" "$T/z2.copy"
mv "$Z.1" "$Z.2"
mv "$Z" "$Z.1"
: > "$Z"
gzip "$Z.2" # creates access.log.2.gz, removes access.log.2
put "$Z" 10
wait_until 60 delivered || fail "after the rotation with compression: $(accepted_count) of $written"

note "compressed files appearing later under a glob that lets them through"
if command -v xz >/dev/null 2>&1; then
	lines 500301 50 | xz > "$T/y/app.log.3.xz"
else
	lines 500301 50 | gzip | sed '1s/^/\xfd7zXZ\x00/' > "$T/y/app.log.3.xz" # its magic will do
fi
lines 500401 50 | gzip > "$T/y/later.gz"
put "$T/y/app.log" 10
wait_until 60 delivered || fail "y after the compressed files: $(accepted_count) of $written"
wait_until 60 grep -q "y/app.log.3.xz: .*xz-compressed" "$T/agent.log" || fail "no error for the .xz"
wait_until 60 grep -q "y/later.gz: .*gzip-compressed" "$T/agent.log" || fail "no error for later.gz"
sleep 2 # two rescans: nothing more may come
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$Z" "$Z.1"; do expect_file "$T/logmeter.conf" z "$f"; done
uid=$(spool_sql "$T/logmeter.conf" "SELECT uid FROM files WHERE source = 'z' AND ino = ? ORDER BY id DESC LIMIT 1" "$ino2")
ids_for z "$uid" "$T/z2.copy" >> "$T/expected_ids"
rids_of "$T/z2.copy" >> "$T/expected_rids"
expect_file "$T/logmeter.conf" y "$T/y/app.log"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the plain files"
check_accepted
# No record, so no tail, for any compressed or excluded file.
status_tsv "$T/logmeter.conf" | cut -f1 > "$T/paths"
if grep -E '\.(gz|xz|old)$' "$T/paths"; then
	fail "a compressed or excluded file was tailed"
fi
assert_eq 0 "$(status_sum "$T/logmeter.conf" 9)" "unmatched lines (nothing binary read)"
assert_eq "$written" "$(status_sum "$T/logmeter.conf" 8)" "matched lines"
echo "t_gz_excluded: $written rids from plain files accepted once; .gz/.xz files never read, by name or by content"

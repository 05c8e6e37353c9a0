#!/usr/bin/env bash
# `status` of a drained record whose file was rewritten in place. copytruncate done by copying
# the log over the old copy (`cp app.log app.log.1`: the same inode, its content replaced),
# twice: the first copy gets a drained record at its end (tail.c, the copies of a truncated
# log), and the second copy, written over it, a record of its own. The first record's file is
# gone (its inode holds other bytes now, all read under app.log's record): status must not show
# the new size past its checkpoint as its lag. Before, it showed `lag N bytes` (the second copy's
# size less the first's), as if N bytes of it waited unread. What is billed does not change:
# every rid written is accepted once (the rids as the test wrote them).
. "$(dirname "$0")/lib.sh"
lm_init status_rewritten
. "$top_srcdir/tests/tail_lib.sh"
double_start

conf=$T/logmeter.conf
write_config "$conf"
rule_conf ct "$T/app.log" >> "$conf"
L=$T/app.log
writer_init
exec 7>> "$L"

# records_of FILE: the number of records of FILE's inode.
records_of() {
	spool_sql "$conf" "SELECT count(*) FROM files WHERE ino = ?" "$(stat -c %i "$1")"
}

writer_put 20
agent_start "$conf"
wait_until 60 delivered || fail "first lines: $(accepted_count) of $written"

note "first copytruncate: app.log copied to a new app.log.1"
cp "$L" "$L.1"
truncate -s 0 "$L"
writer_put 5
wait_until 60 delivered || fail "after the first copy: $(accepted_count) of $written"
wait_until 60 eval '[ "$(records_of "$L.1")" = 1 ]' || fail "the first copy got no record: $(spool_sql "$conf" 'SELECT path, ino, state FROM files')"
ino=$(stat -c %i "$L.1")
size1=$(wc -c < "$L.1")

note "second copytruncate: app.log, longer, copied over app.log.1 in place"
writer_put 40
wait_until 60 delivered || fail "before the second copy: $(accepted_count) of $written"
cp "$L" "$L.1"
assert_eq "$ino" "$(stat -c %i "$L.1")" "test bug: cp did not write app.log.1 in place"
size2=$(wc -c < "$L.1")
[ "$size2" -gt "$size1" ] || fail "test bug: the second copy ($size2 bytes) is not longer than the first ($size1)"
truncate -s 0 "$L"
writer_put 5
wait_until 60 delivered || fail "after the second copy: $(accepted_count) of $written"
wait_until 60 eval '[ "$(records_of "$L.1")" = 2 ]' || fail "the second copy got no record: $(spool_sql "$conf" 'SELECT path, ino, state, "offset", size FROM files')"
live_read() {
	[ "$(spool_sql "$conf" 'SELECT "offset" FROM files WHERE ino = ? ORDER BY id DESC LIMIT 1' "$(stat -c %i "$L")")" = "$(wc -c < "$L")" ]
}
wait_until 60 live_read || fail "app.log not read to its end: $(status_tsv "$conf")"
status_tsv "$conf" > "$T/status.tsv"
agent_stop || fail "agent did not stop cleanly"

# Both records of app.log.1's inode: drained, no lag (every byte of the file now there was read
# under app.log's record, and the first copy's bytes are gone).
LC_ALL=C awk -F'\t' -v ino="$ino" '$16 == ino' "$T/status.tsv" > "$T/copies.tsv"
assert_eq 2 "$(wc -l < "$T/copies.tsv")" "records of app.log.1 in status ($(cat "$T/status.tsv"))"
assert_eq "drained drained" "$(cut -f3 "$T/copies.tsv" | tr '\n' ' ' | sed 's/ $//')" "states of app.log.1's records"
assert_eq "0 0" "$(cut -f6 "$T/copies.tsv" | tr '\n' ' ' | sed 's/ $//')" "lag of app.log.1's records ($(cat "$T/copies.tsv"))"
"$LOGMETER" status -c "$conf" --json > "$T/status.json" || true
assert_eq "0 0" "$("$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(str(f["lag"]) for f in d["files"] if f["inode"] == int(sys.argv[2])))' "$T/status.json" "$ino")" \
	"status --json: lag of app.log.1's records"

# Billing unchanged: every rid written accepted once.
assert_eq "$(seq 1 "$written" | tr '\n' ' ')" "$(cut -f4 "$T/accepted.tsv" | sort -n | tr '\n' ' ')" "rids accepted"
echo "t_status_rewritten: app.log.1 written over in place: its records show no lag; $written rids accepted once"

#!/usr/bin/env bash
# A file record's id is never given to another record, even once the record is deleted: SQLite
# gives a deleted largest rowid to the next row (https://www.sqlite.org/autoinc.html), and a tail,
# batch or window still holding the old id would then read or write another file's record.
# Two files under one glob, read by `run --once`: a.log (100 lines) and b.log, empty (its record,
# the newest, reads nothing). While logmeter is stopped, b.log becomes a copy of a.log's first 50
# lines and a.log is truncated and written again. At the next start a.log's checkpoint is stale,
# b.log is found to be a copy of what a.log's record read: b.log's empty record is deleted and b.log
# gets a record at its end. Every (id, uid) the spool shows across the runs (read independently,
# with Python's sqlite3) must have one uid per id, and every line be billed once.
. "$(dirname "$0")/lib.sh"
lm_init file_ids
. "$top_srcdir/tests/tail_lib.sh"
double_start

dir=$T/ids
mkdir -p "$dir"
write_config "$T/logmeter.conf"
rule_conf ids "$dir/*.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf

records() {
	spool_sql "$conf" "SELECT id, uid FROM files ORDER BY id" >> "$T/records"
}

lines 1 100 > "$dir/a.log"
: > "$dir/b.log"
rids_of "$dir/a.log" > "$T/want"
agent_once "$conf" || fail "the first run failed (agent.log)"
records
assert_eq 2 "$(spool_sql "$conf" "SELECT count(*) FROM files")" "records after the first run"
assert_eq 0 "$(spool_sql "$conf" "SELECT fp_len FROM files WHERE path = ?" "$dir/b.log")" \
	"b.log's record read nothing"

head -n 50 "$dir/a.log" > "$dir/b.log"
: > "$dir/a.log"
lines 101 30 > "$dir/a.log"
rids_of "$dir/a.log" >> "$T/want"
agent_once "$conf" || fail "the second run failed (agent.log)"
records
agent_once "$conf" || fail "the third run failed (agent.log)"
records

# b.log's first record was deleted (its file judged a copy): a new one, under a new id.
assert_eq 0 "$(spool_sql "$conf" "SELECT count(*) FROM files WHERE uid = ?" \
	"$(sed -n 2p "$T/records" | cut -f2)")" "b.log's first record"
dup=$(sort -u "$T/records" | cut -f1 | uniq -d | tr '\n' ' ')
assert_eq "" "$dup" "file record ids given to two records (id: $(sort -u "$T/records" | tr '\n\t' '; '))"

sort -n "$T/want" > "$T/want.sorted"
cut -f4 "$T/accepted.tsv" | sort -n > "$T/got"
diff -u "$T/want.sorted" "$T/got" > "$T/diff" ||
	fail "accepted values differ from the lines written (- lost, + twice): $(grep -c '^-[0-9]' "$T/diff") lost, $(grep -c '^+[0-9]' "$T/diff") twice"
echo "t_file_ids: no file record id given twice across a deleted newest record; every line billed once"

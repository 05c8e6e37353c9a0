#!/usr/bin/env bash
# `logmeter spool recover` on a sound spool (`spool check` says OK): it says so and leaves the
# spool as it is (the same file, the same bytes, no copy named corrupt); with --force it rebuilds
# it all the same and keeps the old file under a name that does not call it corrupt
# (spool.db.before-recover-<unix time>), every event and file record kept. Before, recover
# rebuilt a sound spool and kept the old file as spool.db.corrupt-<unix time>, as if it had been
# damaged (docs/spool.md). `--force` with another spool command is a usage error.
. "$(dirname "$0")/lib.sh"
lm_init spool_recover_sound
double_start

mkdir -p "$T/logs"
head -n 300 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$T/logs/access.log"
agent_once "$conf" || fail "run --once exited $?"
state=$T/state db=$T/state/spool.db
"$LOGMETER" spool check -c "$conf" > "$T/check.out" 2>&1 || fail "test bug: the spool is not sound: $(cat "$T/check.out")"
grep -q ": OK (" "$T/check.out" || fail "test bug: spool check did not say OK: $(cat "$T/check.out")"
"$LOGMETER" spool export -c "$conf" | LC_ALL=C sort > "$T/export_before"
[ -s "$T/export_before" ] || fail "test bug: no events in the spool"
# The records as the spool holds them (sqlite3, not logmeter).
files_sql="SELECT id, uid, source, dev, ino, \"offset\", size, state, path FROM files ORDER BY id"
sqlite3 "$db" "$files_sql" > "$T/files_before"
cp "$db" "$T/spool.copy"
ino=$(stat -c %i "$db")

note "recover on a sound spool: said, and nothing done"
rc=0
"$LOGMETER" spool recover -c "$conf" > "$T/recover1.out" 2>&1 || rc=$?
assert_eq 0 "$rc" "exit status of recover on a sound spool ($(cat "$T/recover1.out"))"
grep -qF "spool $db is sound (\`logmeter spool check\` finds no problem): nothing to recover, left as it is" "$T/recover1.out" ||
	fail "recover did not say the spool is sound: $(cat "$T/recover1.out")"
assert_eq "" "$(ls "$state" | grep -e corrupt -e before-recover -e spool.recover || true)" "files recover left"
assert_eq "$ino" "$(stat -c %i "$db")" "inode of spool.db"
cmp -s "$db" "$T/spool.copy" || fail "recover changed the sound spool.db"

note "recover --force on a sound spool: rebuilt, the old file kept under a neutral name"
rc=0
"$LOGMETER" spool recover --force -c "$conf" > "$T/recover2.out" 2>&1 || rc=$?
assert_eq 0 "$rc" "exit status of recover --force ($(cat "$T/recover2.out"))"
assert_eq "" "$(ls "$state" | grep corrupt || true)" "files named corrupt"
kept=$(ls "$state" | grep -E '^spool\.db\.before-recover-[0-9]+$') || fail "the old spool was not kept: $(ls "$state")"
grep -qF "the old database is kept as $state/$kept" "$T/recover2.out" ||
	fail "recover did not name the kept file: $(cat "$T/recover2.out")"
cmp -s "$state/$kept" "$T/spool.copy" || fail "the kept file is not the old spool.db"
[ "$(stat -c %i "$db")" != "$ino" ] || fail "spool.db was not rebuilt"
"$LOGMETER" spool check -c "$conf" > "$T/check2.out" 2>&1 || fail "spool check after recover --force: $(cat "$T/check2.out")"
"$LOGMETER" spool export -c "$conf" | LC_ALL=C sort > "$T/export_after"
cmp -s "$T/export_before" "$T/export_after" || fail "recover --force changed the events: $(diff "$T/export_before" "$T/export_after" | head -5)"
sqlite3 "$db" "$files_sql" > "$T/files_after"
cmp -s "$T/files_before" "$T/files_after" || fail "recover --force changed the file records: $(diff "$T/files_before" "$T/files_after" | head -5)"

note "--force is for recover only"
rc=0
"$LOGMETER" spool check --force -c "$conf" > "$T/check3.out" 2>&1 || rc=$?
assert_eq 2 "$rc" "exit status of spool check --force ($(cat "$T/check3.out"))"
echo "t_spool_recover_sound: a sound spool left as it is; rebuilt with --force, the old file kept as $kept"

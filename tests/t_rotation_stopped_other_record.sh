#!/usr/bin/env bash
# Two rotations while logmeter is stopped, the file after the one source live was reading held
# by a record of another source (source live on app.log, source old on app.log.1, literally),
# still reading: at start, old's file is found renamed to app.log.2 and read on by old from its
# checkpoint. live's record comes first (records are recovered in source order): live's file is
# found renamed to app.log.1, and the look for rotations never read beside it meets app.log.2
# before old has opened it again. It is old's file, its lines after the checkpoint old's to read:
# not judged a rotation of live never read (counted in status, rotated_stopped, and logged as
# read to its end as a new file though nothing was opened), nor noted as a file live's glob
# matches too (it does not: `shared` counts app.log.1 only, which old's glob matches and live
# reads) (docs/tailing.md). Every line billed once: app.log.1 and app.log under live, app.log.2
# under old (rids read back with python, identifiers from tests/identifiers.py under each
# file's record).
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_other_record
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0
: >"$T/expected_ids"
: >"$T/expected_rids"

L=$T/logs/app.log
mkdir -p "$T/logs"
C=$T/logmeter.conf
write_config "$C"
rule_conf live "$L" >>"$C"
rule_conf old "$L.1" >>"$C"

put_rids "$L" 20
put_rids "$L.1" 8
agent_once "$C" || fail "first run --once exited $?"
[ "$(spool_sql "$C" "SELECT count(*) FROM files WHERE state = 'reading'")" = 2 ] ||
	fail "test bug: not both records reading: $(spool_sql "$C" "SELECT source, path, state FROM files")"
put_rids "$L" 5
put_rids "$L.1" 4
# Changed since live's record was last written, as a rotation never read would be: its mtime
# set to that time, not left to the seconds the writes above happened to fall in.
upd=$(spool_sql "$C" "SELECT updated FROM files WHERE source = 'live'")
[ -n "$upd" ] || fail "test bug: no record of live"
touch -d "@$upd" "$L.1"
mv "$L.1" "$L.2"
mv "$L" "$L.1"
put_rids "$L" 7
agent_once "$C" || fail "second run --once exited $?"
assert_left_to_other "$C" "$L.2"
expect_file "$C" live "$L.1" "$L"
expect_file "$C" old "$L.2"
check_accepted

echo "t_rotation_stopped_other_record: $written lines billed once; a rotation another source's record still reads left to it, not counted"

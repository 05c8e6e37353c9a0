#!/usr/bin/env bash
# Two rotations while logmeter is stopped, with the rotated names read by another source (source
# live on app.log, source old on app.log.*): the file live's record was reading is found renamed
# (app.log.2) and read on by live; the file that came after it, app.log.1, is held by old's tail
# (its glob matches it) and left to it: not judged an unread rotation of live's, not counted in
# status (rotated_stopped) nor noted as a file live's glob matches too (it does not: `shared`
# counts app.log.2 only, which both globs match), as unread_rotations judges only files no
# source's tail holds (docs/tailing.md). Every line
# billed once: app.log.2 under live (its rids read back with python, identifiers from
# tests/identifiers.py under live's record), app.log.1 under old, app.log under live.
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_other
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
rule_conf old "$L.*" >>"$C"

put_rids "$L" 20
agent_once "$C" || fail "first run --once exited $?"
put_rids "$L" 5
mv "$L" "$L.1"
put_rids "$L" 10
mv "$L.1" "$L.2"
mv "$L" "$L.1"
put_rids "$L" 7
agent_once "$C" || fail "second run --once exited $?"
assert_left_to_other "$C" "$L.1"
expect_file "$C" live "$L.2" "$L"
expect_file "$C" old "$L.1"
check_accepted

echo "t_rotation_stopped_other: $written lines billed once; a rotation another source's tail holds left to it, not counted"

#!/usr/bin/env bash
# Two rename rotations while logmeter is stopped (a long outage, a host off over two daily
# rotations): app.log is renamed to app.log.1, a new app.log written, then app.log.1 renamed to
# app.log.2 and app.log to app.log.1, and a third app.log written. The glob matches only
# app.log. At start the record of the first file is found by inode as app.log.2 and read on; the
# middle file, app.log.1, was never seen: it is found beside it, named after the rotated name,
# written since logmeter stopped, without a record, and read to its end with a warning. Every rid
# is accepted once. Each file starts with the same banner line, as some writers make them: a
# first line found in the renamed file alone does not make app.log.1 a piece of it
# (t_rotation_stopped_pieces.sh), its second line is not there.
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rs"
write_config "$T/logmeter.conf"
rule_conf rs "$T/rs/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/rs/app.log
writer_init

echo "=== log opened ===" > "$L"
put_rids "$L" 10
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

put_rids "$L" 10
mv "$L" "$L.1" # rotation 1
echo "=== log opened ===" > "$L"
put_rids "$L" 10
mv "$L.1" "$L.2" # rotation 2
mv "$L" "$L.1"
echo "=== log opened ===" > "$L"
put_rids "$L" 10

agent_start "$conf"
wait_until 60 delivered || fail "after two rotations while stopped: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rs "$L" "$L.1" "$L.2"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq 1 "$(grep -c "rs/app.log.1: rotated from $L while logmeter was stopped, and never read" "$T/agent.log")" "the unread rotated file announced"
assert_eq "1 $L.1" "$(tailing_warning "$conf" rotated_stopped)" "status --json: files rotated while stopped"
"$LOGMETER" status -c "$conf" > "$T/status.txt" || true
grep -q "^tailing: 0 copies .*, 1 files rotated while logmeter was stopped" "$T/status.txt" ||
	fail "status does not count the rotated file: $(grep '^tailing' "$T/status.txt")"
grep -qF "  rotated_stopped: the last at " "$T/status.txt" || fail "status does not name the rotated file"
echo "t_rotation_stopped: $written rids each accepted once through two rotations while logmeter was stopped"

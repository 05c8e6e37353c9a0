#!/usr/bin/env bash
# One rename rotation while logmeter is stopped, with files beside the log named after it that no
# rotation made: app.log.tail (`tail` of the log, an admin's copy of its last lines) and
# app.log-20261207 (`sort` of the rotated file: a name logrotate could give, a content made of
# lines already in the rotated file). Neither is taken for a rotation logmeter never saw: both
# are left unread with a warning and counted in `status`, and every rid is accepted exactly once
# (the values accepted are the rids of app.log.1 and app.log, computed by awk from the files).
# A later start does not announce the rotation again.
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_pieces
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rs"
write_config "$T/logmeter.conf"
rule_conf rs "$T/rs/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/rs/app.log
writer_init

put_rids "$L" 20
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

put_rids "$L" 10
tail -n 15 "$L" > "$L.tail" # 5 lines read, 10 not yet: all of them in the rotated file
mv "$L" "$L.1"              # the rotation
put_rids "$L" 10
sort "$L.1" > "$L-20261207"

agent_once "$conf" || fail "run --once failed after the rotation"
assert_eq "0 -" "$(tailing_warning "$conf" rotated_stopped)" "status --json: files rotated while stopped"
assert_eq 2 "$(tailing_warning "$conf" not_rotations | cut -d' ' -f1)" "status --json: files left unread"
"$LOGMETER" status -c "$conf" > "$T/status.txt" || true
grep -q "^tailing: .*, 2 files beside a rotated one left unread (not rotations)" "$T/status.txt" ||
	fail "status does not count the files left unread: $(grep '^tailing' "$T/status.txt")"
agent_once "$conf" || fail "the second run --once failed"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rs "$L" "$L.1"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
# Independent of the agent: every rid the two log files hold, by awk.
assert_eq "$(LC_ALL=C awk '{ sub(/.* rid=/, ""); print }' "$L.1" "$L" | sort -n | tr '\n' ' ')" \
	"$(sort -n "$T/expected_rids" | tr '\n' ' ')" "rids of app.log.1 and app.log"
check_accepted
for f in "$L.tail" "$L-20261207"; do
	assert_eq 1 "$(grep -cF "$f: beside $L.1, rotated while logmeter was stopped, but not read" "$T/agent.log")" \
		"$(basename "$f") left unread with a warning"
done
grep -qF "$L.tail: beside $L.1, rotated while logmeter was stopped, but not read: its name is not one logrotate gives" "$T/agent.log" ||
	fail "the warning about app.log.tail does not say why"
grep -qF "$L-20261207: beside $L.1, rotated while logmeter was stopped, but not read: its first lines are lines of that file" "$T/agent.log" ||
	fail "the warning about app.log-20261207 does not say why"
assert_eq 0 "$(grep -c "rotated from $L while logmeter was stopped, and never read" "$T/agent.log")" \
	"no file read as a rotation never seen"
grep -qF "$L.1: rotated earlier and not released yet: read to its end" "$T/agent.log" ||
	fail "the second start does not say the rotated file is read on"
assert_eq 1 "$(grep -c "app.log.1: rotated while logmeter was stopped: read to its end" "$T/agent.log")" \
	"the rotation announced once, not again at the next start"
echo "t_rotation_stopped_pieces: $written rids each accepted once; app.log.tail and a sorted copy left unread"

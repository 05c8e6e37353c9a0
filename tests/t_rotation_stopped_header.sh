#!/usr/bin/env bash
# Two rename rotations while logmeter is stopped, of a log whose every file starts with the same
# two header lines (W3C's extended log format: `#Version` and `#Fields`, as IIS, Squid and others
# write it). app.log is renamed to app.log.1, a new app.log written, then app.log.1 renamed to
# app.log.2 and app.log to app.log.1, and a third app.log written; the glob matches only app.log.
# The middle file, app.log.1, was never seen: a rotation never read, to be read to its end, though
# its first two lines (the header) are lines of the renamed app.log.2 too. A piece of app.log.2
# beside it under a name logrotate could give (its header and its last lines: app.log.7) is still
# left unread. Every rid is accepted once (the rids of the three log files, by awk).
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_header
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rs"
write_config "$T/logmeter.conf"
rule_conf rs "$T/rs/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/rs/app.log
writer_init
header() {
	printf '#Version: 1.0\n#Fields: c-ip - - date request status bytes referer agent rid\n' > "$1"
}

header "$L"
put_rids "$L" 10
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

put_rids "$L" 10
mv "$L" "$L.1" # rotation 1
header "$L"
put_rids "$L" 10
mv "$L.1" "$L.2" # rotation 2
mv "$L" "$L.1"
header "$L"
put_rids "$L" 10
{ head -n 2 "$L.2"; tail -n 4 "$L.2"; } > "$L.7"

agent_start "$conf"
wait_until 60 delivered || fail "after two rotations while stopped: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rs "$L" "$L.1" "$L.2"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
assert_eq "$(LC_ALL=C awk '/ rid=/ { sub(/.* rid=/, ""); print }' "$L.2" "$L.1" "$L" | sort -n | tr '\n' ' ')" \
	"$(sort -n "$T/expected_rids" | tr '\n' ' ')" "rids of app.log.2, app.log.1 and app.log"
check_accepted
assert_eq 1 "$(grep -c "rs/app.log.1: rotated from $L while logmeter was stopped, and never read" "$T/agent.log")" \
	"the unread rotated file announced"
grep -qF "$L.7: beside $L.2, rotated while logmeter was stopped, but not read: its first lines are lines of that file" "$T/agent.log" ||
	fail "the piece app.log.7 not left unread: $(grep -F "$L.7" "$T/agent.log" | tail -2)"
echo "t_rotation_stopped_header: $written rids each accepted once through two rotations of a log with a two-line header while logmeter was stopped"

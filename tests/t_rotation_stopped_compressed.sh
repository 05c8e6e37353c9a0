#!/usr/bin/env bash
# Two rename rotations while logmeter is stopped under logrotate's `compress` and
# `delaycompress` (a host off over two daily rotations): app.log, which logmeter read, is renamed
# to app.log.1, a new app.log written; at the second rotation app.log.1 is renamed to app.log.2
# and app.log to app.log.1, a third app.log written, and app.log.2 compressed (app.log.2.gz,
# excluded by the glob). The file logmeter knew is no longer there to be read on (its record is gone:
# nothing was written to it after its checkpoint here), but the middle file, app.log.1, was never
# read: it is a rotation logmeter never saw, beside the record's path, and is read to its end
# with a warning, not lost without a word. An admin's app.log.tail made after the compression is
# left unread: on ext4 it gets the freed inode of the file logmeter read, and was then taken for
# that file, renamed, and read from its start (its lines billed twice). Every rid of app.log.1 and
# app.log is accepted once (rids by awk).
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_compressed
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rs"
write_config "$T/logmeter.conf"
rule_conf rs "$T/rs/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/rs/app.log
writer_init

put_rids "$L" 10
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

mv "$L" "$L.1" # rotation 1 (delaycompress: not compressed yet)
put_rids "$L" 10
# Rotation 2, in logrotate's order: rename, create the new log, then compress the file logmeter
# read (so the new app.log cannot get its inode).
mv "$L.1" "$L.2"
mv "$L" "$L.1"
put_rids "$L" 10
gzip "$L.2"
tail -n 3 "$L.1" > "$L.tail"

agent_start "$conf"
wait_until 60 delivered || fail "after two rotations while stopped: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rs "$L" "$L.1"
assert_eq 20 "$(wc -l < "$T/expected_rids")" "rids in app.log.1 and app.log"
assert_eq "$( (seq 1 10; LC_ALL=C awk '{ sub(/.* rid=/, ""); print }' "$L.1" "$L") | sort -n | tr '\n' ' ')" \
	"$(cut -f4 "$T/accepted.tsv" | sort -n | tr '\n' ' ')" "rids accepted"
check_accepted_ids() { # the identifiers of app.log.1 and app.log among those accepted, once each
	sort "$T/expected_ids" > "$T/exp_ids.sorted"
	cut -f1 "$T/accepted.tsv" | sort | comm -12 - "$T/exp_ids.sorted" > "$T/found_ids"
	assert_eq "$(wc -l < "$T/exp_ids.sorted")" "$(wc -l < "$T/found_ids")" "identifiers of app.log.1 and app.log accepted"
	[ -z "$(cut -f1 "$T/accepted.tsv" | sort | uniq -d)" ] || fail "an identifier accepted twice"
}
check_accepted_ids
assert_eq 1 "$(grep -c "rs/app.log.1: rotated from $L while logmeter was stopped, and never read" "$T/agent.log")" \
	"the unread rotated file announced"
grep -qF "$L.tail: beside $L, " "$T/agent.log" || fail "app.log.tail not left unread with a warning"
echo "t_rotation_stopped_compressed: $written rids each accepted once through two rotations, the second compressing the file logmeter read, while logmeter was stopped"

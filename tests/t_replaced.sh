#!/usr/bin/env bash
# A log edited in place by a tool that writes a new file and renames it over the old one (sed -i,
# an editor, a redaction script): the name leads to a new inode that starts with what logmeter
# already read. Its lines are not billed again; the lines appended after the edit are read once.
#   1. a no-op `sed -i`: the new file holds every byte read, unchanged
#   2. a redaction (`sed -i` replaces a client address in a line already read): the bytes read are
#      now shorter, and the new file goes on after where they end now
#   3. the same no-op edit while logmeter is stopped
. "$(dirname "$0")/lib.sh"
lm_init replaced
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rp"
write_config "$T/logmeter.conf"
rule_conf rp "$T/rp/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/rp/app.log
writer_init
# has_record: the file now under the name has a record.
has_record() {
	[ -n "$(uid_of "$conf" rp "$L")" ]
}
size_of() {
	stat -c %s "$1"
}
: > "$T/expected_ids"
: > "$T/expected_rids"

# appended_after_edit BEFORE: ten lines appended to the file the edit left (as BEFORE, a copy made
# right after the edit, holds it), read; they are expected under the new record, from the end of
# BEFORE on.
appended_after_edit() {
	put_rids "$L" 10
	wait_until 60 delivered || fail "after an edit: $(accepted_count) of $written"
	wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
	cp "$L" "$T/after"
	expect_from rp "$(uid_of "$conf" rp "$L")" "$T/after" "$(size_of "$1")"
}

put_rids "$L" 40
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
cp "$L" "$T/v1"
expect_from rp "$(uid_of "$conf" rp "$L")" "$T/v1" 0

note "1: a no-op sed -i"
sed -i 's/^$//' "$L"
cp "$L" "$T/v2"
wait_until 60 has_record || fail "the replaced file was not seen"
appended_after_edit "$T/v2"

note "2: a redaction that shortens a line already read"
sed -i '5s/^[0-9.]* /REDACTED /' "$L"
cp "$L" "$T/v3" # as the agent finds it: the lines read, edited
wait_until 60 has_record || fail "the redacted file was not seen"
appended_after_edit "$T/v3"

note "3: a no-op sed -i while logmeter is stopped, lines appended after it"
agent_stop || fail "agent did not stop cleanly"
sed -i 's/^$//' "$L"
cp "$L" "$T/v4"
put_rids "$L" 10
agent_start "$conf"
wait_until 60 delivered || fail "after the edit while stopped: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"
expect_from rp "$(uid_of "$conf" rp "$L")" "$L" "$(size_of "$T/v4")"

assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids expected"
check_accepted
assert_eq 3 "$(grep -c 'replaced under its name by another file' "$T/agent.log")" "replacements announced"
assert_eq 0 "$(status_sum "$conf" 14)" "checkpoint resets"
echo "t_replaced: $written rids each accepted once through three edits that replaced the file"

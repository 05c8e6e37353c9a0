#!/usr/bin/env bash
# copytruncate of a file that logmeter last saw empty (the state of every log right after a
# copytruncate): what was written before the copy is only in the copy, which the glob does not
# match and no record describes by content, since logmeter read nothing of the file. It must
# still be read once, from the copy, and nothing twice:
#   1. the file empty at the first start, then written, copied and truncated while logmeter is
#      stopped
#   2. the agent up to date after a copytruncate (its file empty), then frozen (SIGSTOP) while
#      the file is written, rotated (app.log.1 to app.log.2), copied and truncated
. "$(dirname "$0")/lib.sh"
lm_init copytruncate_empty
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/ce"
write_config "$T/logmeter.conf"
rule_conf ce "$T/ce/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf

L=$T/ce/app.log
: > "$L"
exec 7>>"$L" # the writer: O_APPEND, never reopened
writer_init
copytruncate() {
	rotate_numbered "$L"
	cp "$L" "$L.1"
	truncate -s 0 "$L"
}

note "1: empty at start, then written, copied and truncated while logmeter is stopped"
agent_start "$conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 grep -q "ce/app.log: tailing" "$T/agent.log" || fail "the empty file was not seen"
agent_stop || fail "agent did not stop cleanly"
writer_put 30
copytruncate
writer_put 20
agent_start "$conf" 7>&- 8>&-
wait_until 60 delivered || fail "after copytruncate 1: $(accepted_count) of $written"

note "2: the agent frozen while a file it last saw empty is written, copied and truncated"
writer_put 10
wait_until 60 delivered || fail "before copytruncate 2: $(accepted_count) of $written"
copytruncate
# The agent sees the truncation (the rest read from the copy) and the file empty again.
wait_until 60 eval '[ "$(grep -c "truncated after a copy" "$T/agent.log")" = 2 ]' ||
	fail "the truncation was not seen"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
kill -STOP "$AGENT_PID"
wait_until 30 agent_frozen || fail "the agent did not stop"
writer_put 40
copytruncate
writer_put 15
kill -CONT "$AGENT_PID"
wait_until 60 delivered || fail "after copytruncate 2: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$L" "$L".*; do expect_file "$conf" ce "$f"; done
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq 2 "$(grep -c 'was empty when logmeter last looked' "$T/agent.log")" "copies of unread files announced"
# status counts them and names the last copy (the last warning's), as the last agent saw them.
last_copy=$(grep 'was empty when logmeter last looked' "$T/agent.log" | tail -n 1 | sed 's/.*last looked, and \(.*\) ([0-9]* bytes, written since).*/\1/')
assert_eq "2 $last_copy" "$(tailing_warning "$conf" empty_copies)" "status --json: copies of files last seen empty"
assert_eq 0 "$(status_sum "$conf" 14)" "checkpoint resets"
echo "t_copytruncate_empty: $written rids each accepted once through copytruncates of files last seen empty"

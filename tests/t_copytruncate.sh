#!/usr/bin/env bash
# copytruncate (logrotate's method for writers that never reopen their log): the file is copied
# to app.log.1 and truncated in place, the writer appending with O_APPEND all along. The glob
# matches only the live name, as docs/tailing.md requires for this method.
#   1. the agent up to date when the copy is made: nothing to take from the copy
#   2. the agent frozen (SIGSTOP) with lines not read yet when the copy is made, and lines written
#      between the copy and the truncation: the unread lines are read from the copy, under the
#      identifiers they had in the original; the lines written between copy and truncate are the
#      method's documented loss (they are in neither file)
#   3. the same while logmeter is stopped
# Every other rid is accepted once; none of the lost window is.
. "$(dirname "$0")/lib.sh"
lm_init copytruncate
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/ct"
write_config "$T/logmeter.conf"
rule_conf ct "$T/ct/app.log" >> "$T/logmeter.conf"

L=$T/ct/app.log
exec 7>>"$L" # the writer: O_APPEND, never reopened
writer_init
copytruncate() {
	rotate_numbered "$L"
	cp "$L" "$L.1"
	writer_window "$1"
	truncate -s 0 "$L"
}

writer_put 40
agent_start "$T/logmeter.conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"

copytruncate_while_running
grep -q "ct/app.log: truncated in place: reading the [0-9]* bytes after its checkpoint [0-9]* from its copy $L.1" "$T/agent.log" ||
	fail "the copy was not read"

note "3: logmeter stopped"
agent_stop || fail "agent did not stop cleanly"
writer_put 25
copytruncate 7
writer_put 10
agent_start "$T/logmeter.conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 delivered || fail "after copytruncate 3: $(accepted_count) of $written"
sleep 1 # a window line delivered late would show now
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$L" "$L".*; do expect_file "$T/logmeter.conf" ct "$f"; done
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
# The window: written, in no file, not accepted.
assert_eq 12 "$lost" "window lines written"
assert_eq 12 "$(wc -l < "$T/window_rids")" "window rids"
assert_eq 0 "$(cut -f4 "$T/accepted.tsv" | grep -Fxc -f "$T/window_rids")" "window rids accepted"

# Counters: a copytruncate is no checkpoint reset; each copy's record is drained, the live one
# reading.
assert_eq 0 "$(status_sum "$T/logmeter.conf" 14)" "checkpoint resets"
assert_eq "$written" "$(status_sum "$T/logmeter.conf" 8)" "matched lines"
assert_eq 0 "$(status_sum "$T/logmeter.conf" 6)" "lag"
for f in "$L".*; do
	assert_eq drained "$(status_state "$T/logmeter.conf" ct "$f")" "state of $f"
done
assert_eq reading "$(status_state "$T/logmeter.conf" ct "$L")" "state of $L"
echo "t_copytruncate: $written rids each accepted once through 3 copytruncates; the $lost written between copy and truncate lost, as documented"

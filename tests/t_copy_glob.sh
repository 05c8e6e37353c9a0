#!/usr/bin/env bash
# copytruncate with dateext under a glob that matches the copies too (`app.log*`): logrotate copies
# app.log to app.log-DATE and truncates app.log, the writer appending with O_APPEND all along. A
# file that holds what another file held up to its checkpoint is that file's copy, not a new file:
# its lines are billed once, those logmeter had not read yet from the copy, under the identifiers
# they had in the original. The cases of t_copytruncate.sh (the agent up to date, frozen with
# lines unread and lines written between copy and truncate, stopped), and a copy that appears
# empty and is filled a moment later (cp is not atomic) after which the agent reads more lines
# from the original than the copy holds.
. "$(dirname "$0")/lib.sh"
lm_init copy_glob
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/cg"
write_config "$T/logmeter.conf"
rule_conf cg "$T/cg/app.log*" >> "$T/logmeter.conf"
conf=$T/logmeter.conf

L=$T/cg/app.log
exec 7>>"$L" # the writer: O_APPEND, never reopened
writer_init
day=1
# copytruncate WINDOW [slow]: logrotate's copytruncate with dateext. "slow": the copy appears
# empty first and is filled once the agent has seen it; then WINDOW lines are written and read
# from the original before the truncation, so the copy holds less than the agent read.
copytruncate() {
	local copy
	copy=$L-2025010$day
	day=$((day + 1))
	if [ "${2:-}" = slow ]; then
		: > "$copy"
		wait_until 30 grep -q "$copy: tailing" "$T/agent.log" || fail "the empty copy $copy was not seen"
		cat "$L" >> "$copy"
		wait_until 30 grep -q "$copy: holds what" "$T/agent.log" || fail "$copy not taken for a copy"
		writer_put "$1"
		wait_until 60 delivered || fail "lines after the copy not read: $(accepted_count) of $written"
		# All of it read from the original, under its uid; the last lines are in no file
		# after the truncation.
		cp "$L" "$T/read_through"
		read_through_uid=$(uid_of "$conf" cg "$L")
		read_through_copy=$copy
	else
		cat "$L" >> "$copy"
		writer_window "$1"
	fi
	truncate -s 0 "$L"
}

writer_put 40
agent_start "$conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"

copytruncate_while_running

note "3: a copy that appears empty and is filled a moment later"
writer_put 15
copytruncate 3 slow
writer_put 10
wait_until 60 delivered || fail "after copytruncate 3: $(accepted_count) of $written"

note "4: logmeter stopped"
agent_stop || fail "agent did not stop cleanly"
writer_put 25
copytruncate 7
writer_put 10
agent_start "$conf" 7>&- 8>&- # not the writer's descriptors
wait_until 60 delivered || fail "after copytruncate 4: $(accepted_count) of $written"
# Every file read to its end, then a moment for a copy billed a second time to show.
wait_until 60 eval '[ "$(status_sum "$conf" 6)" = 0 ]' || fail "the agent did not catch up"
sleep 1
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$L" "$L"-*; do
	[ "$f" = "$read_through_copy" ] || expect_file "$conf" cg "$f"
done
expect_from cg "$read_through_uid" "$T/read_through" 0
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files and read before a truncation"
check_accepted
assert_eq 12 "$lost" "window lines written"
assert_eq 0 "$(cut -f4 "$T/accepted.tsv" | grep -Fxc -f "$T/window_rids")" "window rids accepted"
# Each copy is its original's record, read to its end; no checkpoint reset.
assert_eq 0 "$(status_sum "$conf" 14)" "checkpoint resets"
assert_eq "$written" "$(status_sum "$conf" 8)" "matched lines"
# Each copy made while the agent ran was taken for a copy: before its original's truncation was
# seen ("holds what"), or after it, as the place of the original's rest ("from its copy"); which
# comes first is the scheduler's choice on a busy machine.
for d in 1 2 3; do
	grep -qF -e "$L-2025010$d: holds what" -e "from its copy $L-2025010$d" "$T/agent.log" ||
		fail "copy $L-2025010$d was not announced as a copy"
done
echo "t_copy_glob: $written rids each accepted once through 4 copytruncates whose copies the glob matches"

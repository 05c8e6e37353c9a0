#!/usr/bin/env bash
# A file overwritten with `>` between appends (a script that rewrites its log now and then). The
# lines overwritten before the agent read them are lost to any tailer; every line it does read must
# be billed once, so the fingerprint of a file and the lines billed under it must come from the same
# bytes. The race is made deterministic with a stop point (LOGMETER_STOP_AT, docs/crash-testing.md):
# the agent stops right after a stale checkpoint gave the file a new record, the file is overwritten
# once more, and the agent goes on. Then the same script runs freely against the agent a few times.
. "$(dirname "$0")/lib.sh"
lm_init overwrite
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/ow"
L=$T/ow/app.log
write_config "$T/logmeter.conf"
rule_conf ow "$L" >> "$T/logmeter.conf"
conf=$T/logmeter.conf

# The process state of the agent (R, S, T, ...), from /proc.
agent_state() {
	awk '{print $3}' "/proc/$AGENT_PID/stat" 2>/dev/null
}
# Every thread stopped (tail_lib.sh).
agent_stopped() {
	agent_frozen
}
# The record being read has no lag: the agent read the file to its end.
caught_up() {
	[ "$(status_sum "$conf" 6 '$3 == "reading"')" = 0 ]
}
# final_billed BEFORE: every rid in $T/last_rids was accepted after the first BEFORE events.
final_billed() {
	tail -n +$(($1 + 1)) "$T/accepted.tsv" | cut -f4 | sort > "$T/run_rids"
	[ -z "$(comm -23 "$T/last_rids" "$T/run_rids")" ]
}
accepted_rids() {
	cut -f4 "$T/accepted.tsv" | sort -n
}

lines 1 10 > "$L"
cp "$L" "$T/v1"
LOGMETER_STOP_AT=tail_reset:1 agent_start "$conf"
wait_until 60 accepted_at_least 10 || fail "the first 10 lines were not delivered: $(accepted_count)"

note "overwritten while the agent builds the new record"
# The agent is frozen while the shell truncates and writes, so that it finds the new content whole.
# kill returns before the agent stops (one thread takes the signal and stops the others once it is
# scheduled): wait for every thread, or the agent may read the new content and stop itself at its
# stop point before the SIGCONT below, which would then wake it from there.
kill -STOP "$AGENT_PID"
wait_until 120 agent_stopped || fail "the agent did not stop for the overwrite (state $(agent_state))"
lines 11 3 > "$L" # shorter than the checkpoint: a new record at the next read
kill -CONT "$AGENT_PID"
wait_until 60 grep -q 'stop point tail_reset reached (1)' "$T/agent.log" ||
	fail "the agent did not reach its stop point"
# A busy machine may take long to schedule the stop; each thread's state says why if it never comes.
wait_until 120 agent_stopped ||
	fail "the agent did not stop (state $(agent_state); threads: $(cat /proc/"$AGENT_PID"/task/*/stat 2>/dev/null | awk '{ printf "%s%s ", $2, $3 }'))"
# Lines 11 to 13 are overwritten before the agent read any of them: lost, as with any tailer.
lines 14 2 > "$L"
lines 16 2 >> "$L"
kill -CONT "$AGENT_PID"
lines 18 3 >> "$L"
wait_until 60 accepted_at_least 17 || fail "not every line of the file was delivered: $(accepted_count) of 17"
# A line billed twice would be the 18th event: wait for the agent to have read the file to its end.
wait_until 30 caught_up || fail "the agent did not catch up with the file"
sleep 1 # a second billing in flight would show now
{ seq 1 10; seq 14 20; } > "$T/want_rids"
accepted_rids > "$T/got_rids"
diff -u "$T/want_rids" "$T/got_rids" > "$T/rids.diff" ||
	fail "accepted rids differ from the lines read (- lost, + twice or overwritten): $(grep '^[-+][0-9]' "$T/rids.diff" | tr '\n' ' ')"
# The identifiers: the first version under the first record's uid, the last one under the current
# record's, from the byte offsets awk finds in each (tests/identifiers.py).
uid1=$(spool_sql "$conf" "SELECT uid FROM files ORDER BY id LIMIT 1")
: > "$T/expected_ids"
: > "$T/expected_rids"
ids_for ow "$uid1" "$T/v1" >> "$T/expected_ids"
rids_of "$T/v1" >> "$T/expected_rids"
expect_file "$conf" ow "$L"
check_accepted
agent_stop || fail "the agent did not stop cleanly"

note "a script that appends and overwrites every tenth line, against the running agent"
rid=100
for run in 1 2 3; do
	: > "$T/expected_rids"
	rm -f "$L"
	agent_start "$conf"
	wait_until 60 grep -q 'started' "$T/agent.log" || fail "agent did not start"
	before=$(accepted_count)
	: > "$L"
	for i in $(seq 1 60); do
		if [ $((i % 10)) = 0 ]; then
			lines "$rid" 1 > "$L"
		else
			lines "$rid" 1 >> "$L"
		fi
		rid=$((rid + 1))
	done
	# What the file holds at the end is billed in full.
	rids_of "$L" | sort > "$T/last_rids"
	wait_until 60 final_billed "$before" ||
		fail "run $run: lines of the final file not billed: $(comm -23 "$T/last_rids" "$T/run_rids" | tr '\n' ' ')"
	wait_until 30 caught_up || fail "run $run: the agent did not catch up"
	sleep 1 # a line billed twice would arrive now
	agent_stop || fail "run $run: the agent did not stop cleanly"
	tail -n +$((before + 1)) "$T/accepted.tsv" | cut -f4 | sort -n | uniq -d > "$T/twice"
	[ ! -s "$T/twice" ] || fail "run $run: rids accepted twice: $(tr '\n' ' ' < "$T/twice")"
done
echo "t_overwrite: every line read billed once through overwrites, the one at a stop point included"

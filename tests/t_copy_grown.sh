#!/usr/bin/env bash
# A copy of a log under the glob, made before the original grew on, stays a copy: its lines are
# the original's and are billed once, under the original's identifiers.
#   1. `cp app.log copy.log` of a short file (less than the 1 KiB the fingerprint covers) under
#      `*.log`, then the original grows past 1 KiB: the copy no longer holds the fingerprinted
#      head, but it is still the first bytes of the original; the same while logmeter is stopped
#      (the copy made, the original grown, then logmeter started)
#   2. copytruncate under `app.log*` right after the previous one, the agent frozen (its file's
#      new record has read nothing yet): the copy appears before the agent read the lines it
#      holds, and the original grows (lines written between the copy and the truncation) before
#      it is truncated
# Every rid is accepted once; no copy is read as a new file.
. "$(dirname "$0")/lib.sh"
lm_init copy_grown
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/g" "$T/r"
write_config "$T/logmeter.conf"
rule_conf g "$T/g/*.log" >> "$T/logmeter.conf"
rule_conf r "$T/r/app.log*" >> "$T/logmeter.conf"
conf=$T/logmeter.conf

G=$T/g/app.log
R=$T/r/app.log
: > "$R"
exec 7>>"$G" # the writer: O_APPEND, never reopened
writer_init
writer_put 3
agent_start "$conf" 7>&- # not the writer's descriptor
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"

note "1: a copy of a short file, then the original grows past 1 KiB"
cp "$G" "$T/g/copy.log"
wait_until 60 grep -q "g/copy.log: holds what" "$T/agent.log" || fail "copy.log not taken for a copy"
writer_put 10
wait_until 60 delivered || fail "after the copy: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"
writer_put 2
cp "$G" "$T/g/copy2.log"
writer_put 5
# A start looks at every file of the glob again, the copies too.
agent_start "$conf" 7>&-
wait_until 60 delivered || fail "after the copy while stopped: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
grep -q "g/copy2.log: holds what" "$T/agent.log" || fail "copy2.log not taken for a copy"

note "2: copytruncate under app.log*, the agent frozen before it read what the copy holds"
exec 7>>"$R"
writer_put 20
wait_until 60 delivered || fail "r: first lines not delivered: $(accepted_count) of $written"
cp "$R" "$R.1"
truncate -s 0 "$R"
wait_until 60 grep -q "r/app.log: truncated after a copy" "$T/agent.log" || fail "the truncation was not seen"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
kill -STOP "$AGENT_PID"
wait_until 30 agent_frozen || fail "the agent did not stop"
writer_put 30
mv "$R.1" "$R.2"
cp "$R" "$R.1"
writer_put 5 # between the copy and the truncation: read from the original
kill -CONT "$AGENT_PID"
wait_until 60 delivered || fail "r: after the copy: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
cp "$R" "$T/read_through"
read_through_uid=$(uid_of "$conf" r "$R")
truncate -s 0 "$R"
writer_put 10
wait_until 60 delivered || fail "r: after the truncation: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-
# Once more: a start judges every file without a record again.
agent_start "$conf"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up after a restart"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" g "$G"
expect_file "$conf" r "$R" "$R.2"
expect_from r "$read_through_uid" "$T/read_through" 0
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files and read before a truncation"
check_accepted
assert_eq 0 "$(grep -c 'no longer holds what its original held' "$T/agent.log")" "copies read as new files"
assert_eq 0 "$(status_sum "$conf" 8 '$1 ~ /\/copy[0-9]*\.log$/')" "lines matched in the copies"
assert_eq 0 "$(status_sum "$conf" 14)" "checkpoint resets"
echo "t_copy_grown: $written rids each accepted once; the copies made before their originals grew were not read again"

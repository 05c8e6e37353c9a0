#!/usr/bin/env bash
# logrotate's `olddir`: rotated files are moved out of the log's directory (logrotate(8): into a
# directory relative to the log's, or absolute). Lines are written to app.log after logmeter's
# checkpoint, then logmeter is stopped and the log rotated into the olddir. Three sources:
#   rel: `olddir = old` (relative to the log's directory), one rotation (old/app.log.1): the
#        record's file is found there by its inode and read on from its checkpoint.
#   abs: `olddir = $T/archive` (absolute) with dateext, two rotations (app.log-20261206, the
#        record's file, then app.log-20261207, never seen): the first is read on, the second
#        found in the olddir by its name and read to its end.
#   none: no olddir set: the record's file cannot be found. Its lines after the checkpoint are
#        lost, and that is said: a warning naming the file, the offset they start at and the
#        option to set, and `status` counting the file gone.
# Then, with the agent running, rel's app.log is rotated into old/ again (a rename out of the
# watched directory) while its writer still writes to it: those lines are read too (inotify
# does not see old/, the rescan reads the file through the descriptor logmeter holds).
# Before, rel's and abs's lines after the checkpoint and abs's second rotation were lost: the
# files were looked for in the log's directory only. Every rid written (but none's lost ones) is
# accepted once (rids and offsets by awk and python over the files, identifiers by
# tests/identifiers.py).
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_olddir
. "$top_srcdir/tests/tail_lib.sh"
double_start

conf=$T/logmeter.conf
write_config "$conf"
mkdir -p "$T/rel/old" "$T/abs" "$T/archive" "$T/none/old"
rule_conf rel "$T/rel/app.log" "olddir = old" >> "$conf"
rule_conf abs "$T/abs/app.log" "olddir = $T/archive" >> "$conf"
rule_conf none "$T/none/app.log" >> "$conf"
R=$T/rel/app.log A=$T/abs/app.log X=$T/none/app.log
writer_init

for f in "$R" "$A" "$X"; do put_rids "$f" 10; done
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"
read_x=$(wc -c < "$X") # none's checkpoint: the whole file was read

note "rotated into the olddir while logmeter is stopped"
put_rids "$R" 10
mv "$R" "$T/rel/old/app.log.1"
put_rids "$R" 10

put_rids "$A" 10
mv "$A" "$T/archive/app.log-20261206"
put_rids "$A" 10
mv "$A" "$T/archive/app.log-20261207"
put_rids "$A" 10

written_before=$written
put_rids "$X" 10 # lost: no olddir set
lost_from=$written_before lost_to=$written
mv "$X" "$T/none/old/app.log.1"
put_rids "$X" 10

agent_start "$conf"
expected=$((written - (lost_to - lost_from)))
wait_until 60 accepted_at_least "$expected" || fail "after rotations while stopped: $(accepted_count) of $expected accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"

note "rotated into the olddir while logmeter runs, the writer still writing to the moved file"
exec 7>> "$R"
writer_put 10
wait_until 60 accepted_at_least $((expected + 10)) || fail "before the rotation: $(accepted_count) of $((expected + 10))"
mv "$T/rel/old/app.log.1" "$T/rel/old/app.log.2"
mv "$R" "$T/rel/old/app.log.1"
put_rids "$R" 5
writer_put 10 # to the moved file: the writer has not reopened its log yet
exec 7>&-
expected=$((expected + 25))
wait_until 60 accepted_at_least "$expected" || fail "after the rotation while running: $(accepted_count) of $expected accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rel "$R" "$T/rel/old/app.log.1" "$T/rel/old/app.log.2"
expect_file "$conf" abs "$A" "$T/archive/app.log-20261206" "$T/archive/app.log-20261207"
expect_file "$conf" none "$X"
# none's rotated file: only its lines before the checkpoint, under the record it was read with.
uid=$(uid_of "$conf" none "$T/none/old/app.log.1")
[ -n "$uid" ] || fail "no record of none's rotated file"
paste <(offsets_of "$T/none/old/app.log.1") <(rids_of "$T/none/old/app.log.1") > "$T/none_lines"
LC_ALL=C awk -v n="$read_x" '$1 < n { print $1 }' "$T/none_lines" |
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test none "$uid" rid_none >> "$T/expected_ids"
LC_ALL=C awk -v n="$read_x" '$1 < n { print $2 }' "$T/none_lines" >> "$T/expected_rids"
assert_eq "$(seq $((lost_from + 1)) "$lost_to" | tr '\n' ' ')" \
	"$(LC_ALL=C awk -v n="$read_x" '$1 >= n { print $2 }' "$T/none_lines" | tr '\n' ' ')" \
	"test bug: the lines written after none's checkpoint"
assert_eq "$expected" "$(wc -l < "$T/expected_rids")" "rids expected"
check_accepted

grep -qF "$T/abs/app.log: rotated while" "$T/agent.log" && fail "abs's rotation said rotated in place"
assert_eq 1 "$(grep -cF "$T/archive/app.log-20261207: rotated from $A while logmeter was stopped, and never read" "$T/agent.log")" \
	"abs's second rotation announced as never read"
assert_eq 1 "$(grep -cF "$X: gone while logmeter was stopped (deleted, or moved out of its directory): nothing after offset $read_x of it can be read; if logrotate moves rotated files to an olddir, set olddir in [source none]" "$T/agent.log")" \
	"none's loss announced with its offset and the option"
assert_eq 0 "$(grep -cF -e "$R: gone" -e "$A: gone" "$T/agent.log")" "rel's and abs's files not gone"
"$LOGMETER" status -c "$conf" --json > "$T/status.json" || true
assert_eq 1 "$("$PYTHON3" -c 'import json, sys; print(json.load(open(sys.argv[1]))["guard"]["gone_unread"])' "$T/status.json")" \
	"status --json: files gone at start"
"$LOGMETER" status -c "$conf" > "$T/status.txt" || true
grep -q "1 files were gone when the agent started" "$T/status.txt" ||
	fail "status does not count none's file gone: $(cat "$T/status.txt")"
echo "t_rotation_stopped_olddir: $expected rids each accepted once, $((lost_to - lost_from)) lost and counted where no olddir is set"

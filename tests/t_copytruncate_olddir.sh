#!/usr/bin/env bash
# copytruncate with logrotate's `olddir`: logrotate copies the log into the olddir and truncates
# the original in place (logrotate(8); with copytruncate the olddir may be on another device).
# What logmeter had not read before the truncation is only in the copy, in the olddir:
#   rel: `olddir = old` (relative to the log's directory), the writer appending with O_APPEND
#        all along: 1. the agent up to date when the copy is made; 2. the agent frozen (SIGSTOP)
#        with lines not read yet when the copy is made and lines written between the copy and
#        the truncation; 3. the same while logmeter is stopped.
#   abs: `olddir = $T/archive` (absolute; a tmpfs, so another device, when root can mount one),
#        copied and truncated while logmeter is stopped, lines not read yet in the copy.
#   emp: `olddir = old`, the log empty when logmeter stopped, then written, copied into the
#        olddir and truncated: the record read nothing, so only the copy's name tells it.
#   nodir: no olddir set, copied into old/ and truncated while logmeter is stopped: the copy is
#        not found, so the lines after the checkpoint are lost; the warning says so and names
#        the option, and `status` counts a checkpoint reset.
# Every rid is accepted once, the unread ones from the copies in the olddirs under the identifiers
# they had in the original; none of the lines written between copy and truncation (the method's
# documented loss). Before, the copy was looked for in the log's directory only: the truncated log
# was read from its start as a new file and the lines after its checkpoint were lost. Rids,
# offsets and identifiers by python over the files (tests/tail_lib.sh, tests/identifiers.py).
. "$(dirname "$0")/lib.sh"
lm_init copytruncate_olddir
. "$top_srcdir/tests/tail_lib.sh"
double_start

conf=$T/logmeter.conf
write_config "$conf"
mkdir -p "$T/rel/old" "$T/abs" "$T/archive" "$T/emp/old" "$T/nodir/old"
other_dev=0
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=8m,mode=0755 tmpfs "$T/archive" 2>/dev/null; then
	_LM_MOUNTS="$_LM_MOUNTS $T/archive" # unmounted by lm_cleanup
	other_dev=1
fi
rule_conf rel "$T/rel/app.log" "olddir = old" >> "$conf"
rule_conf abs "$T/abs/app.log" "olddir = $T/archive" >> "$conf"
rule_conf emp "$T/emp/app.log" "olddir = old" >> "$conf"
rule_conf nodir "$T/nodir/app.log" >> "$conf"
L=$T/rel/app.log A=$T/abs/app.log E=$T/emp/app.log N=$T/nodir/app.log

exec 7>> "$L" # rel's writer: O_APPEND, never reopened
writer_init
copytruncate() { # rel's, with a window of $1 lines between the copy and the truncation
	rotate_numbered "$T/rel/old/app.log"
	cp "$L" "$T/rel/old/app.log.1"
	writer_window "$1"
	truncate -s 0 "$L"
}

writer_put 40
put_rids "$A" 30
put_rids "$N" 10
: > "$E"
agent_start "$conf" 7>&- # not the writer's descriptor
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
wait_until 60 grep -qF "$E: tailing" "$T/agent.log" || fail "the empty file was not seen"

copytruncate_while_running
grep -qF "$L: truncated in place: reading the " "$T/agent.log" || fail "rel's copy was not read"

note "3: copied into the olddirs and truncated while logmeter is stopped"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"
read_n=$(wc -c < "$N") # nodir's checkpoint: the whole file was read
uid_n=$(uid_of "$conf" nodir "$N")
writer_put 25
copytruncate 7
writer_put 10
put_rids "$A" 20 # not read yet
cp "$A" "$T/archive/app.log.1"
truncate -s 0 "$A"
put_rids "$A" 10
put_rids "$E" 30 # the record read nothing
cp "$E" "$T/emp/old/app.log.1"
truncate -s 0 "$E"
put_rids "$E" 20
lost_from=$rid # rids, not counts: the window lines took rids too
put_rids "$N" 10 # lost: its copy is where logmeter does not look
lost_to=$rid
cp "$N" "$T/nodir/old/app.log.1"
truncate -s 0 "$N"
put_rids "$N" 10
agent_start "$conf" 7>&-
expected=$((written - 10))
wait_until 60 accepted_at_least "$expected" || fail "after the copytruncates while stopped: $(accepted_count) of $expected"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
# Everything read is sent, so that a line read twice shows below.
wait_until 60 eval '[ "$(export_count "$conf" pending)" = 0 ]' || fail "events left pending"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rel "$L" "$T"/rel/old/app.log.*
expect_file "$conf" abs "$A" "$T/archive/app.log.1"
expect_file "$conf" emp "$E" "$T/emp/old/app.log.1"
expect_file "$conf" nodir "$N"
# nodir's copy: only its lines before the checkpoint, under the record they were read with.
paste <(offsets_of "$T/nodir/old/app.log.1") <(rids_of "$T/nodir/old/app.log.1") > "$T/nodir_lines"
LC_ALL=C awk -v n="$read_n" '$1 < n { print $1 }' "$T/nodir_lines" |
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test nodir "$uid_n" rid_nodir >> "$T/expected_ids"
LC_ALL=C awk -v n="$read_n" '$1 < n { print $2 }' "$T/nodir_lines" >> "$T/expected_rids"
assert_eq "$(seq "$lost_from" $((lost_to - 1)) | tr '\n' ' ')" \
	"$(LC_ALL=C awk -v n="$read_n" '$1 >= n { print $2 }' "$T/nodir_lines" | tr '\n' ' ')" \
	"test bug: the lines written after nodir's checkpoint"
assert_eq "$expected" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq 12 "$lost" "window lines written"
assert_eq 0 "$(cut -f4 "$T/accepted.tsv" | grep -Fxc -f "$T/window_rids")" "window rids accepted"

for c in "$A: truncated in place: reading the " "$E: was empty when logmeter last looked, and $T/emp/old/app.log.1 "; do
	assert_eq 1 "$(grep -cF "$c" "$T/agent.log")" "announced: $c"
done
assert_eq 0 "$(status_sum "$conf" 14 '$15 != "nodir"')" "checkpoint resets"
assert_eq 1 "$(status_sum "$conf" 14 '$15 == "nodir"')" "nodir's checkpoint resets"
assert_eq 1 "$(grep -cF "$N: checkpoint at $read_n no longer matches the file (replaced or truncated): reading it from the start as a new file; if logrotate copies it to an olddir (copytruncate), set olddir in [source nodir]" "$T/agent.log")" \
	"nodir's loss announced with its offset and the option"
for f in "$T"/rel/old/app.log.*; do
	assert_eq drained "$(status_state "$conf" rel "$f")" "state of $f"
done
assert_eq drained "$(status_state "$conf" abs "$T/archive/app.log.1")" "state of abs's copy"
assert_eq drained "$(status_state "$conf" emp "$T/emp/old/app.log.1")" "state of emp's copy"
echo "t_copytruncate_olddir: $expected rids each accepted once from logs copied into their olddirs (another device: $other_dev); the $lost written between copy and truncate lost, as documented; 10 lost and counted where no olddir is set"

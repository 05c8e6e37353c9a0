#!/usr/bin/env bash
# copytruncate with logrotate's `extension .log`: the copy keeps the extension at the end of its
# name (logrotate(8): app.log -> app.1.log, with dateext app-20261207.log), beside the log or in
# its olddir, and the original is truncated in place. What logmeter had not read before the
# truncation is only in the copy:
#   rel: copies app.1.log .. beside the log, the writer appending with O_APPEND all along: 1. the
#        agent up to date when the copy is made; 2. the agent frozen (SIGSTOP) with lines not read
#        yet when the copy is made and lines written between the copy and the truncation; 3. the
#        same while logmeter is stopped.
#   old: `olddir = old`, a dateext copy old/app-20261207.log made while logmeter is stopped, lines
#        not read yet in it.
#   emp: the log empty when logmeter stopped, then written, copied to app.1.log and truncated: the
#        record read nothing, so only the copy's name tells it. app-2.log beside it, another log
#        written meanwhile (not a name logrotate gives a copy of app.log), is not taken for it.
#   sib: the log empty when logmeter stopped, then written (not truncated), and app-2.log beside
#        it written meanwhile: the only candidate for a copy, which it is not; it is not read.
# Every rid is accepted once, the unread ones from the copies under the identifiers they had in
# the original; none of the lines written between copy and truncation (the method's documented
# loss), none of app-2.log's. Before, a copy was looked for only under a name starting with the
# log's (app.log.1). Rids, offsets and identifiers by python over the files (tests/tail_lib.sh,
# tests/identifiers.py).
. "$(dirname "$0")/lib.sh"
lm_init copytruncate_extension
. "$top_srcdir/tests/tail_lib.sh"
double_start

conf=$T/logmeter.conf
write_config "$conf"
mkdir -p "$T/rel" "$T/old/old" "$T/emp" "$T/sib"
rule_conf rel "$T/rel/app.log" >> "$conf"
rule_conf old "$T/old/app.log" "olddir = old" >> "$conf"
rule_conf emp "$T/emp/app.log" >> "$conf"
rule_conf sib "$T/sib/app.log" >> "$conf"
L=$T/rel/app.log O=$T/old/app.log E=$T/emp/app.log S=$T/sib/app.log

exec 7>> "$L" # rel's writer: O_APPEND, never reopened
writer_init
copytruncate() { # rel's, with a window of $1 lines between the copy and the truncation
	local n
	for n in 4 3 2 1; do
		[ ! -e "$T/rel/app.$n.log" ] || mv "$T/rel/app.$n.log" "$T/rel/app.$((n + 1)).log"
	done
	cp "$L" "$T/rel/app.1.log"
	writer_window "$1"
	truncate -s 0 "$L"
}

writer_put 40
put_rids "$O" 30
for f in "$E" "$S"; do : > "$f"; done
agent_start "$conf" 7>&- # not the writer's descriptor
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
for f in "$E" "$S"; do
	wait_until 60 grep -qF "$f: tailing" "$T/agent.log" || fail "the empty $f was not seen"
done

copytruncate_while_running
grep -qF "$L: truncated in place: reading the " "$T/agent.log" || fail "rel's copy was not read"

note "3: copied and truncated while logmeter is stopped"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"
writer_put 25
copytruncate 7
writer_put 10
put_rids "$O" 20 # not read yet
cp "$O" "$T/old/old/app-20261207.log"
truncate -s 0 "$O"
put_rids "$O" 10
put_rids "$E" 30 # the record read nothing
cp "$E" "$T/emp/app.1.log"
truncate -s 0 "$E"
put_rids "$E" 20
lines 900001 5 >> "$T/emp/app-2.log" # another log: rids far above the writer's, never expected
put_rids "$S" 15
lines 900101 5 >> "$T/sib/app-2.log"
agent_start "$conf" 7>&-
wait_until 60 accepted_at_least "$written" || fail "after the copytruncates while stopped: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
# Everything read is sent, so that a line read twice shows below.
wait_until 60 eval '[ "$(export_count "$conf" pending)" = 0 ]' || fail "events left pending"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" rel "$L" "$T"/rel/app.*.log
expect_file "$conf" old "$O" "$T/old/old/app-20261207.log"
expect_file "$conf" emp "$E" "$T/emp/app.1.log"
expect_file "$conf" sib "$S"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq 12 "$lost" "window lines written"
assert_eq 0 "$(cut -f4 "$T/accepted.tsv" | grep -Fxc -f "$T/window_rids")" "window rids accepted"

for c in "$O: truncated in place: reading the " "$E: was empty when logmeter last looked, and $T/emp/app.1.log "; do
	assert_eq 1 "$(grep -cF "$c" "$T/agent.log")" "announced: $c"
done
for f in "$T/emp/app-2.log" "$T/sib/app-2.log"; do
	assert_eq 0 "$(grep -cF "$f" "$T/agent.log")" "$f named in the log"
done
assert_eq 0 "$(status_sum "$conf" 14)" "checkpoint resets"
for f in "$T"/rel/app.*.log; do
	assert_eq drained "$(status_state "$conf" rel "$f")" "state of $f"
done
assert_eq drained "$(status_state "$conf" old "$T/old/old/app-20261207.log")" "state of old's copy"
assert_eq drained "$(status_state "$conf" emp "$T/emp/app.1.log")" "state of emp's copy"
echo "t_copytruncate_extension: $written rids each accepted once from copies named with the extension at the end (beside the log and in its olddir); the $lost written between copy and truncate lost, as documented; app-2.log not taken for a copy"

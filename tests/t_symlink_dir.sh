#!/usr/bin/env bash
# A directory symlink in a source's path re-pointed while logmeter is stopped (a deploy's
# `current -> releases/N`, switched with `ln -sfn` and `mv -T`): the file the path led to was
# neither deleted nor moved, and what was written to it after its checkpoint while logmeter was
# stopped is read once, from the directory its path led to when logmeter last saw it, which the
# spool keeps (file_realdir, docs/tailing.md); not marked gone. Then the link switched again and
# the old release's directory removed with its file: the warning says the path leads to another
# directory now (not "deleted, or moved out of its directory"); `spool recover` leaves the table
# behind without calling its rows damaged. The same switch while the agent runs: the old file's
# record takes the file's own name (status listed two records under the link's path). The double must have accepted
# every line's event exactly once (values: the rids read back from the files with python;
# identifiers: tests/identifiers.py under the uid of each file's record).
. "$(dirname "$0")/lib.sh"
lm_init symlink_dir
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0
: >"$T/expected_ids"
: >"$T/expected_rids"

R=$T/rel
mkdir -p "$R/v1" "$R/v2" "$R/v3"
C=$T/logmeter.conf
write_config "$C"
rule_conf app "$R/current/*.log" >>"$C"

note "1: v1 read, the link switched to v2 while stopped, more lines written to v1's file"
ln -sfn v1 "$R/current"
put_rids "$R/v1/app.log" 40
agent_once "$C" || fail "first run --once exited $?"
put_rids "$R/v2/app.log" 30
ln -sfn v2 "$R/tmp" && mv -T "$R/tmp" "$R/current"
put_rids "$R/v1/app.log" 25
agent_once "$C" || fail "second run --once exited $?"
! grep -q "current/app.log: gone while logmeter was stopped" "$T/agent.log" ||
	fail "v1's file said gone: $(grep 'gone while' "$T/agent.log")"
expect_file "$C" app "$R/v1/app.log" "$R/v2/app.log"
check_accepted

note "2: the link switched to v3 while stopped, v2's directory removed with its unread lines"
put_rids "$R/v3/app.log" 20
put_rids "$R/v2/app.log" 5
lost_rids=$(rids_of "$R/v2/app.log" | tail -n 5 | tr '\n' ' ')
ln -sfn v3 "$R/tmp" && mv -T "$R/tmp" "$R/current"
rm -r "$R/v2"
written=$((written - 5))
rc=0
agent_once "$C" || rc=$?
# What was written to v2's file after its checkpoint is lost, and logmeter, which never saw it,
# cannot know it was: run --once warns of the file gone last, and exits 0.
assert_eq 0 "$rc" "third run --once's exit status"
tail -n 1 "$T/agent.log" | grep -q "warning: run --once: 1 file was gone when the run started" ||
	fail "third run --once's last log line: $(tail -n 1 "$T/agent.log")"
grep -qF "$R/current/app.log: gone while logmeter was stopped: its path leads to another directory now ($R/v3, was $R/v2), and its file is not there any more" "$T/agent.log" ||
	fail "v2's file not said gone with its directory's link moved: $(grep 'gone while' "$T/agent.log")"
expect_file "$C" app "$R/v3/app.log"
check_accepted
for r in $lost_rids; do
	! cut -f4 "$T/accepted.tsv" | grep -qx "$r" || fail "rid $r of the removed file was billed"
done

note "3: the link switched while the agent runs, the old file still written to"
R2=$T/rel2
mkdir -p "$R2/v1" "$R2/v2"
ln -sfn v1 "$R2/current"
put_rids "$R2/v1/app.log" 15
C2=$T/logmeter2.conf
write_config "$C2"
sed -i "s|^state_dir = .*|state_dir = $T/state2|" "$C2"
rule_conf app "$R2/current/*.log" >>"$C2"
agent_start "$C2"
wait_until 60 delivered || fail "only $(accepted_count) of $written events"
put_rids "$R2/v2/app.log" 10
ln -sfn v2 "$R2/tmp" && mv -T "$R2/tmp" "$R2/current"
put_rids "$R2/v1/app.log" 5
wait_until 60 delivered || fail "after the switch: only $(accepted_count) of $written events"
wait_until 60 grep -qF "$R2/current/app.log: its path leads to another directory now: it is $R2/v1/app.log" "$T/agent.log" ||
	fail "the old file kept the path: $(grep -F "$R2/" "$T/agent.log" | tail -5)"
agent_stop || fail "the agent did not stop cleanly"
"$LOGMETER" status -c "$C2" | sed -n 's/^  \(\/.*\)$/\1/p' | sort >"$T/status2.paths"
assert_eq "$R2/current/app.log $R2/v1/app.log" "$(tr '\n' ' ' <"$T/status2.paths" | sed 's/ $//')" \
	"the records' paths in status"
expect_file "$C2" app "$R2/v1/app.log" "$R2/v2/app.log"
check_accepted

note "4: spool recover leaves file_realdir's rows behind, as file_extra's, not as damaged rows"
[ -n "$(spool_sql "$C" "SELECT dir FROM file_realdir")" ] || fail "test bug: file_realdir is empty"
out=$("$LOGMETER" spool recover --force -c "$C" 2>&1) || fail "spool recover exited $?: $out"
! grep -q "damaged rows skipped" <<<"$out" || fail "spool recover: $out"

echo "t_symlink_dir: $written lines, each billed once: a directory symlink in the path re-pointed while stopped, the old target's lines after its checkpoint read from the directory it led to; its removal said as such"

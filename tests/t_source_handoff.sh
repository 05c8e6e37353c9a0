#!/usr/bin/env bash
# A file one source drained and released (renamed to a name only another source's glob matches)
# that grows again afterwards: the writer goes on past rotate_wait (it reopens its log late), or a
# live log is moved into another source's directory. The source that released it no longer reads
# it; the source whose glob matches it now goes on from exactly where the first one's record
# stopped, under a record of its own (taken over: docs/tailing.md, "One file, one source"): its new
# lines are billed once, none lost, none of the old ones again. Then a restart bills nothing more.
#   1. app.log read by source live, renamed to app.log.1 (source old's app.log.*), drained and
#      released after rotate_wait; then 25 more lines appended to app.log.1.
#   2. a live log moved into another source's directory (b/*.log), written to after its drain;
#   3. a log moved into another source's directory while logmeter was stopped, written to then:
#      at start the first source finds it there (not marked gone) and reads it to its end as a
#      file rotated while stopped, as it would had it been running; written to after its drain
#      (and a stop: `check` says so), it is taken over by the other source, as in 2.
. "$(dirname "$0")/lib.sh"
lm_init source_handoff
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0
: >"$T/expected_ids"
: >"$T/expected_rids"

mkdir -p "$T/logs" "$T/a" "$T/b"
write_config "$T/logmeter.conf"
conf=$T/logmeter.conf
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 1s/' "$conf"
sed -i 's/^rescan_interval = .*/rescan_interval = 1s/' "$conf"
{
	rule_conf old "$T/logs/app.log.*"
	rule_conf live "$T/logs/app.log"
	rule_conf a "$T/a/*.log"
	rule_conf b "$T/b/*.log"
} >>"$conf"
L=$T/logs/app.log
put_rids "$L" 100
put_rids "$T/a/web.log" 50
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"

note "1: a rotated file written to after its drain"
mv "$L" "$L.1"
put_rids "$L.1" 40
put_rids "$L" 60
wait_until 60 delivered || fail "1: lines after the rotation: $(accepted_count) of $written"
drained() { [ "$(status_state "$conf" "$1" "$2")" = drained ]; }
wait_until 60 drained live "$L.1" || fail "1: app.log.1 never drained: $(status_state "$conf" live "$L.1")"
at1=$(stat -c %s "$L.1")
put_rids "$L.1" 25
wait_until 60 delivered || fail "1: lines written to app.log.1 after its drain: $(accepted_count) of $written accepted"

note "2: a live log moved into another source's directory"
mv "$T/a/web.log" "$T/b/web.log"
wait_until 60 drained a "$T/b/web.log" || fail "2: web.log never drained: $(status_state "$conf" a "$T/b/web.log")"
at2=$(stat -c %s "$T/b/web.log")
put_rids "$T/b/web.log" 30
wait_until 60 delivered || fail "2: lines written to b/web.log after its drain: $(accepted_count) of $written accepted"

note "3: a log moved into another source's directory while logmeter was stopped"
put_rids "$T/a/moved.log" 40
wait_until 60 delivered || fail "3: first lines: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "3: the agent did not catch up"
agent_stop || fail "agent exit $?"
mv "$T/a/moved.log" "$T/b/moved.log"
put_rids "$T/b/moved.log" 15
agent_start "$conf"
wait_until 60 delivered || fail "3: lines written to b/moved.log while stopped: $(accepted_count) of $written accepted"
wait_until 60 drained a "$T/b/moved.log" || fail "3: moved.log never drained: $(status_state "$conf" a "$T/b/moved.log")"
# Nothing lost, so nothing said lost: a's record is not marked gone (status would say degraded).
! grep -qF "$T/a/moved.log: gone while logmeter was stopped" "$T/agent.log" ||
	fail "3: a's record of moved.log taken for gone: $(grep -F moved.log "$T/agent.log" | tail -3)"
grep -qF "$T/b/moved.log: rotated while logmeter was stopped: read to its end" "$T/agent.log" ||
	fail "3: moved.log not read to its end by a: $(grep -F moved.log "$T/agent.log" | tail -3)"
at3=$(stat -c %s "$T/b/moved.log")
# Stopped once more, and written to: `check` says where b will go on from.
agent_stop || fail "agent exit $?"
put_rids "$T/b/moved.log" 10
"$LOGMETER" check -c "$conf" >"$T/check.out" 2>"$T/check.err" || fail "check exit $?: $(cat "$T/check.err")"
grep -qF "warning: $T/b/moved.log: read up to offset $at3 by source a (its record is drained), of which source b has no record: \`run\` reads it under source b from there on" \
	"$T/check.err" || fail "3: check did not say where b goes on from: $(cat "$T/check.err")"
agent_start "$conf"
wait_until 60 delivered || fail "3: lines written to b/moved.log after its drain: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "3: the agent did not catch up"
# Counted since this agent started: the one file taken over, named.
assert_eq "1 $T/b/moved.log" "$(tailing_warning "$conf" taken_over)" "status --json: files taken over"
agent_stop || fail "agent exit $?"

note "3: a restart bills nothing again"
agent_once "$conf" || fail "run --once exited $?"
expect_file "$conf" live "$L"
expect_split "$L.1" "$at1" live old
expect_split "$T/b/web.log" "$at2" a b
expect_split "$T/b/moved.log" "$at3" a b
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids in the files"
check_accepted
grep -qF "$L.1: read up to offset $at1 by source live (its record is drained): source old goes on from there" \
	"$T/agent.log" || fail "no log of the hand-over: $(grep -F "$L.1" "$T/agent.log" | tail -3)"
grep -qF "$T/b/moved.log: read up to offset $at3 by source a (its record is drained): source b goes on from there" \
	"$T/agent.log" || fail "3: no log of the hand-over: $(grep -F moved.log "$T/agent.log" | tail -3)"
echo "t_source_handoff: $written lines each billed once, two files handed from one source to another at the offset the first one stopped at"

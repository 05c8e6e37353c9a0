#!/usr/bin/env bash
# The archive of a file handed from one source to another (docs/tailing.md, "One file, one
# source"): app.log, read by source live, is renamed to app.log.1 (source old's app.log.*),
# drained and released by live, written to again and read on by old from live's checkpoint; then
# compressed. Both sources have a record that describes the archive: live's up to the hand-over
# offset, old's up to its end. `logmeter backfill --source live` of it must not bill the lines
# from the hand-over offset on again under live (new identifiers: Stripe would accept them as
# new events, billed twice): it is refused, naming old; `--source old` bills nothing (every line
# of it read). The identifiers the Stripe double accepted are exactly those of the file's lines,
# each once, under live's record before the hand-over offset and old's after it.
. "$(dirname "$0")/lib.sh"
lm_init source_handoff_backfill
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0
: >"$T/expected_ids"
: >"$T/expected_rids"

mkdir -p "$T/logs"
conf=$T/logmeter.conf
write_config "$conf"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 1s/' "$conf"
sed -i 's/^rescan_interval = .*/rescan_interval = 1s/' "$conf"
{
	rule_conf old "$T/logs/app.log.*"
	rule_conf live "$T/logs/app.log"
} >>"$conf"
L=$T/logs/app.log
put_rids "$L" 60
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"

note "app.log rotated, drained and released by live, written to again: read on by old"
mv "$L" "$L.1"
put_rids "$L.1" 20
drained() { [ "$(status_state "$conf" "$1" "$2")" = drained ]; }
wait_until 60 drained live "$L.1" || fail "app.log.1 never drained: $(status_state "$conf" live "$L.1")"
at=$(stat -c %s "$L.1")
put_rids "$L.1" 25
wait_until 60 delivered || fail "lines written after the drain: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent exit $?"
grep -qF "$L.1: read up to offset $at by source live (its record is drained): source old goes on from there" \
	"$T/agent.log" || fail "not taken over: $(grep -F "$L.1" "$T/agent.log" | tail -3)"
expect_split "$L.1" "$at" live old
assert_eq "$written" "$(wc -l <"$T/expected_rids")" "rids in the file"
gzip "$L.1"

note "backfill of its archive as source live, then as source old"
rc_live=0
timeout 120 "$LOGMETER" backfill -c "$conf" --stamp-now --source live "$L.1.gz" \
	>"$T/bf_live.out" 2>>"$T/agent.log" || rc_live=$?
timeout 120 "$LOGMETER" backfill -c "$conf" --stamp-now --source old "$L.1.gz" \
	>"$T/bf_old.out" 2>>"$T/agent.log" || fail "backfill --source old exited $?: $(cat "$T/bf_old.out")"
agent_once "$conf" || fail "run --once exited $?"
check_accepted
# Refused (exit 1), and the refusal names the source that read it further.
assert_eq 1 "$rc_live" "backfill --source live of the archive old read further"
grep -qF "backfill: $L.1.gz: already read by [source old] as $L.1 " "$T/agent.log" ||
	fail "no refusal naming source old: $(grep -F 'backfill: ' "$T/agent.log" | tail -3)"
echo "t_source_handoff_backfill: $written lines each billed once; the archive of a handed file is refused as the source it was handed from"

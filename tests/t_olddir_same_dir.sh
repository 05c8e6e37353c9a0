#!/usr/bin/env bash
# An `olddir` that is the log's own directory: `olddir = .`, and `olddir = ../same` (a path that
# leads back to it). logrotate then rotates beside the log, and logmeter, which looks in the log's
# directory anyway, must not look there a second time as the olddir: each file would be judged
# twice. Per source, lines not read yet when logmeter is stopped, then two numbered rotations
# while it is stopped (app.log.1 renamed to app.log.2, never read, a new app.log.1) and a file
# made by hand beside them (app.log.tail, new lines under a name logrotate does not give): the
# rotations are read, each rid accepted once, and the hand-made file is left unread with one
# warning and counted once. Before, the directory was scanned twice at start: the hand-made file
# was warned about twice (under two paths: dot/./app.log.tail) and counted twice (status: 4 files
# left unread, not 2). Rids, offsets and identifiers by python over the files (tests/tail_lib.sh,
# tests/identifiers.py).
. "$(dirname "$0")/lib.sh"
lm_init olddir_same_dir
. "$top_srcdir/tests/tail_lib.sh"
double_start

conf=$T/logmeter.conf
write_config "$conf"
mkdir -p "$T/dot" "$T/same"
rule_conf dot "$T/dot/app.log" "olddir = ." >> "$conf"
rule_conf same "$T/same/app.log" "olddir = ../same" >> "$conf"
writer_init

for s in dot same; do put_rids "$T/$s/app.log" 10; done
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

note "rotated twice beside the log while logmeter is stopped, and a file made by hand there"
for s in dot same; do
	L=$T/$s/app.log
	put_rids "$L" 10 # after the checkpoint
	mv "$L" "$L.1"
	put_rids "$L" 10 # never seen by logmeter
	mv "$L.1" "$L.2"
	mv "$L" "$L.1"
	put_rids "$L" 10
	lines 100000 5 > "$L.tail" # not a rotation: its rids are never billed
done
agent_start "$conf"
wait_until 60 accepted_at_least "$written" || fail "after the rotations: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
# Everything read is sent, so that a line read twice shows below.
wait_until 60 eval '[ "$(export_count "$conf" pending)" = 0 ]' || fail "events left pending"
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
for s in dot same; do expect_file "$conf" "$s" "$T/$s/app.log" "$T/$s/app.log.1" "$T/$s/app.log.2"; done
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
for s in dot same; do
	assert_eq 1 "$(grep -cF "app.log.1: rotated from $T/$s/app.log while logmeter was stopped, and never read" "$T/agent.log")" \
		"$s's rotation never read announced once"
	# Under any path: a second look names it $T/dot/./app.log.tail, $T/same/../same/app.log.tail.
	assert_eq 1 "$(grep -cF "app.log.tail: beside $T/$s/app.log.2," "$T/agent.log")" "$s's hand-made file warned about once"
done
assert_eq 2 "$(tailing_warning "$conf" not_rotations | cut -d' ' -f1)" "status --json: files left unread"
assert_eq 2 "$(tailing_warning "$conf" rotated_stopped | cut -d' ' -f1)" "status --json: rotations never read"
echo "t_olddir_same_dir: $written rids each accepted once, the log's directory looked in once as its olddir"

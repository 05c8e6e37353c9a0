#!/usr/bin/env bash
# A symlink to a file the same source reads (b.log -> a.log in logs/app/*.log, follow_symlinks =
# no): `run` refuses it as `check` says, in the same words, logged once and counted once in
# `status` (refused: N symbolic links not followed) however many rescans see it again; not
# silently taken for another name of a.log (docs/security.md). One link there at start (the
# scan), one made while the agent runs (its inotify event). a.log is billed once: the values
# the double accepted are a.log's rids (read back from the file with python) and the
# identifiers those of its lines (tests/identifiers.py), each once.
. "$(dirname "$0")/lib.sh"
lm_init symlink_same_file
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0
: >"$T/expected_ids"
: >"$T/expected_rids"

L=$T/logs/app
mkdir -p "$L"
C=$T/logmeter.conf
write_config "$C"
sed -i 's/^rescan_interval = 1s$/&\nrotate_wait = 100ms/' "$C"
rule_conf app "$L/*.log" >>"$C"
put_rids "$L/a.log" 30
ln -s a.log "$L/b.log"

status_has() { "$LOGMETER" status -c "$C" 2>&1 | grep -qxF "$1"; }
# refusals: the refusal messages of the agent's log, as `check` words them.
refusals() {
	sed -n 's/^logmeter: warning: \(.*: refused\) (retried at every rescan)$/\1/p' "$T/agent.log" | sort
}
check_refusals() {
	"$LOGMETER" check -c "$C" >"$T/check.out" 2>"$T/check.err" || fail "check refused: $(cat "$T/check.err")"
	sed -n 's/^warning: //p' "$T/check.err" | grep ': refused$' | sort >"$T/check.refused"
}

check_refusals
assert_eq "$L/b.log: a symbolic link, not followed ([source app] follow_symlinks = no): refused" \
	"$(cat "$T/check.refused")" "check's refusals"

note "1: the link there at start, seen by three scans"
LOGMETER_STOP_AT=watch_scan_read:3 agent_start "$C"
stopped_at watch_scan_read 1
refusals >"$T/run.refused"
diff -u "$T/check.refused" "$T/run.refused" >"$T/refused.diff" ||
	fail "run and check disagree, or a refusal was logged twice: $(cat "$T/refused.diff")"
status_has "refused: 1 symbolic links not followed, 0 files of logmeter's own (docs/security.md)" ||
	fail "status: $("$LOGMETER" status -c "$C" 2>&1 | grep '^refused')"
kill -CONT "$AGENT_PID"

note "2: a link made while the agent runs"
ln -s a.log "$L/c.log"
put_rids "$L/a.log" 10
check_refusals
assert_eq 2 "$(wc -l <"$T/check.refused")" "check's refusals: $(cat "$T/check.refused")"
wait_until 60 delivered || fail "only $(accepted_count) of $written events"
wait_until 60 status_has "refused: 2 symbolic links not followed, 0 files of logmeter's own (docs/security.md)" ||
	fail "status: $("$LOGMETER" status -c "$C" 2>&1 | grep '^refused')"
# Rescans see both links again: a rotated file released "drained", by a rescan at least
# rotate_wait after its last change, proves that rescans ran after the refusals.
put_rids "$L/d.log" 5
wait_until 60 delivered || fail "d.log: only $(accepted_count) of $written events"
mv "$L/d.log" "$L/d.log.1"
wait_until 60 grep -q "d.log.1: .*released (drained)" "$T/agent.log" || fail "no rescan released d.log.1"
refusals >"$T/run.refused"
diff -u "$T/check.refused" "$T/run.refused" >"$T/refused.diff" ||
	fail "run and check disagree, or a refusal was logged twice: $(cat "$T/refused.diff")"
status_has "refused: 2 symbolic links not followed, 0 files of logmeter's own (docs/security.md)" ||
	fail "the refusals were counted again: $("$LOGMETER" status -c "$C" 2>&1 | grep '^refused')"
agent_stop || fail "the agent did not stop cleanly"
expect_file "$C" app "$L/a.log" "$L/d.log.1"
check_accepted

echo "t_symlink_same_file: $written lines billed once; 2 links to a tailed file refused by run as check says, each logged and counted once"

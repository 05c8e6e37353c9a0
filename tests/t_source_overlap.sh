#!/usr/bin/env bash
# One file matched by the globs of two sources is read by one of them only, so that its lines are
# billed once (docs/tailing.md, "One file, one source"):
#   1. a source whose literal path is a symlink to app.log, and a source whose glob matches app.log
#      itself (run --once): the first source in configuration order reads it;
#   2. two drop-ins of conf.d whose globs overlap (the agent running, lines appended);
#   3. rotation: app.log renamed to app.log.1, which only another source's glob (app.log.*)
#      matches, earlier in configuration order: the source that read app.log drains app.log.1,
#      and after it released it (drained) a restart does not read it again;
#   4. copytruncate: app.log copied to app.log.1, which another source's glob matches, and
#      truncated: the copy is the copy of the first source's file, not a new file of the other;
#   5. the advice followed: with the sources' order swapped, `check` names the source whose
#      spool record reads the file (not the first in configuration order) as the one to keep;
#      then the reader is removed anyway (`check` says where the other source goes on from) and
#      the agent reloaded (SIGHUP): the other source goes on from the removed one's checkpoint
#      (nothing billed twice), and the "shared" health clears;
#   6. a literal symlink re-pointed while logmeter is stopped, its old target matched by another
#      source's glob: the link's source reads the old target to its end (not "gone"), and the
#      other source does not read it again from 0 on the next run;
#   7. the same with a hard link: the first name deleted, the file read through its other name
#      (in another source's directory) while the agent runs, then more lines while it is
#      stopped;
#   8. the symlink of 6 with no other source: the old target, in a directory no source watches,
#      is found where the link leads now.
# In 1 and 2 `check` exits 2 naming the file and both sources with their file and line; the agent
# warns, `status` counts the file (shared_files) and says degraded. The double must have accepted
# every line's event exactly once: the values (distinct rids, read back from the files with
# python) and the identifiers (tests/identifiers.py, under the uid of the reading source's
# record).
. "$(dirname "$0")/lib.sh"
lm_init source_overlap
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0
: >"$T/expected_ids"
: >"$T/expected_rids"

# conf_for DIR: C=DIR/etc/logmeter.conf, whose state directory is DIR/state (the logs go
# elsewhere in DIR: the configuration's directory is logmeter's own, never read as logs).
conf_for() {
	mkdir -p "$1/etc"
	C=$1/etc/logmeter.conf
	write_config "$C"
	sed -i "s|^state_dir = .*|state_dir = $1/state|" "$C"
}
# line_of FILE SOURCE: the line of FILE where [source SOURCE] starts.
line_of() {
	grep -n "^\[source $2\]\$" "$1" | cut -d: -f1
}
# check_refuses CONF FILE SRC1 WHERE1 SRC2 WHERE2: `check` exits 2 and names the file matched
# by both sources, each with its file and line, and says what to do.
check_refuses() {
	local rc=0
	"$LOGMETER" check -c "$1" >"$T/check.out" 2>"$T/check.err" || rc=$?
	assert_eq 2 "$rc" "check exit with $2 matched by sources $3 and $5"
	grep -qF "error: $2 is matched by source $3 ($4) and source $5 ($6)" "$T/check.err" ||
		fail "check did not name $2 and both sources: $(cat "$T/check.err")"
	grep -qF "Keep source $3 and move the rules of source $5 into it" "$T/check.err" ||
		fail "check did not say what to do: $(cat "$T/check.err")"
	! grep -q ": OK:" "$T/check.out" || fail "check said OK: $(cat "$T/check.out")"
}
# status_shared CONF N: `status` exits 1 (degraded) and counts N files left to another source,
# in the text and in --json.
status_shared() {
	local rc=0
	"$LOGMETER" status -c "$1" >"$T/status.txt" 2>&1 || rc=$?
	assert_eq 1 "$rc" "status exit with files matched by two sources"
	grep -qF "shared: $2 files matched by more than one source's glob" "$T/status.txt" ||
		fail "status text: $(cat "$T/status.txt")"
	grep -qF "health: degraded: $2 files are matched by the globs of more than one source" \
		"$T/status.txt" || fail "status health: $(grep health "$T/status.txt")"
	rc=0
	"$LOGMETER" status -c "$1" --json >"$T/status.json" 2>&1 || rc=$?
	assert_eq 1 "$rc" "status --json exit"
	assert_eq "$2 degraded" "$("$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["guard"]["shared_files"], d["health"]["status"])' "$T/status.json")" "status --json"
}

note "1: a literal symlink to app.log, and a glob that matches app.log"
D=$T/p1
conf_for "$D"
mkdir -p "$D/app" "$D/cur"
ln -s ../app/app.log "$D/cur/current.log"
put_rids "$D/app/app.log" 200
{
	rule_conf cur "$D/cur/current.log"
	rule_conf all "$D/app/*.log"
} >>"$C"
check_refuses "$C" "$D/cur/current.log" \
	cur "$C:$(line_of "$C" cur)" \
	all "$C:$(line_of "$C" all)"
grep -qF "as $D/app/app.log" "$T/check.err" || fail "check did not name the other path: $(cat "$T/check.err")"
agent_once "$C" || fail "run --once exited $?"
expect_file "$C" cur "$D/app/app.log"
check_accepted
grep -qF "$D/app/app.log: matched by the glob of source all" "$T/agent.log" ||
	fail "no warning naming the file and the other source: $(cat "$T/agent.log")"
grep -qF "but read by source cur" "$T/agent.log" || fail "the warning does not name the reader"
status_shared "$C" 1

note "2: two drop-ins of conf.d whose globs overlap, the agent running"
D=$T/p2
conf_for "$D"
mkdir -p "$D/etc/conf.d" "$D/logs"
rule_conf web "$D/logs/*.log" >"$D/etc/conf.d/10-web.conf"
rule_conf app "$D/logs/app*" >"$D/etc/conf.d/20-app.conf"
put_rids "$D/logs/app.log" 100
put_rids "$D/logs/other.log" 30 # web's alone
check_refuses "$C" "$D/logs/app.log" \
	web "$D/etc/conf.d/10-web.conf:1" app "$D/etc/conf.d/20-app.conf:1"
agent_start "$C"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
put_rids "$D/logs/app.log" 100
put_rids "$D/logs/app.log" 50
wait_until 60 delivered || fail "appended lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent exit $?"
# Whatever was spooled, sent: on a build that reads the file under both sources, the second
# source's events are in the spool now, whether or not they were sent yet.
agent_once "$C" || fail "run --once exited $?"
expect_file "$C" web "$D/logs/app.log" "$D/logs/other.log"
check_accepted
grep -qF "$D/logs/app.log: matched by the glob of source app ($D/etc/conf.d/20-app.conf:1) too, but read by source web ($D/etc/conf.d/10-web.conf:1)" \
	"$T/agent.log" || fail "no warning with both sources' file and line: $(grep 'matched by' "$T/agent.log")"
status_shared "$C" 1

note "3: app.log rotated to app.log.1, which an earlier source's glob (app.log.*) matches"
D=$T/p3
conf_for "$D"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 1s/' "$C"
mkdir -p "$D/logs"
{
	rule_conf old "$D/logs/app.log.*"
	rule_conf live "$D/logs/app.log"
} >>"$C"
put_rids "$D/logs/app.log" 100
"$LOGMETER" check -c "$C" >"$T/check.out" 2>"$T/check.err" ||
	fail "check refused globs that match no file twice: $(cat "$T/check.err")"
agent_start "$C"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
mv "$D/logs/app.log" "$D/logs/app.log.1"
put_rids "$D/logs/app.log.1" 40 # the writer goes on until it reopens its log
put_rids "$D/logs/app.log" 60
wait_until 60 delivered || fail "lines after the rotation not delivered: $(accepted_count) of $written"
wait_until 60 grep -qF "$D/logs/app.log.1: matched by the glob of source old" "$T/agent.log" ||
	fail "no warning for app.log.1: $(grep 'matched by' "$T/agent.log")"
# Drained: released by source live after rotate_wait; then a rescan of the running agent, or a
# restart, finds it by live's record (drained, still describing it), not by a tail.
drained() { [ "$(status_state "$C" live "$D/logs/app.log.1")" = drained ]; }
wait_until 60 drained || fail "app.log.1 never drained: $(status_state "$C" live "$D/logs/app.log.1")"
agent_stop || fail "agent exit $?"
# Now each file is matched by one glob: nothing for check to refuse. The restart scans source
# old first, and finds app.log.1 by live's drained record only.
"$LOGMETER" check -c "$C" >"$T/check.out" 2>"$T/check.err" ||
	fail "check refused a rotated file: $(cat "$T/check.err")"
agent_once "$C" || fail "run --once exited $?"
expect_file "$C" live "$D/logs/app.log.1" "$D/logs/app.log"
check_accepted
[ -z "$(uid_of "$C" old "$D/logs/app.log.1")" ] ||
	fail "source old has a record of app.log.1"
status_shared "$C" 1

note "4: copytruncate of app.log, whose copy app.log.1 another source's glob matches"
D=$T/p4
conf_for "$D"
mkdir -p "$D/logs"
{
	rule_conf live "$D/logs/app.log"
	rule_conf old "$D/logs/app.log.*"
} >>"$C"
put_rids "$D/logs/app.log" 100
agent_start "$C"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
cp "$D/logs/app.log" "$D/logs/app.log.1"
: >"$D/logs/app.log"
put_rids "$D/logs/app.log" 50
wait_until 60 delivered || fail "lines after the copytruncate not delivered: $(accepted_count) of $written"
# The copy is found read (live's record names it, drained) before the agent stops.
copied() { [ "$(status_state "$C" live "$D/logs/app.log.1")" = drained ]; }
wait_until 60 copied || fail "app.log.1 not recorded as live's: $(status_state "$C" live "$D/logs/app.log.1")"
agent_stop || fail "agent exit $?"
agent_once "$C" || fail "run --once exited $?"
expect_file "$C" live "$D/logs/app.log.1" "$D/logs/app.log"
check_accepted
[ -z "$(uid_of "$C" old "$D/logs/app.log.1")" ] || fail "source old has a record of app.log.1"

note "5: the advice followed: keep the source that reads the file; its removal is no re-read"
D=$T/p5
conf_for "$D"
mkdir -p "$D/app" "$D/cur"
ln -s ../app/app.log "$D/cur/current.log"
put_rids "$D/app/app.log" 120
cp "$C" "$D/etc/base.conf"
{
	rule_conf cur "$D/cur/current.log"
	rule_conf all "$D/app/*.log"
} >>"$C"
agent_start "$C"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
wait_until 60 caught_up "$C" || fail "app.log not read to its end"
# The same sources in the other order: a fresh spool would give the file to all (the first in
# configuration order), but the spool says cur reads it, and `run` keeps it with cur.
cp "$D/etc/base.conf" "$D/etc/swapped.conf"
{
	rule_conf all "$D/app/*.log"
	rule_conf cur "$D/cur/current.log"
} >>"$D/etc/swapped.conf"
rc=0
"$LOGMETER" check -c "$D/etc/swapped.conf" >"$T/check.out" 2>"$T/check.err" || rc=$?
assert_eq 2 "$rc" "check exit with the sources swapped"
grep -qF "under source cur (its record in the spool reads it)" "$T/check.err" ||
	fail "check did not name the source whose record reads the file: $(cat "$T/check.err")"
grep -qF "Keep source cur and move the rules of source all into it" "$T/check.err" ||
	fail "check did not say to keep the reader: $(cat "$T/check.err")"
status_shared "$C" 1
# The reader removed anyway (the advice of an older logmeter): all goes on from cur's checkpoint.
uid_cur=$(uid_of "$C" cur "$D/app/app.log")
from=$(stat -c %s "$D/app/app.log")
cp "$D/etc/base.conf" "$C"
rule_conf all "$D/app/*.log" >>"$C"
"$LOGMETER" check -c "$C" >"$T/check.out" 2>"$T/check.err" || fail "check refused one source: $(cat "$T/check.err")"
grep -qF "warning: $D/app/app.log: read up to offset $from by source cur (its record is reading), of which source all has no record: \`run\` reads it under source all from there on" \
	"$T/check.err" || fail "check did not say where all goes on from: $(cat "$T/check.err")"
reloads=$(grep -c 'configuration reloaded' "$T/agent.log" || true)
kill -HUP "$AGENT_PID"
reloaded() { [ "$(grep -c 'configuration reloaded' "$T/agent.log")" -gt "$reloads" ]; }
wait_until 60 reloaded || fail "reload not logged: $(grep -i reload "$T/agent.log" | tail -3)"
put_rids "$D/app/app.log" 60
wait_until 60 delivered || fail "lines after the reload not delivered: $(accepted_count) of $written"
# The "shared" count is of the configuration now: none.
unshared() {
	"$LOGMETER" status -c "$C" --json >"$T/status.json" 2>/dev/null
	[ "$("$PYTHON3" -c 'import json, sys; print(json.load(open(sys.argv[1]))["guard"]["shared_files"])' "$T/status.json")" = 0 ]
}
wait_until 60 unshared || fail "shared_files not cleared by the reload: $(cat "$T/status.json")"
"$LOGMETER" status -c "$C" >"$T/status.txt" 2>&1 || true
! grep -q "matched by the globs of more than one source" "$T/status.txt" ||
	fail "status still degraded by shared files: $(grep health "$T/status.txt")"
grep -qF "$D/app/app.log: read up to offset $from by source cur (its record is reading): source all goes on from there" \
	"$T/agent.log" || fail "no warning that all goes on from cur's checkpoint: $(grep 'app.log' "$T/agent.log" | tail -5)"
taken_over() { [ "$(tailing_warning "$C" taken_over)" = "1 $D/app/app.log" ]; }
wait_until 60 taken_over || fail "status --json: files taken over: $(tailing_warning "$C" taken_over)"
agent_stop || fail "agent exit $?"
agent_once "$C" || fail "run --once exited $?"
# Identifiers: under cur's uid up to the checkpoint, under all's from there.
head -c "$from" "$D/app/app.log" >"$T/head.log"
expect_from cur "$uid_cur" "$T/head.log" 0
expect_from all "$(uid_of "$C" all "$D/app/app.log")" "$D/app/app.log" "$from"
check_accepted

note "6: a literal symlink re-pointed while stopped, its old target matched by another glob"
D=$T/p6
conf_for "$D"
mkdir -p "$D/app" "$D/cur"
ln -s "$D/app/access.log" "$D/cur/current.log"
put_rids "$D/app/access.log" 100
{
	rule_conf cur "$D/cur/current.log"
	rule_conf all "$D/app/access*.log"
} >>"$C"
agent_once "$C" || fail "run --once exited $?"
# Stopped: the application appends to its log, then switches to a new one.
put_rids "$D/app/access.log" 50
put_rids "$D/app/access-2.log" 40
ln -sfn "$D/app/access-2.log" "$D/cur/current.log"
agent_once "$C" || fail "run --once exited $?"
put_rids "$D/app/access-2.log" 30
agent_once "$C" || fail "run --once exited $?"
! grep -q "gone while logmeter was stopped" "$T/agent.log" ||
	fail "the old target said gone: $(grep 'gone while' "$T/agent.log")"
[ -z "$(uid_of "$C" all "$D/app/access.log")" ] || fail "source all has a record of access.log"
expect_file "$C" cur "$D/app/access.log" "$D/app/access-2.log"
check_accepted

note "7: a hard link in another source's directory, its first name deleted, then a stop"
D=$T/p7
conf_for "$D"
mkdir -p "$D/logs" "$D/logs2"
{
	rule_conf a "$D/logs/*.log"
	rule_conf b "$D/logs2/*.log"
} >>"$C"
put_rids "$D/logs/x.log" 80
ln "$D/logs/x.log" "$D/logs2/y.log"
agent_start "$C"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
rm "$D/logs/x.log"
put_rids "$D/logs2/y.log" 40
wait_until 60 delivered || fail "lines through y.log not delivered: $(accepted_count) of $written"
agent_stop || fail "agent exit $?"
put_rids "$D/logs2/y.log" 30
agent_once "$C" || fail "run --once exited $?"
put_rids "$D/logs2/y.log" 20
agent_once "$C" || fail "run --once exited $?"
! grep -q "x.log: gone while logmeter was stopped" "$T/agent.log" ||
	fail "x.log said gone: $(grep 'gone while' "$T/agent.log")"
[ -z "$(uid_of "$C" b "$D/logs2/y.log")" ] || fail "source b has a record of y.log"
expect_file "$C" a "$D/logs2/y.log"
check_accepted

note "8: the same symlink re-pointed while stopped, with no other source (its old target's directory unwatched)"
D=$T/p8
conf_for "$D"
mkdir -p "$D/app" "$D/cur"
ln -s "$D/app/access.log" "$D/cur/current.log"
put_rids "$D/app/access.log" 60
rule_conf cur "$D/cur/current.log" >>"$C"
agent_once "$C" || fail "run --once exited $?"
put_rids "$D/app/access.log" 25
put_rids "$D/app/access-2.log" 35
ln -sfn "$D/app/access-2.log" "$D/cur/current.log"
agent_once "$C" || fail "run --once exited $?"
! grep -q "p8/cur/current.log: gone while logmeter was stopped" "$T/agent.log" ||
	fail "the old target said gone: $(grep 'gone while' "$T/agent.log")"
expect_file "$C" cur "$D/app/access.log" "$D/app/access-2.log"
check_accepted

echo "t_source_overlap: $written lines, each billed once under one source: a symlink and a glob, overlapping drop-ins, a rotation and a copytruncate into another source's glob, the reader removed by a reload, a symlink re-pointed and a hard link's name deleted while stopped; check exits 2 naming the source to keep"

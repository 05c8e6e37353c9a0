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
#      truncated: the copy is the copy of the first source's file, not a new file of the other.
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
	grep -qF "Put the rules under one source" "$T/check.err" ||
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

echo "t_source_overlap: $written lines, each billed once under one source: a symlink and a glob, overlapping drop-ins, a rotation and a copytruncate into another source's glob; check exits 2"

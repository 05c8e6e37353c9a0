#!/usr/bin/env bash
# A source renamed and then renamed back (apache -> web -> apache): the file's record of the first
# name was left behind while the second name read on. Coming back, the first name must go on from
# the checkpoint of the record that read the file the furthest (web's, a source the configuration
# no longer has), not from its own older one, or the lines web read are billed a second time under
# apache's identifiers (an identifier holds the source: Stripe does not dedupe them).
# docs/tailing.md, "A file another source read: taken over at its checkpoint".
#   A. while the agent runs: renamed by a reload (SIGHUP), renamed back by another;
#   B. while it is stopped: renamed, `run --once`, renamed back (`check` says where `run` goes
#      on), `run --once`.
# Checked after each: the double accepted each identifier once, as many events as awk counts in
# the file, and the spool holds one event per line awk picks (by byte offset), none twice.
. "$(dirname "$0")/lib.sh"
lm_init source_rename_back
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/logs"
L=$T/logs/access.log
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$T/logs/*.log"
part=0
# put: the next 200 lines of the real Apache log appended to the file.
put() {
	part=$((part + 1))
	sed -n "$(((part - 1) * 200 + 1)),$((part * 200))p" "$LOGS/elastic_apache_logs.log" >>"$L"
}
# rename_source FROM TO: [source FROM] and its rule's `source = FROM` become TO.
rename_source() {
	sed -i "s/^\[source $1\]\$/[source $2]/; s/^source = $1\$/source = $2/" "$conf"
	grep -q "^\[source $2\]\$" "$conf" && grep -q "^source = $2\$" "$conf" ||
		fail "test bug: source $1 not renamed $2"
}
# spool_checkpoint SOURCE: the checkpoint of SOURCE's newest record of the file, from the spool.
spool_checkpoint() {
	spool_sql "$conf" 'SELECT "offset" FROM files WHERE source = ? AND path = ? ORDER BY id DESC LIMIT 1' "$1" "$L"
}
reloads_at_least() { [ "$(grep -c 'configuration reloaded' "$T/agent.log")" -ge "$1" ]; }
hup() {
	kill -HUP "$AGENT_PID"
	wait_until 60 reloads_at_least "$1" || fail "reload $1 not logged: $(tail -3 "$T/agent.log")"
}
# check WHAT: every line of the file billed once (see above).
check() {
	local want dups
	want=$(apache_bytes_count "$L")
	dups=$(double_accepted_ids | uniq -d | wc -l)
	assert_eq 0 "$dups" "$1: identifiers the double accepted twice"
	apache_bytes_offsets "$L" >"$T/want_offsets"
	"$LOGMETER" spool export -c "$conf" | "$PYTHON3" -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["rule"] == "bytes" and e["file"] == sys.argv[1]:
        print(e["line_offset"])' "$L" | sort -n >"$T/got_offsets"
	if ! cmp -s "$T/want_offsets" "$T/got_offsets"; then
		note "$1: lines billed twice (offset, times): $(uniq -c "$T/got_offsets" | awk '$1 > 1 {print $2, $1}' | head -n 5 | tr '\n' ' ')"
		fail "$1: the spool holds $(wc -l <"$T/got_offsets") events of $L, awk picks $want lines"
	fi
	assert_eq "$want" "$(accepted_count)" "$1: events the double accepted (awk over $L)"
}

note "A: renamed and renamed back by reloads while the agent runs"
put
agent_start "$conf"
wait_until 60 accepted_at_least "$(apache_bytes_count "$L")" || fail "A: part 1 not delivered"
rename_source apache web
hup 1
put
wait_until 60 accepted_at_least "$(apache_bytes_count "$L")" || fail "A: part 2 not delivered"
rename_source web apache
hup 2
put
wait_until 60 accepted_at_least "$(apache_bytes_count "$L")" || fail "A: part 3 not delivered"
agent_stop || fail "A: the agent stopped with exit status $?"
agent_once "$conf" || fail "A: run --once after the stop exited $?"
check A

note "B: renamed and renamed back while the agent is stopped"
rename_source apache web
put
agent_once "$conf" || fail "B: run --once as web exited $?"
rename_source web apache
put
# `check` says where `run` goes on: web's checkpoint, not apache's own, left behind.
at=$(spool_checkpoint web)
own=$(spool_checkpoint apache)
[ "$at" -gt "$own" ] || fail "test bug: web read to $at, apache to $own"
"$LOGMETER" check -c "$conf" >"$T/check.out" 2>&1 || fail "check exited $?: $(cat "$T/check.out")"
grep -qF "$L: read up to offset $at by source web (its record is reading), further than the record of source apache (offset $own), which was left behind" "$T/check.out" ||
	fail "check did not say apache goes on from web's checkpoint $at: $(cat "$T/check.out")"
agent_once "$conf" || fail "B: run --once as apache again exited $?"
check B
grep -q "read up to offset [0-9]* by source web (its record is [a-z]*): source apache goes on from there" "$T/agent.log" ||
	fail "no warning that apache goes on from web's checkpoint"

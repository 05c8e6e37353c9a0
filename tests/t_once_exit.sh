#!/usr/bin/env bash
# `run --once` from cron: its exit status says whether the run billed everything it read.
#   1. a run that delivered every event it read: exit 0;
#   2. a run in which Stripe refused events (an event name without a meter: 400), so that they
#      became dead letters: exit 1, its last log line counting them and naming `logmeter status`
#      and `logmeter replay --dead`;
#   3. a later run with no new dead letter: exit 0, though the older ones are still in the spool;
#   4. a later run with new ones: exit 1, counting only its own.
# The expected counts come from grep and awk over the lines each run read, and from the
# double's log of the requests it refused, not from logmeter.
. "$(dirname "$0")/lib.sh"
lm_init once_exit
double_start

mkdir -p "$T/logs"
log=$T/logs/access.log
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$log"
config_no_meter "$conf"
: >"$log"
: >"$T/agent.log"
: >"$T/double.log"

# once: run --once; its exit status in $rc, the log of this run alone in $T/run.log and the
# double's log of its requests in $T/run.double.
once() {
	local from_log from_double
	from_log=$(($(wc -l <"$T/agent.log") + 1))
	from_double=$(($(wc -l <"$T/double.log") + 1))
	rc=0
	agent_once "$conf" || rc=$?
	tail -n +"$from_log" "$T/agent.log" >"$T/run.log"
	tail -n +"$from_double" "$T/double.log" >"$T/run.double"
}
# refused_in_run: the identifiers the double refused with a 400 in this run, each once.
refused_in_run() {
	awk -F'\t' '$3 == 400 && $8 == "no_such_meter" {print $6}' "$T/run.double" | sort -u | wc -l
}
# append FIRST LAST [favicon|clean]: appends lines FIRST..LAST of the sample, all of them or
# only those that are no request for /favicon.ico; prints how many favicon requests it appended.
append() {
	sed -n "$1,$2p" "$LOGS/elastic_apache_logs.log" >"$T/chunk"
	if [ "$3" = clean ]; then
		grep -v '"GET /favicon.ico' "$T/chunk" >>"$log" || true
		echo 0
	else
		cat "$T/chunk" >>"$log"
		grep -c '"GET /favicon.ico' "$T/chunk" || true
	fi
}
last_line() { tail -n 1 "$T/run.log"; }

note "1. everything delivered: exit 0"
n=$(append 1 200 clean)
once
assert_eq 0 "$rc" "exit status of a run that delivered everything: $(last_line)"
grep -q 'became dead letter' "$T/run.log" && fail "a clean run spoke of dead letters: $(grep 'became dead letter' "$T/run.log")"
assert_all_delivered "$conf" "$(apache_bytes_count "$log")"

# once_dead FIRST LAST BEFORE: appends lines FIRST..LAST, whose favicon requests the double
# refuses, and runs once: exit 1, the last log line counts the run's dead letters (n_new, by
# grep over the lines and the double's log of refusals) and names replay, and status counts them
# with the BEFORE dead letters of earlier runs.
once_dead() {
	n_new=$(append "$1" "$2" favicon)
	[ "$n_new" -gt 1 ] || fail "test bug: lines $1-$2 hold $n_new favicon requests"
	once
	assert_eq 1 "$rc" "exit status of a run that made dead letters: $(last_line)"
	assert_eq "$n_new" "$(refused_in_run)" "events the double refused in the run"
	last_line | grep -q "run --once: during this run $n_new events became dead letters: \`logmeter status\` says why" ||
		fail "the last log line: $(last_line)"
	last_line | grep -q "\`logmeter replay --dead\` sends the dead letters again" ||
		fail "the last log line names no replay: $(last_line)"
	"$LOGMETER" status -c "$conf" >"$T/status.out" || true
	grep -q "^events: pending 0, delivered $(apache_bytes_count "$log"), dead letters $(($3 + n_new))," "$T/status.out" ||
		fail "status: $(grep '^events' "$T/status.out")"
}

note "2. dead letters: exit 1, counted"
once_dead 201 600 0
n_fav=$n_new

note "3. no new dead letter: exit 0, the older ones still there"
append 601 800 clean >/dev/null
once
assert_eq 0 "$rc" "exit status of a run with no new dead letter: $(last_line)"
grep -q 'became dead letter' "$T/run.log" && fail "the run spoke of older dead letters: $(grep 'became dead letter' "$T/run.log")"
assert_eq 0 "$(refused_in_run)" "events the double refused in the run"
"$LOGMETER" status -c "$conf" --since @0 >"$T/status.out" && fail "status --since @0 forgot the older dead letters"
grep -q "^health: degraded: $n_fav dead letters since" "$T/status.out" ||
	fail "status --since @0: $(grep '^health' "$T/status.out")"

note "4. new dead letters again: exit 1, only this run's counted"
once_dead 801 1200 "$n_fav"
n_fav2=$n_new
echo "t_once_exit: exit 0 with everything delivered, 1 with $n_fav then $n_fav2 new dead letters, 0 with only older ones"

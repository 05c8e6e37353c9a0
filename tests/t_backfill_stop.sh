#!/usr/bin/env bash
# logmeter backfill stopped half-way, through the real binary against the Stripe double:
#   1. SIGTERM while it reads (no agent): it stops at a commit, exits 1 and says what is pending;
#      its record is not left "reading", so beside a running agent the next backfill bills the
#      rest, and the agent sends it: every 2xx line once (identifiers by tests/identifiers.py);
#   2. SIGKILL while it reads beside the agent: the next backfill goes on where it stopped;
#   3. SIGINT while it delivers (no agent): exits 1 and says how many events are still pending;
#      `run --once` delivers them.
# Each archive's lines are committed one at a time (batch_lines = 1), so that it is still reading
# when the test sees its first commit and stops it.
. "$(dirname "$0")/lib.sh"
lm_init backfill_stop
double_start

PATTERN='^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)' # config_apache_bytes's
APACHE=$LOGS/elastic_apache_logs.log
mkdir -p "$T/logs" "$T/archive"
conf=$T/logmeter.conf
write_config "$conf"
sed -i 's/^rescan_interval = 1s$/&\nbatch_lines = 1/' "$conf"
config_apache_bytes "$conf" "$T/logs/access.log"

count_gz() { zcat "$1" | grep -cP "$PATTERN" || true; }
json() { # json PYTHON-EXPRESSION: evaluated with s = the document of status --json
	"$LOGMETER" status -c "$conf" --json 2>/dev/null |
		"$PYTHON3" -c 'import json, sys; s = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
file_offset() { json "max([f['offset'] for f in s['files'] if f['path'] == '$1'] or [0])"; }
file_state() { json "[f['state'] for f in s['files'] if f['path'] == '$1'][0]"; }
nothing_pending() { [ "$(json "s['events']['pending']")" = 0 ]; }
bf_start() { # bf_start ARCHIVE [ENV...]: backfill in the background; its pid in BF_PID
	local archive=$1
	shift
	# SIGINT as a terminal sends it: a background job of a script has it ignored otherwise.
	env --default-signal=INT "$@" "$LOGMETER" backfill -c "$conf" --stamp-now "$archive" \
		>>"$T/backfill.out" 2>"$T/backfill.err" &
	BF_PID=$!
}
# The backfill stopped by its own stop point (docs/crash-testing.md): after its third commit, so
# that a signal finds it half-way through the archive however fast the machine reads it.
bf_stopped() { [ "$(cat /proc/"$BF_PID"/task/*/stat 2>/dev/null | awk '{ print $3 }' | sort -u)" = T ]; }
STOP_HALF_WAY=LOGMETER_STOP_AT=spool_commit_after:3
archive_ids() { # archive_ids ARCHIVE: the identifiers of its 2xx lines under its record's uid
	zcat "$1" >"$T/content"
	apache_bytes_offsets "$T/content" | identifiers_of apache "$(file_uid "$conf" "$1")" bytes
}

# --- 1. SIGTERM while reading, no agent; then the rest beside the agent -----------------------
sed -n '1,3000p' "$APACHE" | gzip >"$T/archive/a.log.gz"
bf_start "$T/archive/a.log.gz" "$STOP_HALF_WAY"
wait_until 120 bf_stopped || fail "backfill did not reach its stop point: $(cat "$T/backfill.err")"
kill -TERM "$BF_PID"
kill -CONT "$BF_PID"
rc=0
wait "$BF_PID" || rc=$?
assert_eq 1 "$rc" "exit status of a backfill stopped by SIGTERM"
grep -q 'SIGTERM: stopping at the next commit' "$T/backfill.err" || fail "no word of the stop: $(cat "$T/backfill.err")"
grep -q "a.log.gz: stopped: [0-9]* events of it were committed; run the backfill again" "$T/backfill.err" ||
	fail "no word of what was committed: $(cat "$T/backfill.err")"
grep -q 'stopped before delivering everything: [1-9][0-9]* events still pending' "$T/backfill.err" ||
	fail "no word of what is pending: $(cat "$T/backfill.err")"
off=$(file_offset "$T/archive/a.log.gz")
size=$(zcat "$T/archive/a.log.gz" | wc -c)
[ "$off" -gt 0 ] && [ "$off" -lt "$size" ] || fail "test bug: the backfill was not stopped half-way ($off of $size)"
assert_eq drained "$(file_state "$T/archive/a.log.gz")" "state of the record of a backfill stopped half-way"
assert_eq 0 "$(accepted_count)" "events sent by a backfill stopped while reading"
note "SIGTERM while reading: exit 1 at offset $off of $size, the record left drained"

sed -n '9001,9010p' "$APACHE" >"$T/logs/access.log"
agent_start "$conf"
wait_until 30 accepted_at_least "$(grep -cP "$PATTERN" "$T/logs/access.log")" ||
	fail "the agent did not bill its live file"
bf_start "$T/archive/a.log.gz"
wait "$BF_PID" || fail "the backfill beside the agent exited $?: $(cat "$T/backfill.err")"
grep -q "a.log.gz: gzip, [0-9]* bytes: [0-9]* events added from [0-9]* lines after offset $off" "$T/backfill.out" ||
	fail "it did not go on where it stopped: $(cat "$T/backfill.out")"
want=$(($(count_gz "$T/archive/a.log.gz") + $(grep -cP "$PATTERN" "$T/logs/access.log")))
wait_until 60 accepted_at_least "$want" || fail "the agent did not send the rest: $(accepted_count) of $want"
wait_until 30 nothing_pending || fail "events still pending"
assert_eq "$want" "$(accepted_count)" "events of the archive and the live file"
note "the rest billed beside the agent, each line once"

# --- 2. SIGKILL while reading beside the agent --------------------------------------------------
sed -n '3001,5000p' "$APACHE" | gzip >"$T/archive/b.log.gz"
bf_start "$T/archive/b.log.gz" "$STOP_HALF_WAY"
wait_until 120 bf_stopped || fail "backfill did not reach its stop point: $(cat "$T/backfill.err")"
kill -KILL "$BF_PID"
wait "$BF_PID" 2>/dev/null || true
off=$(file_offset "$T/archive/b.log.gz")
assert_eq drained "$(file_state "$T/archive/b.log.gz")" "state of the record of a backfill killed half-way"
bf_start "$T/archive/b.log.gz"
wait "$BF_PID" || fail "the backfill after SIGKILL exited $?: $(cat "$T/backfill.err")"
grep -q "b.log.gz: gzip, [0-9]* bytes: [0-9]* events added from [0-9]* lines after offset $off" "$T/backfill.out" ||
	fail "it did not go on where it was killed: $(cat "$T/backfill.out")"
want=$((want + $(count_gz "$T/archive/b.log.gz")))
wait_until 60 accepted_at_least "$want" || fail "the agent did not send b: $(accepted_count) of $want"
wait_until 30 nothing_pending || fail "events still pending"
assert_eq "$want" "$(accepted_count)" "events after a backfill killed and run again"
agent_stop || fail "the agent exited $?"
note "SIGKILL while reading: the next backfill went on from offset $off"

# --- 3. SIGINT while delivering, no agent -------------------------------------------------------
sed -n '5001,7000p' "$APACHE" | gzip >"$T/archive/c.log.gz"
double_faults '500*100000' # every request fails until cleared: backfill keeps retrying
n=$(accepted_count)
bf_start "$T/archive/c.log.gz"
delivering() { grep -q 'events added; delivering' "$T/backfill.err"; }
wait_until 60 delivering || fail "backfill did not start delivering"
kill -INT "$BF_PID"
rc=0
wait "$BF_PID" || rc=$?
assert_eq 1 "$rc" "exit status of a backfill stopped by SIGINT while delivering"
grep -q 'stopped before delivering everything: [1-9][0-9]* events still pending' "$T/backfill.err" ||
	fail "no word of what is pending: $(cat "$T/backfill.err")"
double_faults_json '{"clear": true}'
agent_once "$conf" || fail "run --once exited $?"
want=$((want + $(count_gz "$T/archive/c.log.gz")))
assert_eq "$want" "$(accepted_count)" "events once run --once delivered what backfill left"
{
	apache_bytes_ids "$conf" "$T/logs/access.log"
	for gz in a b c; do archive_ids "$T/archive/$gz.log.gz"; done
} | sort >"$T/expected_ids"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/ids.diff" ||
	fail "accepted identifiers differ: $(head -n 20 "$T/ids.diff")"
note "SIGINT while delivering: exit 1, the pending events said and delivered by run --once"

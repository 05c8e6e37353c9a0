#!/usr/bin/env bash
# Crash loop: the agent ingests the real nginx log (and lines appended while it runs, and new files)
# and sends to the Stripe double, which behaves as Stripe documents and fails 4 % of the requests at
# random: 500s saved under their Idempotency-Key and replayed (with and without the event recorded),
# 429s, 400 rate_limit, resets before and after the event was recorded, dropped answers and slow
# replies (docs/stripe-contract.md); it is killed at every named
# crash point (LOGMETER_CRASH_AT, see docs/crash-testing.md) in turn, with varying occurrence
# counts, and by kill -9 at random moments, then started again; CRASHES times (default 50). After
# every crash tests/crash_check.py checks what can be checked mid-run (nothing accepted twice or
# with other content, nothing accepted that is not expected, no checkpoint past an uncommitted
# event, nothing marked delivered that the double did not accept, timestamps kept). At the end a
# `run --once` completes the work: the double's accepted identifiers are exactly the expected set,
# nothing is pending, the dead letters are exactly the expected ones.
#
# Knobs (environment): CRASHES (50), SEED (random; printed, to repeat a run), CHUNK (bytes of the
# log appended per restart, 24000), NEW_FILE_EVERY (a new log file every N crashes, 10),
# REPORT (a file to copy the per-crash table to). bench/crash_loop.sh runs it with CRASHES=1000.
. "$(dirname "$0")/lib.sh"
lm_init crash_loop

CRASHES=${CRASHES:-50}
SEED=${SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
CHUNK=${CHUNK:-24000}
NEW_FILE_EVERY=${NEW_FILE_EVERY:-10}
RANDOM=$SEED
CHECK_PY=$top_srcdir/tests/crash_check.py
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log
note "seed $SEED, $CRASHES crashes"

# Every crash_point() call site names a known point, and every known point has a call site.
"$LOGMETER" crash-points | sort > "$T/points_known"
grep -ho 'crash_point("[a-z0-9_]*")' "$top_srcdir"/src/*.c "$top_srcdir"/src/*/*.c | sed 's/.*("\(.*\)")/\1/' | sort -u > "$T/points_used"
diff -u "$T/points_known" "$T/points_used" > "$T/points_diff" ||
	fail "crash points in the sources differ from logmeter crash-points: $(cat "$T/points_diff")"

double_start
double_faults_json "{\"rate\": 0.04, \"kinds\": [\"500\", \"500rec\", \"429\", \"400rl\", \"reset\", \"reset_after\", \"drop_after\", \"slow:300\"], \"seed\": $SEED}"

mkdir -p "$T/logs"
cp "$SRC_LOG" "$T/logs/access.log"
write_config "$T/logmeter.conf"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 5000/' "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nbatch_lines = 50/' "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/*.log"
cat >> "$T/logmeter.conf" <<CONF
[rule downloads]
source = nginx
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET /downloads/product_2 [^"]*" 200 
customer = ip
value = 1
; 2015 timestamps: outside Stripe's window, dead-lettered by the sender, never sent
[rule stale]
source = nginx
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "GET /downloads/product_3 
customer = ip
value = 1
timestamp = time
; no such meter at the double: Stripe rejects them, dead letters
[rule rejected]
source = nginx
event_name = no_such_meter
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 403 
customer = ip
value = 1
CONF
"$LOGMETER" check -c "$T/logmeter.conf" >/dev/null || fail "the configuration is invalid"

# Lines appended while the agent runs: the log again, CHUNK bytes at a time, cut anywhere (a partial
# last line waits for its newline). After the chunk's first complete line goes one of the log's own
# product_3 or 403 lines, so that every run has a dead letter to make (sender_dead_letter).
SRC_SIZE=$(stat -c %s "$SRC_LOG")
cursor=0 dead_next=0
grep -E '"GET /downloads/product_3 |" 403 ' "$SRC_LOG" > "$T/dead_lines"
n_dead_lines=$(wc -l < "$T/dead_lines")
[ "$n_dead_lines" -gt 0 ] || fail "no product_3 or 403 lines in $SRC_LOG"
append_chunk() { # FILE BYTES
	local file=$1 n=$2 take
	: > "$T/chunk"
	while [ "$n" -gt 0 ]; do
		take=$(( SRC_SIZE - cursor < n ? SRC_SIZE - cursor : n ))
		tail -c +$((cursor + 1)) "$SRC_LOG" | head -c "$take" >> "$T/chunk"
		cursor=$(( (cursor + take) % SRC_SIZE ))
		n=$(( n - take ))
	done
	{
		head -n 1 "$T/chunk"
		sed -n "$((dead_next + 1))p" "$T/dead_lines"
		tail -n +2 "$T/chunk"
	} >> "$file"
	dead_next=$(( (dead_next + 1) % n_dead_lines ))
}
# Completes a file's partial last line.
finish_line() {
	local file=$1
	[ -s "$file" ] || return 0
	[ "$(tail -c 1 "$file" | od -An -c | tr -d ' ')" = '\n' ] || printf '\n' >> "$file"
}

# The agent's pid is a zombie or gone (kill -0 still succeeds on an unreaped child).
agent_dead() {
	[ ! -e "/proc/$AGENT_PID" ] || [ "$(awk '{print $3}' "/proc/$AGENT_PID/stat" 2>/dev/null)" = Z ]
}

# The agent started in this cycle logged that it started (its signals are handled from then on).
agent_started() {
	tail -n +$((lines_before + 1)) "$T/agent.log" 2>/dev/null | grep -q 'info: started'
}

# Reaps the agent (in this shell: a subshell cannot wait for it); its exit status in $REAP_RC.
agent_reap() {
	REAP_RC=0
	{ wait "$AGENT_PID"; } 2>/dev/null || REAP_RC=$?
	AGENT_PID=
}

# check [--final]: runs crash_check.py; its counters in $c_accepted, $c_pending, ...
check() {
	local line kv
	curl -sS --noproxy '*' --max-time 30 -f -o "$T/stats.json" "$DOUBLE_URL/_double/stats" ||
		fail "GET /_double/stats failed"
	line=$("$PYTHON3" "$CHECK_PY" --state "$T/state" --config "$T/logmeter.conf" --record "$T/accepted.tsv" \
		--stats "$T/stats.json" --log "$T/double.log" --cache "$T/expected.cache" "$@" "$T"/logs/*.log \
		2> "$T/check.err") ||
		fail "after crash $k ($what): $(cat "$T/check.err")"
	for kv in $line; do
		printf -v "c_${kv%%=*}" '%s' "${kv#*=}"
	done
}

points=(tail_before_commit spool_commit_inside spool_commit_after sender_after_answer
	sender_dead_letter spool_mark_inside shutdown kill9)
# The occurrence count of a point: ingest points fire within the lines of one or two appended
# chunks (batch_lines = 50), sender points within the answers to the events pending now (at
# most 250 answers; a mark transaction records up to a second's deliveries, so only a few).
count_for() {
	local cap=$(( c_pending < 250 ? c_pending + 20 : 250 ))
	case $1 in
	# A chunk is about CHUNK / 160 lines, at least one commit per 50 of them.
	tail_before_commit | spool_commit_inside | spool_commit_after)
		echo $(( 1 + RANDOM % (CHUNK / 8000 + 1) )) ;;
	sender_after_answer) echo $(( 1 + RANDOM % cap )) ;;
	spool_mark_inside) echo $(( 1 + RANDOM % 2 )) ;;
	sender_dead_letter) echo $(( 1 + RANDOM % 3 )) ;;
	shutdown) echo $(( 1 + RANDOM % 2 )) ;;
	spool_file_add) echo 1 ;;
	esac
}

# Per crash: the point (or kill -9), whether it fired, events accepted so far and pending in the
# spool after the crash, re-sends the double absorbed during this run (replays + "already exists":
# Stripe's dedupe; mostly the events the previous crash left in flight or unrecorded) and how many
# answers it dropped on purpose meanwhile (each causes one more re-send), seconds per cycle.
printf '%-6s %-24s %-10s %9s %8s %8s %7s %6s\n' crash point outcome accepted pending resent dropped s > "$T/report"
prev_resends=0 prev_faults=0 fired=0 unreached=0 killed=0 nfiles=0 c_pending=0
cycle_ms=$(date +%s%3N) start_ms=$cycle_ms
declare -A fired_by
for k in $(seq 1 "$CRASHES"); do
	point=${points[$(( (k - 1) % ${#points[@]} ))]}
	if [ $(( k % NEW_FILE_EVERY )) -eq 0 ]; then
		# A new file, found by the scan at start: its record is added, then the agent dies.
		nfiles=$((nfiles + 1))
		append_chunk "$T/logs/part-$nfiles.log" $(( CHUNK / 2 ))
		finish_line "$T/logs/part-$nfiles.log"
		point=spool_file_add
	fi
	lines_before=0
	[ ! -f "$T/agent.log" ] || lines_before=$(wc -l < "$T/agent.log")
	if [ "$point" = kill9 ]; then
		what="kill-9"
		unset LOGMETER_CRASH_AT
	else
		n=$(count_for "$point")
		what="$point:$n"
		export LOGMETER_CRASH_AT=$what
	fi
	agent_start "$T/logmeter.conf"
	unset LOGMETER_CRASH_AT
	append_chunk "$T/logs/access.log" "$CHUNK"
	outcome=
	case $point in
	kill9)
		sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.05 + (r % 150) / 100 }')"
		agent_dead && fail "crash $k: the agent exited by itself: $(tail -n 5 "$T/agent.log")"
		kill -KILL "$AGENT_PID"
		wait_until 60 agent_dead || fail "crash $k: the agent survived SIGKILL"
		outcome=killed
		killed=$((killed + 1))
		;;
	shutdown)
		# SIGTERM only once it is handled (a loaded machine can take long to start the agent).
		wait_until 60 agent_started || fail "crash $k: the agent did not start: $(tail -n 5 "$T/agent.log")"
		sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + (r % 60) / 100 }')"
		kill -TERM "$AGENT_PID"
		wait_until 60 agent_dead || fail "crash $k: the agent did not end after SIGTERM"
		;;
	*)
		if ! wait_until 5 agent_dead; then
			# Not reached within 5 s (say, no dead letter pending): a kill -9 instead.
			kill -KILL "$AGENT_PID" 2>/dev/null || true
			outcome=unreached
			wait_until 60 agent_dead || fail "crash $k: the agent survived SIGKILL"
		fi
		;;
	esac
	agent_reap
	if [ "$outcome" != killed ]; then
		sed -n "$((lines_before + 1)),\$p" "$T/agent.log" > "$T/agent.run.log"
		if grep -q "crash point $point reached ($n)" "$T/agent.run.log"; then
			[ "$REAP_RC" = 137 ] ||
				fail "crash $k: exit status $REAP_RC at $what, expected 137 (SIGKILL)"
			outcome=crashed
			fired=$((fired + 1))
			fired_by[$point]=$(( ${fired_by[$point]:-0} + 1 ))
		elif [ "$outcome" = unreached ]; then
			unreached=$((unreached + 1))
		else
			fail "crash $k: the agent ended (status $REAP_RC) without reaching $what: $(tail -n 5 "$T/agent.run.log")"
		fi
	fi
	check
	now_ms=$(date +%s%3N)
	printf '%-6s %-24s %-10s %9s %8s %8s %7s %6s\n' "$k" "$what" "$outcome" "$c_accepted" \
		"$c_pending" $((c_resends - prev_resends)) $((c_recorded_faults - prev_faults)) \
		"$(awk -v d=$((now_ms - cycle_ms)) 'BEGIN { printf "%.2f", d / 1000 }')" >> "$T/report"
	prev_resends=$c_resends prev_faults=$c_recorded_faults cycle_ms=$now_ms
done

# The end: complete the partial line, then run to completion.
finish_line "$T/logs/access.log"
what="final run --once"
k=final
# Events the last cycles left pending may become dead letters in this run (the rejected rules):
# then it exits 1, counting exactly those (the spool's dead letters before and after it, through
# status); else 0. Nothing is lost, in any case.
dead_before=$("$LOGMETER" status -c "$T/logmeter.conf" 2>/dev/null | sed -n 's/^events: .*, dead letters \([0-9]*\),.*/\1/p')
[ -n "$dead_before" ] || fail "status has no dead letter count before the final run"
rc=0
agent_once "$T/logmeter.conf" || rc=$?
dead_after=$("$LOGMETER" status -c "$T/logmeter.conf" 2>/dev/null | sed -n 's/^events: .*, dead letters \([0-9]*\),.*/\1/p')
made=$((dead_after - dead_before))
case $made in
0) assert_eq 0 "$rc" "final run --once's exit status with no new dead letter: $(tail -n 1 "$T/agent.log")" ;;
1) assert_eq 1 "$rc" "final run --once's exit status with a new dead letter"
	tail -n 1 "$T/agent.log" | grep -q "run --once: during this run 1 event became a dead letter: " ||
		fail "final run --once's last log line: $(tail -n 1 "$T/agent.log")" ;;
*) assert_eq 1 "$rc" "final run --once's exit status with $made new dead letters"
	tail -n 1 "$T/agent.log" | grep -q "run --once: during this run $made events became dead letters: " ||
		fail "final run --once's last log line: $(tail -n 1 "$T/agent.log")" ;;
esac
check --final
printf '%-6s %-24s %-10s %9s %8s %8s %7s %6s\n' final run-once done "$c_accepted" "$c_pending" \
	$((c_resends - prev_resends)) $((c_recorded_faults - prev_faults)) \
	"$(awk -v d=$(($(date +%s%3N) - cycle_ms)) 'BEGIN { printf "%.2f", d / 1000 }')" >> "$T/report"
expected=$c_expected dead=$c_dead resends=$c_resends faults=$c_recorded_faults
assert_eq "$expected" "$c_accepted" "accepted events"
st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending 0, delivered $expected, dead letters $dead" <<<"$st" || fail "status: $st"
[ "$dead" -gt 0 ] || fail "no dead letters: the stale and rejected rules matched nothing"

cat "$T/report"
[ -z "${REPORT:-}" ] || cp "$T/report" "$REPORT"
points_fired=$(for p in "${!fired_by[@]}"; do printf '%s=%s ' "$p" "${fired_by[$p]}"; done)
echo "t_crash_loop: seed $SEED: $CRASHES crashes: $fired at crash points ($points_fired), $killed by kill -9 at random moments, $unreached kill -9 after a point was not reached in 5 s"
echo "t_crash_loop: $expected events each accepted exactly once ($(wc -l < "$T/logs/access.log") lines in access.log, $nfiles more files), $dead dead letters, nothing pending"
echo "t_crash_loop: $(( ($(date +%s%3N) - start_ms) / 1000 )) s in all"
echo "t_crash_loop: re-sends absorbed by the double (replays + duplicates): $resends in all, of which $faults follow faults injected after the double had the event; $(awk -v r="$resends" -v f="$faults" -v c="$CRASHES" 'BEGIN { printf "%.1f", (r - f) / c }') per crash"
# Each named point must have fired at least once (ingest points need appended lines, sender
# points pending events): a point that never fires proves nothing.
if [ "$CRASHES" -ge 40 ]; then
	for p in "${points[@]}" spool_file_add; do
		[ "$p" = kill9 ] && continue
		[ "${fired_by[$p]:-0}" -gt 0 ] || fail "crash point $p never fired in $CRASHES crashes"
	done
fi

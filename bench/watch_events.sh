#!/usr/bin/env bash
# CPU per inotify event: N files in one directory, one line appended at a time to a random one of
# them (one write(2), so one IN_MODIFY) while the agent runs; the agent's CPU time over the appends
# (every thread: the sum of /proc/PID/task/*/schedstat's first field, in nanoseconds) divided by
# their number. Several runs per N, each with a new spool and new files: median and range. The
# rule matches no line, so nothing is sent: what is measured is finding the tail of each event,
# reading the line and committing the checkpoint. Not part of `make check`.
#
#   bench/watch_events.sh                          # N = 100 1000 5000, 5 runs each
#   NS="1000" RUNS=3 APPENDS=5000 bench/watch_events.sh
#   MAX_OPEN=256 bench/watch_events.sh             # most files closed: every append reopens one
#   LOGMETER=/other/build/src/logmeter bench/watch_events.sh   # another build, to compare
#
# Environment: NS (numbers of files), RUNS (per N), APPENDS (per run), RATE (appends per second),
# MAX_OPEN (max_open_files; default N + 16, so that every file stays open), LOGMETER_LOGS.
# Run it from the top of a built tree.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
: "${LOGMETER:=$PWD/src/logmeter}"
[ -x "$LOGMETER" ] || { echo "no logmeter binary at $LOGMETER: build first, or set LOGMETER" >&2; exit 1; }
: "${NS:=100 1000 5000}"
: "${RUNS:=5}"
: "${APPENDS:=10000}"
: "${RATE:=2000}"
: "${MAX_OPEN:=}"
LOGS=${LOGMETER_LOGS:-$top/../shared/data/logs}
SAMPLE=$LOGS/elastic_nginx_logs_prefix29480.log
[ -f "$SAMPLE" ] || { echo "the shared test logs are missing: $LOGS (set LOGMETER_LOGS)" >&2; exit 1; }
PY=${PYTHON3:-python3}

T=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench-watch.XXXXXX")
AGENT=
cleanup() {
	if [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; then
		kill -TERM "$AGENT" 2>/dev/null || true
		wait "$AGENT" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT

# cpu_ns PID: CPU time of every thread of PID so far, in nanoseconds.
cpu_ns() {
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# progress STATE_DIR: "records bytes-checkpointed", from the spool (read-only).
progress() {
	"$PY" - "$1" <<'PY'
import sqlite3, sys
try:
    db = sqlite3.connect("file:%s/spool.db?mode=ro" % sys.argv[1], uri=True, timeout=10)
    n, s = db.execute("SELECT count(*), coalesce(sum(offset), 0) FROM files").fetchone()
    print(n, s)
except sqlite3.Error:
    print(0, 0)
PY
}

# wait_for STATE_DIR FILES BYTES: until the spool has FILES records whose checkpoints add up to
# BYTES (every line read), at most 600 s.
wait_for() {
	local i
	for i in $(seq 6000); do
		[ "$(progress "$1")" = "$2 $3" ] && return 0
		sleep 0.1
	done
	echo "the agent did not read everything: $(progress "$1"), expected $2 $3" >&2
	return 1
}

# one_run N MAX_OPEN: prints the CPU nanoseconds per append of one run.
one_run() {
	local n=$1 max_open=$2 d=$T/run before after
	rm -rf "$d"
	mkdir -p "$d/logs" "$d/state"
	printf 'sk_test_bench\n' > "$d/key"
	chmod 0600 "$d/key"
	cat > "$d/logmeter.conf" <<CONF
[agent]
state_dir = $d/state
instance = bench
rescan_interval = 1h
max_open_files = $max_open
durability = normal
log_level = warning
[stripe]
api_base = http://127.0.0.1:9
api_key_file = $d/key
[source bench]
path = $d/logs/*.log
[rule never]
source = bench
event_name = requests
pattern = ^NEVER-MATCHES (?<c>\S+)
customer = c
value = 1
CONF
	# One line in each file to begin with.
	"$PY" - "$d/logs" "$n" "$SAMPLE" <<'PY'
import sys
d, n, sample = sys.argv[1], int(sys.argv[2]), sys.argv[3]
line = open(sample, "rb").readline()
for i in range(n):
    with open("%s/f%05d.log" % (d, i), "wb") as f:
        f.write(line)
PY
	local size0
	size0=$(cat "$d"/logs/*.log | wc -c)
	"$LOGMETER" run -c "$d/logmeter.conf" 2> "$d/agent.log" &
	AGENT=$!
	wait_for "$d/state" "$n" "$size0"
	sleep 1 # the sender's start (its meter check fails at once: nothing listens on port 9)
	before=$(cpu_ns "$AGENT")
	# APPENDS lines, each appended with one write(2) to a random file, RATE a second.
	"$PY" - "$d/logs" "$n" "$SAMPLE" "$APPENDS" "$RATE" <<'PY'
import os, random, sys, time
d, n, sample, appends, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lines = open(sample, "rb").read().split(b"\n")[:-1][:1000]
fds = [os.open("%s/f%05d.log" % (d, i), os.O_WRONLY | os.O_APPEND) for i in range(n)]
rng = random.Random(1)
tick = 0.01
per_tick = max(1, int(rate * tick))
start = time.monotonic()
done = 0
while done < appends:
    for _ in range(min(per_tick, appends - done)):
        os.write(fds[rng.randrange(n)], lines[done % len(lines)] + b"\n")
        done += 1
    delay = start + (done / per_tick) * tick - time.monotonic()
    if delay > 0:
        time.sleep(delay)
for fd in fds:
    os.close(fd)
PY
	wait_for "$d/state" "$n" "$(cat "$d"/logs/*.log | wc -c)"
	after=$(cpu_ns "$AGENT")
	kill -TERM "$AGENT"
	wait "$AGENT" || true
	AGENT=
	echo $(( (after - before) / APPENDS ))
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "logmeter: $LOGMETER"
echo "appends per run: $APPENDS at $RATE/s; $RUNS runs per row; CPU of all the agent's threads"
printf '%8s %10s %12s %10s %10s   %s\n' files max_open "median µs" "min µs" "max µs" "runs (µs per append)"
for n in $NS; do
	mo=${MAX_OPEN:-$((n + 16))}
	runs=()
	for r in $(seq "$RUNS"); do
		runs+=("$(one_run "$n" "$mo")")
	done
	printf '%s\n' "${runs[@]}" | sort -n | awk -v n="$n" -v mo="$mo" '
		{ v[NR] = $1 / 1000 }
		END {
			med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			list = ""
			for (i = 1; i <= NR; i++) list = list sprintf(" %.1f", v[i])
			printf "%8d %10d %12.1f %10.1f %10.1f  %s\n", n, mo, med, v[1], v[NR], list
		}'
done

#!/usr/bin/env bash
# Ingest throughput of the spool with `[agent] durability = strict` (SQLite synchronous=FULL) and
# `normal` (synchronous=NORMAL), for a few batch sizes. Results go into docs/durability.md.
#
# usage: bench/durability.sh [LINES] [BATCH_LINES...]     (defaults: 200000; 1000 100 10)
#
# Generates LINES lines of the benchmark workload (bench/gen_access_log.py, or
# $GEN), then for each durability and batch size starts `logmeter run` on a fresh state directory
# with api_base pointing at a closed port on 127.0.0.1 (the sender finds nothing to talk to and
# backs off, so only ingest works) and times from the start until the file's checkpoint reaches
# the end of the log (polled every 50 ms with the sqlite3 CLI). Each run is repeated 3 times; the
# median is printed. Needs the build's src/logmeter ($LOGMETER), python3, sqlite3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
LOGMETER=${LOGMETER:-$top/src/logmeter}
GEN=${GEN:-$here/gen_access_log.py}
lines=${1:-200000}
shift || true
batches=${*:-1000 100 10}
[ -x "$LOGMETER" ] || { echo "no binary at $LOGMETER (build first, or set LOGMETER)" >&2; exit 2; }
[ -f "$GEN" ] || { echo "no generator at $GEN (set GEN)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench.XXXXXX")
pid=
cleanup() {
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/logs"
python3 "$GEN" "$tmp/logs/access.log" "$lines" > "$tmp/summary.json"
size=$(stat -c %s "$tmp/logs/access.log")
events=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines_with_api_key"])' "$tmp/summary.json")
# A port nothing listens on: bind one, note it, close it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "sk_test_bench" > "$tmp/key"
chmod 600 "$tmp/key"
echo "workload: $lines lines, $size bytes, $events events; filesystem of $tmp: $(df -T "$tmp" | awk 'NR==2 {print $2}')"
printf '%-8s %6s %10s %12s %12s %14s\n' durability batch seconds lines/s events/s "us/commit"

run_one() {
	local mode=$1 batch=$2 start end off
	rm -rf "$tmp/state"
	cat > "$tmp/conf" <<CONF
[agent]
state_dir = $tmp/state
instance = bench
durability = $mode
batch_lines = $batch
log_level = error
[stripe]
api_base = http://127.0.0.1:$port
api_key_file = $tmp/key
retry_min_backoff = 60s
retry_max_backoff = 60s
[source web]
path = $tmp/logs/access.log
[rule bytes]
source = web
event_name = bandwidth_bytes
pattern = [?&]api_key=(?<cust>[A-Za-z0-9_]+)[^"]*" \d{3} (?<bytes>\d+)
customer = cust
value = bytes
CONF
	start=$(date +%s%N)
	"$LOGMETER" run -c "$tmp/conf" 2>>"$tmp/agent.log" &
	pid=$!
	while :; do
		off=$(sqlite3 "file:$tmp/state/spool.db?mode=ro" 'SELECT "offset" FROM files' 2>/dev/null || true)
		[ "${off:-0}" = "$size" ] && break
		kill -0 "$pid" 2>/dev/null || { echo "logmeter exited; see $tmp/agent.log" >&2; cat "$tmp/agent.log" >&2; exit 1; }
		sleep 0.05
	done
	end=$(date +%s%N)
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	echo $(( (end - start) / 1000 ))
}

for batch in $batches; do
	for mode in strict normal; do
		us=$( (for i in 1 2 3; do run_one "$mode" "$batch"; done) | sort -n | sed -n 2p)
		commits=$(( (lines + batch - 1) / batch ))
		awk -v m="$mode" -v b="$batch" -v us="$us" -v l="$lines" -v e="$events" -v c="$commits" \
			'BEGIN { printf "%-8s %6d %10.2f %12.0f %12.0f %14.0f\n", m, b, us / 1e6, l / (us / 1e6), e / (us / 1e6), us / c }'
	done
done

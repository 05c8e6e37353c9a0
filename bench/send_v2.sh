#!/usr/bin/env bash
# Sending throughput and CPU per event of v1 (one request per event), v2 (meter event streams,
# 100 events a request) and v2 with aggregation windows, in one run, against a loopback sink
# (bench/sink.py) that answers without checking, so that logmeter is what is measured.
#
# usage: bench/send_v2.sh [LINES] [V1_LINES]      (defaults: 200000; 20000)
#
# Per mode: phase 1 ingests the benchmark workload (bench/gen_access_log.py, or
# $GEN; the rule bills the response bytes of each line with an api_key to that key) with
# api_base on a closed port, until the file's checkpoint reaches its end (polled with sqlite3),
# then stops the agent; phase 2 runs `logmeter run --once` against the sink with the spool of
# phase 1, so that it only sends (aggregated: it waits for the windows of 1 s to close, then
# sends one event per customer and window; its events/s includes that wait). Reported: lines/s and CPU per line of ingest, events/s
# and CPU per event of sending (user + system time of the agent, /usr/bin/time). `grep -cP` of
# the same pattern over the same file is timed too, for the ratio (bench/README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
LOGMETER=${LOGMETER:-$top/src/logmeter}
GEN=${GEN:-$here/gen_access_log.py}
lines=${1:-200000}
v1_lines=${2:-20000}
[ -x "$LOGMETER" ] || { echo "no binary at $LOGMETER (build first, or set LOGMETER)" >&2; exit 2; }
[ -f "$GEN" ] || { echo "no generator at $GEN (set GEN)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench.XXXXXX")
pid= sink=
cleanup() {
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
	[ -z "$sink" ] || kill "$sink" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
export TZ=UTC LC_ALL=C no_proxy=127.0.0.1 NO_PROXY=127.0.0.1
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
pattern='[?&]api_key=(?<cust>[A-Za-z0-9_]+)[^"]*" \d{3} (?<bytes>\d+)'

python3 "$GEN" "$tmp/all.log" "$lines" > /dev/null
head -n "$v1_lines" "$tmp/all.log" > "$tmp/v1.log"
python3 "$here/sink.py" --port-file "$tmp/port" --meter bench &
sink=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
url=http://127.0.0.1:$(cat "$tmp/port")
printf 'sk_test_bench\n' > "$tmp/key"
chmod 600 "$tmp/key"

# conf FILE STATE LOG BASE API [AGGREGATE]
conf() {
	cat > "$1" <<CONF
[agent]
state_dir = $2
instance = bench
durability = normal
log_level = warning
[stripe]
api_key_file = $tmp/key
api_base = $4
meter_events_base = $4
api = $5
max_requests_per_second = 10000
max_concurrency = 16
retry_min_backoff = 10s
retry_max_backoff = 60s
[source s]
path = $3
[rule r]
source = s
event_name = bench
pattern = $pattern
customer = cust
value = bytes
CONF
	[ -z "${6:-}" ] || printf 'aggregate = %s\naggregate_grace = 0s\n' "$6" >> "$1"
}

cpu() { # the "%e %U %S" line of /usr/bin/time: CPU seconds
	awk '{ printf "%.3f", $2 + $3 }' "$1"
}

printf '%-11s %9s %11s %12s %9s %11s %12s %8s\n' mode lines "lines/s" "us/line" events "events/s" "us/event" requests
for mode in v1 v2 aggregated; do
	log=$tmp/all.log api=v2 agg=
	[ "$mode" = v1 ] && log=$tmp/v1.log api=v1
	[ "$mode" = aggregated ] && agg=1s
	n=$(wc -l < "$log")
	size=$(stat -c %s "$log")
	state=$tmp/state-$mode
	rm -rf "$state"
	conf "$tmp/ingest.conf" "$state" "$log" http://127.0.0.1:1 "$api" "$agg"
	conf "$tmp/send.conf" "$state" "$log" "$url" "$api" "$agg"
	start=$(date +%s%N)
	/usr/bin/time -o "$tmp/time.ingest" -f '%e %U %S' "$LOGMETER" run -c "$tmp/ingest.conf" 2>/dev/null &
	pid=$!
	while :; do
		off=$(sqlite3 "file:$state/spool.db?mode=ro" 'SELECT "offset" FROM files' 2>/dev/null || true)
		[ "${off:-0}" = "$size" ] && break
		sleep 0.05
	done
	end=$(date +%s%N)
	kill -TERM $(pgrep -P "$pid" -x logmeter) 2>/dev/null || kill -TERM "$pid"
	wait "$pid" || true
	pid=
	ingest_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	before=$(curl -s "$url/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
	breq=$(curl -s "$url/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
	/usr/bin/time -o "$tmp/time.send" -f '%e %U %S' "$LOGMETER" run --once -c "$tmp/send.conf" 2>/dev/null
	after=$(curl -s "$url/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
	areq=$(curl -s "$url/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
	events=$((after - before))
	send_s=$(awk '{ print $1 }' "$tmp/time.send")
	awk -v m="$mode" -v n="$n" -v is="$ingest_s" -v ic="$(cpu "$tmp/time.ingest")" \
		-v e="$events" -v ss="$send_s" -v sc="$(cpu "$tmp/time.send")" -v r="$((areq - breq))" \
		'BEGIN { printf "%-11s %9d %11.0f %12.2f %9d %11.0f %12.2f %8d\n", m, n, n / is, ic * 1e6 / n, e, e / ss, (e > 0 ? sc * 1e6 / e : 0), r }'
done
start=$(date +%s%N)
grep -cP "$pattern" "$tmp/all.log" > /dev/null
end=$(date +%s%N)
awk -v n="$lines" -v a="$start" -v b="$end" 'BEGIN { printf "grep -cP: %.0f lines/s\n", n / ((b - a) / 1e9) }'

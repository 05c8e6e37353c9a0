#!/usr/bin/env bash
# The sender alone, several builds against each other: one spool is filled once, then each build
# in turn sends a copy of it with `run --once` to bench/sink.py on 127.0.0.1, RUNS rounds, so that
# the builds share whatever else the machine is doing. CPU is the agent's user + system time (GNU
# time, all threads) over the events the sink counted. Not part of `make check`.
#
# usage: bench/send_spool.sh BINARY...          from the top of a built tree
#        API=v1 LINES=20000 RUNS=5 bench/send_spool.sh /old/src/logmeter src/logmeter
#
# Environment: API (v2 by default: 100 events a request; v1: one request each), LINES (200,000;
# the workload of bench/gen_access_log.py), RUNS (7), CONCURRENCY (max_concurrency, 16), TMPDIR,
# KEEP (1: keep the directory). The spool is filled by the first BINARY with --no-send and
# durability = normal, as bench/send_v2.sh does; every build must read its schema.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
LOGMETER=$1
. "$here/lib.sh"
API=${API:-v2}
LINES=${LINES:-200000}
RUNS=${RUNS:-7}
CONCURRENCY=${CONCURRENCY:-16}
for b in "$@"; do [ -x "$b" ] || { echo "no binary at $b" >&2; exit 2; }; done
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY LOGMETER_STRIPE_API_KEY
export TZ=UTC LC_ALL=C no_proxy='127.0.0.1,localhost' NO_PROXY='127.0.0.1,localhost'

tmp=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench-spool.XXXXXX")
sink=
cleanup() {
	[ -z "$sink" ] || { kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true; }
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

"$PYTHON3" "$here/gen_access_log.py" "$tmp/access.log" "$LINES" >/dev/null
"$PYTHON3" "$here/sink.py" --port-file "$tmp/port" --meter bench &
sink=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "the sink did not start" >&2; exit 1; }
url=http://127.0.0.1:$(cat "$tmp/port")
(umask 077 && echo sk_test_bench >"$tmp/key")

# conf FILE STATE_DIR API_BASE
conf() {
	cat >"$1" <<CONF
[agent]
state_dir = $2
instance = bench
durability = normal
log_level = warning
[stripe]
api_key_file = $tmp/key
api_base = $3
meter_events_base = $3
api = $API
max_requests_per_second = 10000
max_concurrency = $CONCURRENCY
[source s]
path = $tmp/access.log
[rule r]
source = s
event_name = bench
pattern = $PATTERN
customer = cust
value = bytes
CONF
}
conf "$tmp/ingest.conf" "$tmp/base" http://127.0.0.1:1
conf "$tmp/send.conf" "$tmp/state" "$url"
"$LOGMETER" run --once --no-send -c "$tmp/ingest.conf" 2>"$tmp/ingest.log" ||
	{ echo "ingest failed: $(tail -n 3 "$tmp/ingest.log")" >&2; exit 1; }

sink_events() {
	curl -s "$url/count" | "$PYTHON3" -c 'import json, sys; print(json.load(sys.stdin)["events"])'
}

echo "machine: $(nproc) CPUs; API $API, $LINES lines, max_concurrency $CONCURRENCY, $RUNS rounds"
printf '%-5s %-40s %9s %12s %8s\n' round binary events cpu_us/event load
: >"$tmp/rows"
for r in $(seq "$RUNS"); do
	i=0
	for b in "$@"; do
		i=$((i + 1))
		rm -rf "$tmp/state"
		cp -a "$tmp/base" "$tmp/state"
		before=$(sink_events)
		measure "$tmp/m" "$b" run --once -c "$tmp/send.conf" 2>"$tmp/send.log" ||
			{ echo "$b: run --once failed: $(tail -n 3 "$tmp/send.log")" >&2; exit 1; }
		events=$(($(sink_events) - before))
		load=$(cut -d' ' -f1 /proc/loadavg)
		read -r _ user sys _ _ <"$tmp/m"
		cpu=$(awk -v u="$user" -v s="$sys" -v e="$events" 'BEGIN { printf "%.2f", (u + s) * 1e6 / e }')
		printf '%-5s %-40s %9d %12s %8s\n' "$r" "$b" "$events" "$cpu" "$load"
		echo "$i $cpu" >>"$tmp/rows"
	done
done
i=0
for b in "$@"; do
	i=$((i + 1))
	awk -v i="$i" '$1 == i { print $2 }' "$tmp/rows" | sort -n | awk -v b="$b" '
		{ v[NR] = $1 }
		END { printf "%s: median %.2f us/event (%.2f-%.2f), %d runs\n", b, v[int((NR + 1) / 2)], v[1], v[NR], NR }'
done

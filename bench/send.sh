#!/usr/bin/env bash
# Sending cost: CPU per meter event of logmeter's sender, against the Stripe double
# (tests/stripe_double.py) on 127.0.0.1. Not part of `make check`.
#
# usage: bench/send.sh                    from the top of a built tree
#        LINES=50000 RUNS=3 bench/send.sh
#        LOGMETER=/other/build/src/logmeter bench/send.sh
#
# It generates LINES lines (24,000 by default: about 20,400 events) of the workload of
# bench/gen_access_log.py. Per run (RUNS, 5 by default), on a new state directory: `logmeter run
# --once --no-send` spools the events (not measured), a new double starts (no rate limit, no
# faults), and `logmeter run --once` delivers them, measured with GNU time: its CPU time (user +
# system, all threads) and peak RSS, and the bytes it made the kernel write (%O, blocks of 512
# bytes: the marks in the WAL and their checkpoint into spool.db). Reading finds nothing new, so
# what is measured is the sender: reading the spool, building requests, HTTP over loopback
# (keep-alive), classifying the answers and marking outcomes. The double's own CPU is not
# counted. Each run checks that the double accepted every event exactly once.
#
# The yardstick, in the same run: bench/send_floor.c (built here with cc and libcurl's headers)
# makes the same number of requests as logmeter's v1 sender makes them (the same headers and form
# body, keep-alive, max_concurrency transfers in flight, handles reused) with libcurl alone: no
# spool, no answer read, no bookkeeping. Its CPU per request, against a new double, is the floor
# that libcurl, loopback TCP and this kernel set under any v1 sender; logmeter's own cost is the
# difference.
#
# It prints one row per run and the median and range (min-max) of events/s (wall clock, bounded by
# the double), CPU microseconds per event, peak RSS, bytes written per event, and the floor's CPU
# microseconds per request and logmeter's ratio to it.
#
# Environment: LINES, RUNS, CONCURRENCY ([stripe] max_concurrency, 8 by default), LOGMETER,
# PYTHON3, CC (cc by default), TMPDIR, KEEP (1: keep the directory).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
LINES=${LINES:-24000}
RUNS=${RUNS:-5}
CONCURRENCY=${CONCURRENCY:-8}
CC=${CC:-cc}
DOUBLE=$top/tests/stripe_double.py
[ -f "$DOUBLE" ] || { echo "no Stripe double at $DOUBLE" >&2; exit 2; }
version=$(sed -n 's/^#define STRIPE_API_VERSION "\(.*\)"$/\1/p' "$top/src/send/stripe.h")
[ -n "$version" ] || { echo "no STRIPE_API_VERSION in $top/src/send/stripe.h" >&2; exit 2; }
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY LOGMETER_STRIPE_API_KEY
export no_proxy='127.0.0.1,localhost' NO_PROXY='127.0.0.1,localhost'

tmp=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench-send.XXXXXX")
dpid=
cleanup() {
	[ -z "$dpid" ] || { kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; }
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

log=$tmp/access.log
"$PYTHON3" "$here/gen_access_log.py" "$log" "$LINES" >"$tmp/summary.json"
want=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines_with_api_key"])' "$tmp/summary.json")
key=sk_test_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

"$CC" -O2 -o "$tmp/send_floor" "$here/send_floor.c" -lcurl ||
	{ echo "cannot build bench/send_floor.c (libcurl's headers: libcurl4-openssl-dev)" >&2; exit 2; }

# start_double DIR: a new double on a free port recording into DIR/accepted.tsv; sets dpid, port
start_double() {
	"$PYTHON3" "$DOUBLE" --api-key "$key" --port 0 --port-file "$1/port" \
		--meter bandwidth_bytes --record "$1/accepted.tsv" >"$1/double.out" 2>&1 &
	dpid=$!
	for _ in $(seq 100); do [ -s "$1/port" ] && break; sleep 0.1; done
	[ -s "$1/port" ] || { echo "the double did not start: $(cat "$1/double.out")" >&2; exit 1; }
	port=$(cat "$1/port")
}
# stop_double DIR WANT: stops the double after checking it accepted WANT events, each once
stop_double() {
	local got all
	got=$(cut -f1 "$1/accepted.tsv" | sort -u | wc -l)
	all=$(wc -l <"$1/accepted.tsv")
	[ "$got" = "$2" ] && [ "$all" = "$2" ] ||
		{ echo "the double accepted $all events ($got distinct), not $2" >&2; exit 1; }
	kill "$dpid"
	wait "$dpid" 2>/dev/null || true
	dpid=
}

rows=$tmp/rows.tsv
: >"$rows"
echo "machine: $(uname -m), $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); $(df -T "$tmp" | awk 'NR == 2 {print $2}') at $tmp"
echo "workload: $LINES lines, $want events; max_concurrency $CONCURRENCY; Stripe v1, one request per event"
printf '%-4s %12s %14s %10s %14s %16s %8s\n' run events/s cpu_us/event rss_MB written_B/event floor_us/request ratio
for r in $(seq "$RUNS"); do
	run=$tmp/run$r
	mkdir "$run" "$run/floor"
	start_double "$run"
	(umask 077 && echo "$key" >"$run/key")
	cat >"$run/logmeter.conf" <<CONF
[agent]
state_dir = $run/state
instance = bench
log_level = warning
[stripe]
api_base = http://127.0.0.1:$port
api_key_file = $run/key
max_requests_per_second = 10000
max_concurrency = $CONCURRENCY
[source web]
path = $log
[rule bytes]
source = web
event_name = bandwidth_bytes
pattern = $PATTERN
customer = cust
value = bytes
CONF
	"$LOGMETER" run --once --no-send -c "$run/logmeter.conf" 2>"$run/ingest.log" ||
		{ echo "spooling failed:" >&2; tail "$run/ingest.log" >&2; exit 1; }
	measure "$run/ru" "$LOGMETER" run --once -c "$run/logmeter.conf" 2>"$run/agent.log" ||
		{ echo "logmeter failed:" >&2; tail "$run/agent.log" >&2; exit 1; }
	stop_double "$run" "$want"
	start_double "$run/floor"
	measure "$run/floor/ru" "$tmp/send_floor" "http://127.0.0.1:$port/v1/billing/meter_events" \
		"$run/key" "$version" "$want" "$CONCURRENCY" "$r" >"$run/floor/out" ||
		{ echo "the floor failed: $(cat "$run/floor/out")" >&2; exit 1; }
	stop_double "$run/floor" "$want"
	read -r lw lu ls lrss lout <"$run/ru"
	read -r _ fu fs _ _ <"$run/floor/ru"
	awk -v r="$r" -v e="$want" -v lw="$lw" -v lu="$lu" -v ls="$ls" -v lrss="$lrss" -v o="$lout" \
		-v fu="$fu" -v fs="$fs" 'BEGIN {
		printf "%s\t%.0f\t%.2f\t%.1f\t%.1f\t%.2f\t%.2f\n", r, e / lw, (lu + ls) * 1e6 / e, lrss / 1024,
			o * 512 / e, (fu + fs) * 1e6 / e, (lu + ls) / (fu + fs)
	}' | tee -a "$rows" | awk -F'\t' '{printf "%-4s %12s %14s %10s %14s %16s %8s\n", $1, $2, $3, $4, $5, $6, $7}'
	rm -rf "$run"
done

echo
echo "median (min-max) of $RUNS runs:"
"$PYTHON3" - "$rows" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cols = ["events/s", "CPU us/event", "peak RSS MB", "written B/event", "libcurl alone: CPU us/request", "ratio"]
fmt = ["{:,.0f}", "{:.2f}", "{:.1f}", "{:.0f}", "{:.2f}", "{:.2f}"]
print("| sender | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
cells = []
for i, f in enumerate(fmt):
    v = [float(r[1 + i]) for r in rows]
    cells.append("%s (%s-%s)" % (f.format(statistics.median(v)), f.format(min(v)), f.format(max(v))))
print("| Stripe v1 | %s |" % " | ".join(cells))
PY

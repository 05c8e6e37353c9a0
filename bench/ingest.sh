#!/usr/bin/env bash
# Ingest speed: tail -> rules -> durable spool, against `LC_ALL=C grep -cP` on the same file in the
# same run. Not part of `make check`: figures depend on the machine; the ratio to grep holds
# better when its speed drifts.
#
# usage: bench/ingest.sh                  from the top of a built tree
#        LINES=200000 RUNS=3 bench/ingest.sh
#        LOGMETER=/other/build/src/logmeter bench/ingest.sh
#
# It generates the workload with bench/gen_access_log.py (LINES nginx lines, 85% with an
# api_key; 1,000,000 by default: 208 MB), reads it once into the page cache, then RUNS times
# (5 by default) runs, alternately, `LC_ALL=C grep -cP PATTERN FILE` and `logmeter run --once
# --no-send` (the agent's own ingest half, nothing sent; [agent] durability = strict, the
# default) on a new state directory, with the reference pattern
#     [?&]api_key=(?<cust>[A-Za-z0-9_]+)[^"]*" \d{3} (?<bytes>\d+)
# and checks that both counted the lines with an api_key the generator reported. Then, for the
# memory figure with many files, it splits the same lines into FILES files (1,000 by default; 0
# skips it) in one directory and runs logmeter on them once per run, with max_open_files above
# FILES so that every file is held open and watched.
#
# Per run it measures CPU time (user + system, all threads) and peak RSS with GNU time (Debian
# package `time`; a wrapper in Python would count the interpreter's own memory in the peak RSS
# of what it starts), and the spool's size (spool.db after the agent closed it, its WAL folded in).
# It prints one row per run and the median and range (min-max) of: lines/s (wall clock), CPU
# microseconds per line, peak RSS, spool bytes per event, bytes written per event (WAL and
# checkpoints: GNU time's %O), and logmeter's CPU per line divided by grep's. Environment: LINES, RUNS, FILES, LOGMETER, PYTHON3, TMPDIR, KEEP (1: keep the
# directory).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
LINES=${LINES:-1000000}
RUNS=${RUNS:-5}
FILES=${FILES:-1000}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench-ingest.XXXXXX")
cleanup() {
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

log=$tmp/access.log
"$PYTHON3" "$here/gen_access_log.py" "$log" "$LINES" >"$tmp/summary.json"
want=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines_with_api_key"])' "$tmp/summary.json")
cat "$log" >/dev/null
if [ "$FILES" -gt 0 ]; then
	mkdir "$tmp/many"
	per=$(((LINES + FILES - 1) / FILES))
	(cd "$tmp/many" && split -l "$per" -a 4 -d --additional-suffix=.log "$log" part-)
	nfiles=$(ls "$tmp/many" | wc -l)
	cat "$tmp/many"/*.log >/dev/null
fi

# config DIR PATHGLOB MAX_OPEN: a configuration with the reference rule.
config() {
	cat >"$1/logmeter.conf" <<CONF
[agent]
state_dir = $1/state
instance = bench
log_level = warning
max_open_files = $3
[stripe]
api_key_file = $1/no-key-needed
[source web]
path = $2
[rule bytes]
source = web
event_name = bandwidth_bytes
pattern = $PATTERN
customer = cust
value = bytes
CONF
}

# events_in DIR: the pending events logmeter's status reports.
events_in() {
	"$LOGMETER" status -c "$1/logmeter.conf" | sed -n 's/.*pending \([0-9]*\),.*/\1/p' | head -n 1
}

rows=$tmp/rows.tsv
: >"$rows"
echo "machine: $(uname -m), $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); $(df -T "$tmp" | awk 'NR == 2 {print $2}') at $tmp"
echo "workload: $LINES lines, $(stat -c %s "$log") bytes, $want with an api_key; ${FILES} files for the memory row"
printf '%-4s %-18s %10s %12s %8s %8s %10s %11s\n' run what lines/s cpu_us/line rss_MB B/event written_B ratio_grep
for r in $(seq "$RUNS"); do
	LC_ALL=C measure "$tmp/grep.ru" grep -cP "$PATTERN" "$log" >"$tmp/grep.out"
	[ "$(cat "$tmp/grep.out")" = "$want" ] || { echo "grep counted $(cat "$tmp/grep.out"), not $want" >&2; exit 1; }
	run=$tmp/run$r
	mkdir "$run"
	config "$run" "$log" 64
	measure "$run/ru" "$LOGMETER" run --once --no-send -c "$run/logmeter.conf" 2>"$run/agent.log" ||
		{ echo "logmeter failed:" >&2; tail "$run/agent.log" >&2; exit 1; }
	got=$(events_in "$run")
	[ "$got" = "$want" ] || { echo "logmeter spooled $got events, not $want" >&2; exit 1; }
	spool=$(stat -c %s "$run/state/spool.db")
	if [ -f "$run/state/spool.db-wal" ]; then spool=$((spool + $(stat -c %s "$run/state/spool.db-wal"))); fi
	read -r gw gu gs grss _ <"$tmp/grep.ru"
	read -r lw lu ls lrss lout <"$run/ru"
	awk -v r="$r" -v n="$LINES" -v e="$want" -v gw="$gw" -v gu="$gu" -v gs="$gs" -v grss="$grss" \
		-v lw="$lw" -v lu="$lu" -v ls="$ls" -v lrss="$lrss" -v sp="$spool" -v o="$lout" 'BEGIN {
		gc = (gu + gs) * 1e6 / n; lc = (lu + ls) * 1e6 / n
		printf "%s\tgrep\t%.0f\t%.3f\t%.1f\t\t\t\n", r, n / gw, gc, grss / 1024
		printf "%s\tlogmeter\t%.0f\t%.3f\t%.1f\t%.1f\t%.0f\t%.2f\n", r, n / lw, lc, lrss / 1024, sp / e, o * 512 / e, lc / gc
	}' >>"$rows"
	rm -rf "$run"
	if [ "$FILES" -gt 0 ]; then
		run=$tmp/many$r
		mkdir "$run"
		config "$run" "$tmp/many/*.log" $((nfiles + 16))
		measure "$run/ru" "$LOGMETER" run --once --no-send -c "$run/logmeter.conf" 2>"$run/agent.log" ||
			{ echo "logmeter failed on $nfiles files:" >&2; tail "$run/agent.log" >&2; exit 1; }
		got=$(events_in "$run")
		[ "$got" = "$want" ] || { echo "logmeter spooled $got events of $nfiles files, not $want" >&2; exit 1; }
		spool=$(stat -c %s "$run/state/spool.db")
		read -r lw lu ls lrss lout <"$run/ru"
		awk -v r="$r" -v n="$LINES" -v e="$want" -v lw="$lw" -v lu="$lu" -v ls="$ls" -v lrss="$lrss" \
			-v sp="$spool" -v f="$nfiles" -v o="$lout" 'BEGIN {
			printf "%s\tlogmeter, %d files\t%.0f\t%.3f\t%.1f\t%.1f\t%.0f\t\n", r, f, n / lw, (lu + ls) * 1e6 / n, lrss / 1024, sp / e, o * 512 / e
		}' >>"$rows"
		rm -rf "$run"
	fi
	grep -P "^$r\t" "$rows" | awk -F'\t' '{printf "%-4s %-18s %10s %12s %8s %8s %10s %11s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
done

echo
echo "median (min-max) of $RUNS runs:"
"$PYTHON3" - "$rows" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cols = ["lines/s", "CPU us/line", "peak RSS MB", "spool B/event", "written B/event",
        "CPU ratio to grep"]
fmt = ["{:,.0f}", "{:.3f}", "{:.1f}", "{:.1f}", "{:.0f}", "{:.2f}"]
print("| system | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
for what in dict.fromkeys(r[1] for r in rows):
    cells = []
    for i, f in enumerate(fmt):
        v = [float(r[2 + i]) for r in rows if r[1] == what and r[2 + i] != ""]
        cells.append("" if not v else "%s (%s-%s)" % (f.format(statistics.median(v)),
                                                     f.format(min(v)), f.format(max(v))))
    print("| %s | %s |" % (what, " | ".join(cells)))
PY

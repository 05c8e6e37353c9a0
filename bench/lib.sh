# What bench/ingest.sh and bench/send.sh share; sourced after `set -eu` and `here` (this
# directory). Sets top, LOGMETER (the build in the current directory, else the one beside bench/),
# PYTHON3 and PATTERN (the reference pattern of the shared workload), checks that the binary and
# GNU time are there, and defines measure.
top=$(cd "$here/.." && pwd)
if [ -z "${LOGMETER:-}" ]; then
	if [ -x "$PWD/src/logmeter" ]; then LOGMETER=$PWD/src/logmeter; else LOGMETER=$top/src/logmeter; fi
fi
PYTHON3=${PYTHON3:-python3}
PATTERN='[?&]api_key=(?<cust>[A-Za-z0-9_]+)[^"]*" \d{3} (?<bytes>\d+)'
[ -x "$LOGMETER" ] || { echo "no binary at $LOGMETER (build first, or set LOGMETER)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is needed (apt-get install time)" >&2; exit 2; }

# measure REPORT COMMAND...: runs COMMAND; REPORT gets "wall_s user_s sys_s maxrss_kb out_blocks"
# (the wall clock from date(1), in nanoseconds: GNU time's %e has centiseconds only; out_blocks:
# blocks of 512 bytes it made the kernel write). Returns its status.
measure() {
	local report=$1 t0 t1 rc=0
	shift
	t0=$(date +%s%N)
	/usr/bin/time -o "$report.t" -f '%U %S %M %O' "$@" || rc=$?
	t1=$(date +%s%N)
	echo "$(((t1 - t0) / 1000))e-6 $(cat "$report.t")" >"$report"
	return $rc
}

# Shared helpers for logmeter's integration tests (tests/t_*.sh). Source it from bash:
#
#   #!/bin/bash
#   set -eu
#   . "$(dirname "$0")/lib.sh"
#   lm_init my_test
#
# Under `make check` the harness exports top_srcdir, top_builddir, LOGMETER and PYTHON3. Run by
# hand (tests/t_x.sh from the top of a built tree) they are derived from this file's location and
# the current directory. Exit codes follow automake: 0 pass, 1 fail, 77 skip.
#
# Everything stays on loopback: the Stripe double listens on 127.0.0.1 and proxies are disabled.
#
# Helpers that can fail return non-zero instead of exiting, so write `agent_stop || fail "..."`
# (set -e does not apply inside functions called from `if`, `||` or `&&`).

_lm_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${top_srcdir:=$(cd "$_lm_lib_dir/.." && pwd)}"
if [ -z "${top_builddir:-}" ]; then
	if [ -x "$PWD/src/logmeter" ]; then
		top_builddir=$PWD
	else
		top_builddir=$top_srcdir
	fi
fi
: "${LOGMETER:=$top_builddir/src/logmeter}"
if [ -z "${PYTHON3:-}" ] || ! command -v "$PYTHON3" >/dev/null 2>&1; then
	if [ -x /usr/bin/python3 ]; then
		PYTHON3=/usr/bin/python3
	else
		PYTHON3=$(command -v python3 || true)
	fi
fi
export top_srcdir top_builddir LOGMETER PYTHON3

DOUBLE_PY=$top_srcdir/tests/stripe_double.py
: "${DOUBLE_METERS:=bandwidth_bytes requests}"

T=
LOGS=
AGENT_PID=
DOUBLE_PID=
DOUBLE_PORT=
DOUBLE_URL=
API_KEY=
_LM_NAME=

# The test's output goes to the harness's .log file; prefix progress lines with the test name.
note() {
	echo "${_LM_NAME:-test}: $*"
}

skip() {
	echo "SKIP: ${_LM_NAME:-test}: $*" >&2
	exit 77
}

fail() {
	echo "FAIL: ${_LM_NAME:-test}: $*" >&2
	local f
	for f in agent.log double.log double.out; do
		if [ -n "$T" ] && [ -s "$T/$f" ]; then
			echo "---- last 30 lines of $f ----" >&2
			tail -n 30 "$T/$f" >&2
		fi
	done
	exit 1
}

assert_eq() {
	if [ "$1" != "$2" ]; then
		fail "${3:-assert_eq}: expected '$1', got '$2'"
	fi
}

# wait_until TIMEOUT_S CMD...: runs CMD every 0.1 s until it succeeds (0) or TIMEOUT_S seconds
# (may be fractional) have passed (1).
wait_until() {
	local timeout=$1
	shift
	local deadline now
	deadline=$(($(date +%s%N) + $(awk -v t="$timeout" 'BEGIN { printf "%.0f", t * 1e9 }')))
	while :; do
		if "$@"; then
			return 0
		fi
		now=$(date +%s%N)
		if [ "$now" -ge "$deadline" ]; then
			return 1
		fi
		sleep 0.1
	done
}

_lm_random() {
	od -An -N8 -tx1 /dev/urandom | tr -d ' \n'
}

# _lm_kill PID: SIGTERM, then SIGKILL if still there after 5 s; reaps it. Returns its exit code
# (or 0 if it was already gone and reaped).
_lm_kill() {
	local pid=$1 i rc=0
	[ -n "$pid" ] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "${_LM_NAME:-test}: pid $pid ignored SIGTERM for 5 s, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return $rc
}

lm_cleanup() {
	local rc=$?
	set +e
	_lm_kill "$AGENT_PID"
	AGENT_PID=
	_lm_kill "$DOUBLE_PID"
	DOUBLE_PID=
	_lm_kill "$NOTIFY_PID"
	NOTIFY_PID=
	local m
	for m in $_LM_MOUNTS; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	_LM_MOUNTS=
	if [ -n "$T" ] && [ -d "$T" ]; then
		if [ "${KEEP:-0}" = 1 ]; then
			echo "${_LM_NAME:-test}: kept $T" >&2
		else
			rm -rf "$T"
		fi
	fi
	exit $rc
}

# lm_mount_tmpfs DIR SIZE: a tmpfs of SIZE (as mount(8) takes it: 8m) on DIR (created), unmounted
# by the cleanup after the agent and the double are stopped. Skips the test (77) unless root can
# mount it.
_LM_MOUNTS=
lm_mount_tmpfs() {
	[ "$(id -u)" = 0 ] || skip "mounting a tmpfs needs root"
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1" 2>"$T/mount.err" ||
		skip "cannot mount a tmpfs: $(cat "$T/mount.err")"
	_LM_MOUNTS="$_LM_MOUNTS $1"
}

# notify_listen SOCK LOG: a datagram socket at SOCK, as systemd's $NOTIFY_SOCKET for a
# Type=notify service, writing each message it receives as one line of LOG (newlines shown as
# '|'); stopped by the cleanup (or by itself after 5 idle minutes).
NOTIFY_PID=
notify_listen() {
	"$PYTHON3" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(300)
with open(sys.argv[2], "a") as out:
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        out.write(d.decode("utf-8", "replace").replace("\n", "|") + "\n")
        out.flush()
' "$1" "$2" &
	NOTIFY_PID=$!
	wait_until 60 test -S "$1" || fail "the notify listener did not start"
}

# lm_init NAME: a private temporary directory $T, $LOGS (the shared real logs), cleanup on exit.
lm_init() {
	_LM_NAME=$1
	export TZ=UTC LC_ALL=C
	# libcurl and curl honour proxy variables; the tests talk to 127.0.0.1 only.
	unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
	export no_proxy='127.0.0.1,localhost' NO_PROXY='127.0.0.1,localhost'
	unset LOGMETER_STRIPE_API_KEY
	T=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-$1.XXXXXX")
	trap lm_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	LOGS=${LOGMETER_LOGS:-$top_srcdir/../shared/data/logs}
	if [ ! -d "$LOGS" ]; then
		fail "the shared test logs are missing: $LOGS (set LOGMETER_LOGS to their directory)"
	fi
	LOGS=$(cd "$LOGS" && pwd)
	[ -n "$PYTHON3" ] || skip "python3 not found (needed by the Stripe double)"
	command -v curl >/dev/null 2>&1 || skip "curl not found"
	export T LOGS
}

# --- the Stripe double -------------------------------------------------------------------------

_lm_curl() {
	curl -sS --noproxy '*' --max-time 30 "$@"
}

_lm_double_launch() {
	local port=$1 i
	shift
	local meters=() m
	for m in $DOUBLE_METERS; do
		meters+=(--meter "$m")
	done
	rm -f "$T/double.port"
	"$PYTHON3" "$DOUBLE_PY" --api-key "$API_KEY" --record "$T/accepted.tsv" \
		--log "$T/double.log" --port "$port" --port-file "$T/double.port" \
		"${meters[@]}" "$@" >>"$T/double.out" 2>&1 &
	DOUBLE_PID=$!
	for i in $(seq 600); do
		[ -s "$T/double.port" ] && break
		if ! kill -0 "$DOUBLE_PID" 2>/dev/null; then
			wait "$DOUBLE_PID" 2>/dev/null || true
			DOUBLE_PID=
			fail "the Stripe double exited at start (see double.out)"
		fi
		sleep 0.1
	done
	[ -s "$T/double.port" ] || fail "the Stripe double did not start within 60 s"
	DOUBLE_PORT=$(cat "$T/double.port")
	DOUBLE_URL=http://127.0.0.1:$DOUBLE_PORT
	export DOUBLE_PORT DOUBLE_URL
}

# double_start [extra args]: a new double with a fresh API key ($API_KEY), meters from
# $DOUBLE_METERS, record $T/accepted.tsv, log $T/double.log.
double_start() {
	double_start_key "sk_test_double_$(_lm_random)" "$@"
}

# double_start_key KEY [extra args]: double_start with the API key KEY ($API_KEY); an sk_live_ or
# rk_live_ key gives live-mode answers (livemode true, mtr_ meter ids, live rate limits).
double_start_key() {
	[ -z "$DOUBLE_PID" ] || fail "double_start: the double is already running"
	API_KEY=$1
	export API_KEY
	shift
	_lm_double_launch 0 "$@"
}

double_stop() {
	local pid=$DOUBLE_PID
	DOUBLE_PID=
	_lm_kill "$pid" || true
}

# double_restart [extra args]: same port, API key and record file (so accepted identifiers are
# still rejected as duplicates); idempotency memory, stats and faults are lost. Only the extra
# args given here are passed (not those given to double_start).
double_restart() {
	[ -n "$DOUBLE_PORT" ] || fail "double_restart: no double was started"
	double_stop
	_lm_double_launch "$DOUBLE_PORT" "$@"
}

_lm_double_post_json() {
	local path=$1 json=$2 out
	out=$(_lm_curl -f -X POST -H 'Content-Type: application/json' --data-binary "$json" \
		"$DOUBLE_URL$path") || fail "POST $path to the double failed: $out"
}

# double_faults SPEC: appends fault tokens to the double's queue, e.g. '500*3,drop_after,429'.
double_faults() {
	local json
	json=$("$PYTHON3" -c 'import json, sys; print(json.dumps({"spec": sys.argv[1]}))' "$1")
	_lm_double_post_json /_double/faults "$json"
}

# double_session_faults SPEC: appends fault tokens to the queue of the double's meter event session
# requests (SESSION FAULTS in stripe_double.py), e.g. '500,429ra:1,drop'.
double_session_faults() {
	local json
	json=$("$PYTHON3" -c 'import json, sys; print(json.dumps({"session_spec": sys.argv[1]}))' "$1")
	_lm_double_post_json /_double/faults "$json"
}

# double_faults_json JSON: e.g. '{"rate": 0.3, "kinds": ["500", "drop_after"], "seed": 1}' or
# '{"clear": true}'.
double_faults_json() {
	_lm_double_post_json /_double/faults "$1"
}

double_reset() {
	_lm_double_post_json /_double/reset '{}'
}

# double_stat KEY: one integer field of /_double/stats; dotted keys reach into the maps
# (faults.500, by_status.200), where a kind or status never seen prints 0. An unknown top-level
# key prints nothing and returns 1, so a typo cannot pass as a zero.
double_stat() {
	local json
	json=$(_lm_curl -f "$DOUBLE_URL/_double/stats") || fail "GET /_double/stats failed"
	printf '%s' "$json" | "$PYTHON3" -c '
import json, sys
v = json.load(sys.stdin)
path = sys.argv[1].split(".")
if path[0] not in v:
    sys.exit("double_stat: no field %r in the stats: %s" % (path[0], " ".join(sorted(v))))
v = v[path[0]]
for k in path[1:]:
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(int(v))' "$1"
}

# double_events: the JSON list of events accepted by the running double.
double_events() {
	_lm_curl -f "$DOUBLE_URL/_double/events"
}

# double_accepted_ids: sorted identifiers of every event accepted (across restarts).
double_accepted_ids() {
	if [ -f "$T/accepted.tsv" ]; then
		cut -f1 "$T/accepted.tsv" | sort
	fi
}

# file_uid CONF PATH: the uid the agent's spool gave the file last seen under PATH (part of its
# events' identifiers, see docs/identifiers.md). Reads the spool read-only.
file_uid() {
	local state
	state=$(sed -n 's/^[[:space:]]*state_dir[[:space:]]*=[[:space:]]*//p' "$1" | tail -n 1)
	[ -n "$state" ] || fail "file_uid: no state_dir in $1"
	"$PYTHON3" -c '
import sqlite3, sys
db = sqlite3.connect("file:%s/spool.db?mode=ro" % sys.argv[1], uri=True, timeout=10)
row = db.execute("SELECT uid FROM files WHERE path = ? ORDER BY id DESC LIMIT 1",
                 (sys.argv[2],)).fetchone()
if row is None:
    sys.exit("file_uid: no file %s in %s/spool.db" % (sys.argv[2], sys.argv[1]))
print(row[0])' "$state" "$2"
}

# --- the agent ---------------------------------------------------------------------------------

# write_config FILE: [agent] and [stripe] sections pointing at the double; append [source] and
# [rule] sections with `cat >>FILE`.
write_config() {
	local file=$1
	[ -n "$DOUBLE_URL" ] || fail "write_config: start the double first"
	mkdir -p "$T/state"
	(umask 077 && printf '%s\n' "$API_KEY" >"$T/stripe.key")
	chmod 0600 "$T/stripe.key"
	cat >"$file" <<EOF
[agent]
state_dir = $T/state
instance = test
rescan_interval = 1s

[stripe]
api_base = $DOUBLE_URL
api_key_file = $T/stripe.key
retry_min_backoff = 50ms
retry_max_backoff = 500ms
max_requests_per_second = 1000
auth_pause = 500ms

EOF
}

_lm_check_agent() {
	[ -x "$LOGMETER" ] || fail "logmeter binary not found: $LOGMETER (build it, or set LOGMETER)"
}

# agent_start CONF [args]: `logmeter run -c CONF` in the background; stderr to $T/agent.log.
agent_start() {
	local conf=$1
	shift
	_lm_check_agent
	[ -z "$AGENT_PID" ] || fail "agent_start: the agent is already running"
	"$LOGMETER" run -c "$conf" "$@" >>"$T/agent.out" 2>>"$T/agent.log" &
	AGENT_PID=$!
}

# agent_stop: SIGTERM, wait (at most 30 s, then SIGKILL and fail); returns the agent's exit code.
agent_stop() {
	local pid=$AGENT_PID i rc=0
	[ -n "$pid" ] || fail "agent_stop: no agent running"
	AGENT_PID=
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		fail "the agent did not exit within 30 s of SIGTERM"
	fi
	wait "$pid" || rc=$?
	return $rc
}

agent_kill9() {
	local pid=$AGENT_PID
	[ -n "$pid" ] || fail "agent_kill9: no agent running"
	AGENT_PID=
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

agent_running() {
	[ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null
}

# agent_frozen: the agent stopped by SIGSTOP (for wait_until: kill returns before it
# stops). Every test that freezes the agent waits for this before it acts on the frozen agent.
agent_frozen() {
	# Every thread: the thread that takes the signal stops the others after it runs, and they
	# stop when they next leave the kernel; until then they go on reading.
	[ "$(cat /proc/"$AGENT_PID"/task/*/stat 2>/dev/null | awk '{ print $3 }' | sort -u)" = T ]
}

# agent_once CONF [args]: `logmeter run --once -c CONF` in the foreground (at most 120 s);
# returns its exit code (124 on timeout).
agent_once() {
	local conf=$1 rc=0
	shift
	_lm_check_agent
	timeout 120 "$LOGMETER" run --once -c "$conf" "$@" >>"$T/agent.out" 2>>"$T/agent.log" ||
		rc=$?
	return $rc
}

# accepted_count: events the double accepted so far (lines in its record file).
accepted_count() {
	if [ -f "$T/accepted.tsv" ]; then wc -l < "$T/accepted.tsv"; else echo 0; fi
}

# accepted_at_least N: for wait_until, which must re-evaluate the count on every try.
accepted_at_least() {
	[ "$(accepted_count)" -ge "$1" ]
}

# --- the Apache bytes rule, shared by the tests of sending --------------------------------------

# config_apache_bytes CONF LOG [MAP]: appends [source apache] reading LOG (a path or a glob) and
# [rule bytes]: meter event bandwidth_bytes, the client IP as customer, the response bytes of each
# 2xx line as value. With MAP, the IP is looked up in the customer map MAP (customer_map).
config_apache_bytes() {
	cat >>"$1" <<CONF
[source apache]
path = $2
[rule bytes]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
CONF
	if [ -n "${3:-}" ]; then
		printf 'customer_map = %s\n' "$3" >>"$1"
	fi
}

# apache_bytes_offsets LOG: the byte offset of every line of LOG that rule makes an event of, in
# order, computed with awk: the lines whose status is 2xx and whose byte count is a number.
apache_bytes_offsets() {
	LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {print off+0} {off += length($0) + 1}' "$1"
}

# apache_bytes_count LOG: how many events that rule makes of LOG, counted with awk.
apache_bytes_count() {
	LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$1" | wc -l
}

# identifiers_of SOURCE UID RULE: reads byte offsets of the lines of the file with uid UID (see
# file_uid), one a line, and prints the identifiers RULE of SOURCE gives their events (instance
# test), computed with tests/identifiers.py, not by logmeter.
identifiers_of() {
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test "$1" "$2" "$3"
}

# apache_bytes_ids CONF LOG: the sorted identifiers that rule's events of LOG must have (instance
# test, source apache), computed with awk and tests/identifiers.py, not by logmeter.
apache_bytes_ids() {
	local uid
	uid=$(file_uid "$1" "$2") || return 1
	apache_bytes_offsets "$2" | identifiers_of apache "$uid" bytes | sort
}

# assert_accepted_once CONF LOG [RECORD]: the double accepted exactly the events of LOG, each once
# (RECORD: the accepted.tsv lines to look at, default all of $T/accepted.tsv).
assert_accepted_once() {
	apache_bytes_ids "$1" "$2" >"$T/expected_ids" || fail "no identifiers for $2"
	if [ -n "${3:-}" ]; then
		cut -f1 "$3" | sort >"$T/accepted_ids"
	else
		double_accepted_ids >"$T/accepted_ids"
	fi
	diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/ids.diff" ||
		fail "accepted identifiers differ from the expected ones: $(head -n 20 "$T/ids.diff")"
}

# faketime_find: sets ft to libfaketime's multi-threaded library (LOGMETER_FAKETIME_LIB, or
# Debian's and /usr/local's places), and lets an ASan build take it preloaded before its runtime;
# returns 1 (ft empty) if there is none.
faketime_find() {
	local f
	ft=
	for f in ${LOGMETER_FAKETIME_LIB:-} /usr/lib/*/faketime/libfaketimeMT.so.1 \
		/usr/lib/faketime/libfaketimeMT.so.1 /usr/local/lib/faketime/libfaketimeMT.so.1; do
		if [ -f "$f" ]; then ft=$f && break; fi
	done
	[ -n "$ft" ] || return 1
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
}

# assert_all_delivered CONF WANT: `status` counts WANT events delivered and none pending, dead or
# unsure; else fails with the dead letters the agent logged ($T/agent.log).
assert_all_delivered() {
	"$LOGMETER" status -c "$1" >"$T/status.out" || true
	grep -q "^events: pending 0, delivered $2, dead letters 0, unsure 0" "$T/status.out" ||
		fail "not every event delivered: $(grep '^events' "$T/status.out"); $(grep -c 'kept as a dead letter' "$T/agent.log") dead letters logged, the first: $(grep -m 1 'kept as a dead letter' "$T/agent.log")"
}

# config_no_meter CONF: appends [rule no-meter] of source apache: an event of event_name
# no_such_meter, which has no meter, for each request of /favicon.ico (grep -c '"GET /favicon.ico'
# counts them): Stripe refuses them, so they become dead letters.
config_no_meter() {
	cat >>"$1" <<'CONF'
[rule no-meter]
source = apache
event_name = no_such_meter
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET /favicon.ico
customer = ip
value = 1
CONF
}

# --- lines "EPOCH CUSTOMER VALUE" -------------------------------------------------------------------

# need_dbstat: skips the test unless the sqlite3 CLI is there with its dbstat table (the damaged
# spool tests find a table's pages with it).
need_dbstat() {
	command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
	sqlite3 :memory: "SELECT count(*) FROM dbstat" >/dev/null 2>&1 || skip "sqlite3 has no dbstat"
}

# spool_ruin DB PAGE...: writes bytes that no b-tree page starts with (0xff) over each PAGE
# (numbered from 1, as dbstat numbers them) of the SQLite file DB, as a damaged disk would.
spool_ruin() {
	local db=$1 psize p
	shift
	psize=$(sqlite3 "$db" "PRAGMA page_size")
	for p in "$@"; do
		head -c "$psize" /dev/zero | tr '\0' '\377' |
			dd of="$db" bs="$psize" seek=$((p - 1)) count=1 conv=notrunc status=none
	done
}

# windows_leaf DB: the second leaf page of the aggregation windows' table in DB (dbstat), or
# nothing: a page that holds some windows' rows, not all.
windows_leaf() {
	sqlite3 "$1" "SELECT pageno FROM dbstat WHERE name = 'windows' AND pagetype = 'leaf'
		ORDER BY pageno LIMIT 1 OFFSET 1"
}

# past_windows_log LOG: writes to LOG the lines "EPOCH cus_C VALUE" of past aggregation windows of
# a minute, 2 hours to 1.5 hours ago (closed as soon as a sender runs): 6 customers in 4 windows, 3
# lines a window, whole values (awk sums them exactly). Sets `now` to the current minute's start,
# so that the 3 lines of a window (seconds 0 to 2 after it) stay in one minute whatever the time,
# and `n_windows` to the number of windows, counted by awk.
past_windows_log() {
	now=$(date +%s)
	now=$((now - now % 60))
	awk -v now="$now" 'BEGIN { for (w = 0; w < 4; w++) for (c = 0; c < 6; c++) for (k = 0; k < 3; k++)
	printf "%d cus_%d %d\n", now - 7200 + w * 600 + k, c, 1 + c * 10 + w * 3 + k }' >"$1"
	n_windows=$(awk '{ w[$2 " " int($1 / 60)] = 1 } END { print length(w) }' "$1")
}

# config_epoch_rule CONF LOG [OPTION...]: appends [source app] reading LOG and [rule usage]: meter
# event requests, for lines "EPOCH cus_X VALUE", stamped with their epoch time, then each OPTION
# ("aggregate = 2s") as a line of the rule.
config_epoch_rule() {
	local conf=$1 log=$2 o
	shift 2
	cat >>"$conf" <<CONF
[source app]
path = $log
[rule usage]
source = app
event_name = requests
pattern = ^(?<t>\d+) (?<c>cus_\w+) (?<v>\S+)\$
customer = c
value = v
timestamp = t
timestamp_format = epoch
CONF
	for o in "$@"; do
		printf '%s\n' "$o" >>"$conf"
	done
}

# config_v2 CONF: the configuration sends with API v2, the stream at the double.
config_v2() {
	sed -i 's/^max_requests_per_second = .*/&\napi = v2\nmeter_events_base = '"${DOUBLE_URL//\//\\/}"'/' "$1"
}

# --- the nginx bytes rule ------------------------------------------------------------------------

# config_nginx_bytes CONF LOG: appends [source nginx] reading LOG (a path or a glob) and
# [rule bytes]: meter event bandwidth_bytes, the client IP as customer, the response bytes of each
# 20x line as value.
config_nginx_bytes() {
	cat >>"$1" <<CONF
[source nginx]
path = $2
[rule bytes]
source = nginx
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 20\d (?<bytes>\d+)
customer = ip
value = bytes
CONF
}

# nginx_bytes_offsets LOG: the byte offset of every line of LOG that rule makes an event of (awk).
nginx_bytes_offsets() {
	LC_ALL=C awk '$9 ~ /^20[0-9]$/ && $10 ~ /^[0-9]+$/ {print off+0} {off += length($0) + 1}' "$1"
}

# export_ids CONF [STATE]: the sorted identifiers of the spool's events (of STATE: pending,
# delivered, dead, unsure), read through `logmeter spool export`.
export_ids() {
	"$LOGMETER" spool export -c "$1" ${2:+--state "$2"} | "$PYTHON3" -c '
import json, sys
for line in sys.stdin:
    print(json.loads(line)["identifier"])' | sort
}

# export_tsv CONF [STATE]: the spool's events (of STATE) through `logmeter spool export`, one a
# line in id order, tab-separated (tabs and newlines in text become spaces): id identifier rule
# state customer_key customer value line_offset attempts key_generation last_error delivered_at
# event_name timestamp first_unknown file. customer is the payload's customer value; absent
# values are empty.
export_tsv() {
	"$LOGMETER" spool export -c "$1" ${2:+--state "$2"} | "$PYTHON3" -c '
import json, sys
rows = []
for line in sys.stdin:
    o = json.loads(line)
    ckey = [k for k in o["payload"] if k != "value"]
    cust = o["payload"][ckey[0]] if ckey else ""
    vals = [o["id"], o["identifier"], o["rule"], o["state"], o["customer_key"], cust,
            o["payload"].get("value", ""), o["line_offset"], o["attempts"], o["key_generation"],
            o["last_error"], o["delivered_at"], o["event_name"], o["timestamp"],
            o["first_unknown"], o["file"]]
    rows.append((o["id"], "\t".join("" if v is None else str(v).replace("\t", " ").replace("\n", " ")
                                    for v in vals)))
for _, r in sorted(rows):
    print(r)'
}

# spooled_count CONF: the events the spool holds, in any state, as `logmeter status` counts them.
spooled_count() {
	"$LOGMETER" status -c "$1" 2>/dev/null |
		sed -n 's/^events: pending \([0-9]*\), delivered \([0-9]*\), dead letters \([0-9]*\), unsure \([0-9]*\).*/\1 \2 \3 \4/p' |
		awk '{print $1 + $2 + $3 + $4}'
}

# export_count CONF STATE [RULE [TEXT]]: how many events of STATE (of rule RULE, whose last
# error contains TEXT) the spool holds, through `logmeter spool export`.
export_count() {
	export_tsv "$1" "$2" | awk -F'\t' -v r="${3:-}" -v t="${4:-}" \
		'(r == "" || $3 == r) && (t == "" || index($11, t) > 0) {n++} END {print n + 0}'
}

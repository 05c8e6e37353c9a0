#!/usr/bin/env bash
# The agent's log through the real binary. Under systemd, when standard error is the journal
# ($JOURNAL_STREAM names its device and inode, systemd.exec(5)), every line starts with its
# sd-daemon(3) priority prefix, <3> error, <4> warning, <6> info, <7> debug, which journald takes
# as the entry's priority: `journalctl -p warning` keeps exactly the <3> and <4> lines. A
# JOURNAL_STREAM that names another file (inherited, not ours) adds no prefix. log_format = json
# writes one JSON object a line, prefixed the same way under the journal. A path with a newline,
# a carriage return and an escape sequence in its name stays on its line, escaped. A reload the
# running agent refuses under log_format = json logs each error of the configuration as a JSON object.
. "$(dirname "$0")/lib.sh"
lm_init logs
# Only the requests meter: the bytes rule's events are refused by Stripe (warnings: dead letters).
DOUBLE_METERS=requests
double_start

mkdir -p "$T/logs"
head -n 100 "$LOGS/elastic_apache_logs.log" >"$T/logs/access.log"
want_dead=$(apache_bytes_count "$T/logs/access.log")
[ "$want_dead" -gt 0 ] || fail "test bug: no 2xx lines in the sample"
write_config "$T/base.conf"
config_apache_bytes "$T/base.conf" "$T/logs/access.log"

# run_logged NAME CONF JOURNAL: `run --once` with stderr to $T/NAME.log; JOURNAL "self" sets
# JOURNAL_STREAM to that file's device:inode (as systemd does for its stream), "other" to another
# file's, "" leaves it unset. Returns the agent's exit code.
run_logged() {
	local log=$T/$1.log js= rc=0
	: >"$log"
	case $3 in
	self) js=$(stat -c '%d:%i' "$log") ;;
	other) js=$(stat -c '%d:%i' "$T/base.conf") ;;
	esac
	env ${js:+JOURNAL_STREAM=$js} timeout 120 "$LOGMETER" run --once -c "$2" 2>>"$log" >/dev/null ||
		rc=$?
	return $rc
}

# The priority prefix each level word must carry (sd-daemon.h: SD_ERR, SD_WARNING, SD_INFO,
# SD_DEBUG), checked line by line with awk.
check_prefixes() {
	awk '
	BEGIN { p["error"] = 3; p["warning"] = 4; p["info"] = 6; p["debug"] = 7 }
	{
		if (!match($0, /^<[0-9]>logmeter: [a-z]+: /)) { print "no prefix: " $0; bad = 1; next }
		n = substr($0, 2, 1); split(substr($0, 5), w, ":"); lvl = w[2]; sub(/^ /, "", lvl)
		if (!(lvl in p) || p[lvl] != n) { print "wrong prefix for " lvl ": " $0; bad = 1 }
		seen[n]++
	}
	END { for (k in seen) printf "seen <%s> %d\n", k, seen[k]; exit bad }' "$1"
}

# --- text, under the journal: every line prefixed, one level each -------------------------------
cp "$T/base.conf" "$T/debug.conf"
sed -i 's/^\[agent\]$/[agent]\nlog_level = debug/' "$T/debug.conf"
# A rule whose timestamps cannot be read makes no events, and says why at debug level.
cat >>"$T/debug.conf" <<CONF
[rule epoch]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\]
customer = ip
value = 1
timestamp = time
timestamp_format = epoch
CONF
# The bytes events became dead letters in this run: it exits 1, and says so last, as an error.
rc=0
run_logged journal "$T/debug.conf" self || rc=$?
assert_eq 1 "$rc" "run --once's exit status with dead letters"
tail -n 1 "$T/journal.log" | grep -q "^<3>logmeter: error: run --once: during this run $want_dead events became dead letters: " ||
	fail "the last line under the journal: $(tail -n 1 "$T/journal.log")"
check_prefixes "$T/journal.log" >"$T/prefixes" || fail "prefixes: $(cat "$T/prefixes")"
for n in 4 6 7; do
	grep -q "^seen <$n>" "$T/prefixes" || fail "no <$n> line: $(cat "$T/journal.log")"
done
# journalctl -p warning: the lines of priority 4 or less are the warnings and errors, and among
# them every dead letter's summary or line (Stripe refused the bytes events: no meter).
grep -E '^<[0-4]>' "$T/journal.log" >"$T/warnings"
grep -qvE '^<[0-4]>logmeter: (error|warning): ' "$T/warnings" && fail "a line of priority <= 4 is neither error nor warning"
grep -q '^<4>logmeter: warning: Stripe rejected event' "$T/warnings" ||
	fail "no dead letter warning at priority 4: $(cat "$T/warnings")"
grep -E '^<[5-7]>' "$T/journal.log" | grep -qE 'logmeter: (error|warning):' &&
	fail "a warning or error below priority 4"
note "journal: $(tr '\n' ' ' <"$T/prefixes")"

# --- a hostile file name, under the journal: one line, its control characters escaped -----------
mkdir -p "$T/hostile"
bad=$'evil\nlogmeter: error: fake\r\x1b[2J.log'
printf '\037\213\010\000' >"$T/hostile/$bad" # gzip's magic: refused, with its path logged
cp "$T/base.conf" "$T/hostile.conf"
cat >>"$T/hostile.conf" <<CONF
[source odd]
path = $T/hostile/*.log
CONF
run_logged hostile "$T/hostile.conf" self || true
check_prefixes "$T/hostile.log" >"$T/prefixes" || fail "prefixes: $(cat "$T/prefixes")"
grep -qF "$T/hostile/evil\nlogmeter: error: fake\r\x1b[2J.log: gzip-compressed data" "$T/hostile.log" ||
	fail "the hostile name is not escaped on one line: $(cat -A "$T/hostile.log")"
note "a hostile file name: one line, escaped"

# --- a bad configuration, under the journal: its errors at priority 3, file and line ------------
cp "$T/base.conf" "$T/bad.conf"
printf '[rule broken]\nsource = nowhere\n' >>"$T/bad.conf"
rc=0
run_logged bad "$T/bad.conf" self || rc=$?
assert_eq 2 "$rc" "exit status of a bad configuration"
grep -q "^<3>$T/bad.conf:[0-9]*: " "$T/bad.log" || fail "no <3> FILE:LINE error: $(cat "$T/bad.log")"
grep -qv '^<3>' "$T/bad.log" && fail "an error line without <3>: $(cat "$T/bad.log")"

# --- JOURNAL_STREAM of another stream, or none: plain lines --------------------------------------
rm -rf "$T/state"
rc=0
run_logged other "$T/base.conf" other || rc=$?
assert_eq 1 "$rc" "run --once's exit status with dead letters"
# The same spool, nothing new: no new dead letter, exit 0.
run_logged plain "$T/base.conf" "" || fail "run --once exited $?"
for f in other plain; do
	[ -s "$T/$f.log" ] || fail "$f: nothing logged"
	grep -q '^<' "$T/$f.log" && fail "$f: a prefix without the journal: $(grep -m1 '^<' "$T/$f.log")"
	grep -q '^logmeter: info: started' "$T/$f.log" || fail "$f: no started line"
done

# --- log_format = json, under the journal ---------------------------------------------------------
rm -rf "$T/state"
cp "$T/base.conf" "$T/json.conf"
sed -i 's/^\[agent\]$/[agent]\nlog_format = json/' "$T/json.conf"
rc=0
run_logged json "$T/json.conf" self || rc=$?
assert_eq 1 "$rc" "run --once's exit status with dead letters"
"$PYTHON3" - "$T/json.log" "$want_dead" <<'PY' || fail "JSON log lines: see above"
import json, re, sys
prio = {"error": 3, "warning": 4, "info": 6, "debug": 7}
n = 0
levels = set()
pids = set()
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"^<([0-9])>(\{.*\})\n$", line)
    if not m:
        sys.exit("not <N>{json}: %r" % line)
    o = json.loads(m.group(2))
    if sorted(o) != ["level", "message", "pid", "time"]:
        sys.exit("fields %s: %r" % (sorted(o), line))
    if prio[o["level"]] != int(m.group(1)):
        sys.exit("priority <%s> for level %s" % (m.group(1), o["level"]))
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o["time"]):
        sys.exit("time %r" % o["time"])
    levels.add(o["level"])
    pids.add(o["pid"])
    n += 1
if not {"info", "warning"} <= levels or len(pids) != 1:
    sys.exit("levels %s, pids %s" % (levels, pids))
print("logs: %d JSON lines, levels %s" % (n, sorted(levels)))
PY
grep -q '"message":"started: instance test' "$T/json.log" || fail "no started message in JSON"
st=$("$LOGMETER" status -c "$T/json.conf" || true)
grep -q "dead letters $want_dead," <<<"$st" || fail "expected $want_dead dead letters: $st"
note "text and JSON lines carry the journal's priorities; plain without the journal"

# --- a reload refused, log_format = json: the configuration's errors as JSON objects too ---------
# The running agent knows its log format: a SIGHUP whose configuration is broken logs each error
# (FILE:LINE) as one error of that format, not as a bare text line among the JSON ones.
cp "$T/json.conf" "$T/jsonr.conf"
: >"$T/agent.log"
agent_start "$T/jsonr.conf"
started() { grep -q '"message":"started: instance test' "$T/agent.log"; }
wait_until 60 started || fail "the agent did not start: $(tail -n 3 "$T/agent.log")"
printf '[rule broken]\nsource = nowhere\n' >>"$T/jsonr.conf"
bad_line=$(grep -n '^source = nowhere$' "$T/jsonr.conf" | cut -d: -f1)
kill -HUP "$AGENT_PID"
refused() { grep -q 'reload failed: keeping the running configuration' "$T/agent.log"; }
wait_until 60 refused || fail "the refused reload was not logged: $(tail -n 3 "$T/agent.log")"
agent_stop || fail "the agent exited $? after a refused reload"
"$PYTHON3" - "$T/agent.log" "$T/jsonr.conf:$bad_line: " <<'PY' || fail "JSON log after a refused reload: see above"
import json, re, sys
errors = []
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"^(?:<[0-9]>)?(\{.*\})\n$", line)
    if not m:
        sys.exit("not a JSON object: %r" % line)
    o = json.loads(m.group(1))
    if o["level"] == "error":
        errors.append(o["message"])
want = "reload failed: " + sys.argv[2]
if not any(e.startswith(want) and "nowhere" in e for e in errors):
    sys.exit("no error %r...nowhere among %r" % (want, errors))
if errors[-1] != "reload failed: keeping the running configuration":
    sys.exit("the last error: %r" % errors[-1])
PY
note "a refused reload's errors are JSON objects, FILE:LINE in each"

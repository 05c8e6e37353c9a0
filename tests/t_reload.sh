#!/usr/bin/env bash
# SIGHUP keeps what did not change. While a writer appends lines to four files and the Stripe
# double answers slowly, the agent is reloaded (i) with the same configuration, while requests
# that take 9 s (more than the sender's 5 s of grace) are in flight, (ii) with one more rule,
# (iii) with another glob for one of its two sources, (iv) with another [stripe] setting, and
# (v) once more with a key file that others may read, which refuses the reload. Checked:
#   - the files of the unchanged source are never opened again: each "tailing" line of the
#     agent's log is there once, and /proc/PID/fd shows the same descriptors on them throughout;
#   - no request in flight was abandoned: every event was delivered at its first attempt (an
#     abandoned request counts as one, and its event is sent again), and the double was never
#     asked for an event it already had or was still answering (no "already exists", no replayed
#     answer, no 409), and answered the slow requests of (i) with the events accepted;
#   - the sender was started anew only in (iv), after the old one had its answers (one request
#     per customer and event name at a time throughout), and the new rule was held against the
#     account's meters in (ii) (the double's meter lists);
#   - in the end the double accepted exactly the expected identifiers, each once (computed from
#     the files' bytes by tests/tail_lib.sh and tests/identifiers.py, not by logmeter): every
#     line of every file for the rules that were there all along, and for the new rule every
#     line of each file from some offset on, an offset between the file's checkpoint before the
#     SIGHUP and its size once the reload was logged: each line was read under one configuration.
. "$(dirname "$0")/lib.sh"
lm_init reload
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/k" "$T/m"
write_config "$T/logmeter.conf"
{
	rule_conf keep "$T/k/*.log"
	rule_conf move "$T/m/a*.log"
} >>"$T/logmeter.conf"

logged_count() { grep -c -- "$1" "$T/agent.log" || true; }
reloads() { logged_count 'configuration reloaded'; }
reloads_at_least() { [ "$(reloads)" -ge "$1" ]; }
stat_is() { [ "$(double_stat "$1")" = "$2" ]; }
accepted_grows() { [ "$(accepted_count)" -gt "$1" ]; }
# keep_fds: "descriptor -> file" of the agent for the files of source keep, sorted.
keep_fds() {
	ls -l "/proc/$AGENT_PID/fd" 2>/dev/null | awk -v d="$T/k/" 'index($NF, d) == 1 { print $(NF - 2), $NF }' | sort
}
# checkpoints SOURCE: "path offset" of the source's records being read.
checkpoints() {
	spool_sql "$T/logmeter.conf" "SELECT path, offset FROM files WHERE source = ? AND state = 'reading' ORDER BY path" "$1"
}
sizes() {
	local f
	for f in "$@"; do printf '%s\t%s\n' "$f" "$(stat -c %s "$f")"; done
}
# retried: events not delivered at their first attempt. A request abandoned in flight counts
# as an attempt (and is recorded so, until a later error replaces the record) and is sent again.
retried() {
	export_tsv "$T/logmeter.conf" | awk -F'\t' '$9 > 1 || index($11, "abandoned in flight") == 1' | wc -l
}
# hup N: SIGHUP, and wait for the Nth "configuration reloaded".
hup() {
	kill -HUP "$AGENT_PID"
	wait_until 60 reloads_at_least "$1" || fail "reload $1 not logged: $(grep -i reload "$T/agent.log" | tail -3)"
}
# progress: 30 more events accepted (the writer goes on, and the sender with it).
progress() {
	local n
	n=$(accepted_count)
	wait_until 60 accepted_grows $((n + 29)) || fail "too little accepted after the reload: $(accepted_count), was $n"
}

# The writer: a line with the next rid to each of k/k1.log, k/k2.log, m/a1.log, m/b1.log in
# turn, 20 to each at once, then one every 50 ms until $T/writer.stop appears.
"$PYTHON3" - "$NGINX_LOG" "$T" <<'PY' &
import os, sys, time
src, t = sys.argv[1], sys.argv[2]
real = open(src, "rb").read().split(b"\n")[:-1]
files = [t + "/k/k1.log", t + "/k/k2.log", t + "/m/a1.log", t + "/m/b1.log"]
rid = 0
def put():
    global rid
    rid += 1
    with open(files[rid % len(files)], "ab") as f:
        f.write(real[(rid - 1) % len(real)] + b" rid=%d\n" % rid)
for _ in range(20 * len(files)):
    put()
open(t + "/writer.ready", "w").close()
while not os.path.exists(t + "/writer.stop"):
    put()
    time.sleep(0.05)
PY
writer=$!
trap 'rc=$?; kill "$writer" 2>/dev/null; (exit $rc); lm_cleanup' EXIT
wait_until 60 test -e "$T/writer.ready" || fail "the writer did not start"

# Every request waits 100 ms at the double (random mode, rate 1).
double_faults_json '{"rate": 1.0, "kinds": ["slow:100"], "seed": 1}'
agent_start "$T/logmeter.conf"
wait_until 60 accepted_at_least 60 || fail "the first events were not delivered: $(accepted_count)"
assert_eq 2 "$(logged_count 'tailing for source keep')" "files of source keep opened"
assert_eq 1 "$(logged_count 'tailing for source move')" "files of source move opened"
fds0=$(keep_fds)
[ "$(wc -l <<<"$fds0")" = 2 ] || fail "test bug: descriptors on the keep files: $fds0"
wait_until 30 stat_is meter_lists 1 || fail "the sender's meter check at start"

note "(i) the same configuration, while 4 requests of 9 s are in flight"
double_faults 'slow:9000*4'
wait_until 30 stat_is fault_queue 0 || fail "the slow requests did not start"
hup 1
grep -q 'configuration reloaded: 2 sources, 2 rules; sources: 2 unchanged (3 files kept), 0 changed, 0 new, 0 removed; sender kept' "$T/agent.log" ||
	fail "reload (i): $(grep 'configuration reloaded' "$T/agent.log" | tail -1)"
# The double logs a request when it answers it: the slow ones were answered, and taken.
slow_done() { [ "$(grep -c 'slow:9000' "$T/double.log")" = 4 ]; }
wait_until 30 slow_done || fail "the slow requests were not answered"
assert_eq 4 "$(awk -F'\t' '$4 == "slow:9000" && $3 == 200 && $9 == "accepted"' "$T/double.log" | wc -l)" \
	"slow requests in flight during the reload, answered and accepted"
progress

note "(ii) one more rule for source keep"
checkpoints keep > "$T/before_ii"
cat >>"$T/logmeter.conf" <<CONF
[rule hits_keep]
source = keep
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) .* rid=(?<rid>\d+)$
customer = ip
value = 1
CONF
hup 2
sizes "$T/k/k1.log" "$T/k/k2.log" > "$T/after_ii"
grep -q 'configuration reloaded: 2 sources, 3 rules; sources: 2 unchanged (3 files kept)' "$T/agent.log" ||
	fail "reload (ii): $(grep 'configuration reloaded' "$T/agent.log" | tail -1)"
progress
wait_until 30 stat_is meter_lists 2 || fail "the new rule was not held against the meters"

note "(iii) another glob for source move"
sed -i "s|^path = $T/m/a\*\.log$|path = $T/m/*.log|" "$T/logmeter.conf"
grep -q "^path = $T/m/\*\.log$" "$T/logmeter.conf" || fail "test bug: the glob was not changed"
hup 3
grep -q 'configuration reloaded: 2 sources, 3 rules; sources: 1 unchanged (2 files kept), 1 changed, 0 new, 0 removed; sender kept' "$T/agent.log" ||
	fail "reload (iii): $(grep 'configuration reloaded' "$T/agent.log" | tail -1)"
# eval: the count is taken at each try, not once when wait_until is called.
wait_until 30 eval '[ "$(logged_count "tailing for source move")" = 3 ]' ||
	fail "source move: a1.log reopened and b1.log opened expected: $(grep 'source move' "$T/agent.log")"
progress

note "(iv) another [stripe] setting: a new sender once the old one has its answers"
sed -i 's/^\[stripe\]$/[stripe]\nmax_concurrency = 6/' "$T/logmeter.conf"
hup 4
grep -q 'reload: \[stripe\] max_concurrency changed: the sender finishes its requests in flight' "$T/agent.log" ||
	fail "reload (iv) did not say why the sender restarts"
grep -q 'configuration reloaded: 2 sources, 3 rules; sources: 2 unchanged (4 files kept), 0 changed, 0 new, 0 removed; sender restarted' "$T/agent.log" ||
	fail "reload (iv): $(grep 'configuration reloaded' "$T/agent.log" | tail -1)"
progress

note "(v) a key file that others may read: the reload is refused, and everything goes on"
chmod 0644 "$T/stripe.key"
kill -HUP "$AGENT_PID"
wait_until 30 grep -q 'reload failed: the Stripe API key file .* is readable or writable by others' "$T/agent.log" ||
	fail "reload (v) was not refused: $(grep -i reload "$T/agent.log" | tail -2)"
chmod 0600 "$T/stripe.key"
assert_eq 4 "$(reloads)" "reloads taken"
progress

touch "$T/writer.stop"
wait "$writer" || fail "the writer failed"
assert_eq 2 "$(logged_count 'tailing for source keep')" "files of source keep opened, after four reloads"
assert_eq "$fds0" "$(keep_fds)" "descriptors on the files of source keep"
assert_eq 2 "$(logged_count 'sending at up to')" "senders started (at start and in (iv))"

# Everything read and delivered.
read_all() {
	[ "$(checkpoints keep; checkpoints move)" = "$(sizes "$T/k/k1.log" "$T/k/k2.log" "$T/m/a1.log" "$T/m/b1.log" | sort)" ]
}
drained() {
	read_all && "$LOGMETER" status -c "$T/logmeter.conf" | grep -q '^events: pending 0, delivered [0-9]*, dead letters 0, unsure 0'
}
wait_until 120 drained || fail "not everything was read and delivered: $("$LOGMETER" status -c "$T/logmeter.conf" | grep '^events:')"

assert_eq 0 "$(retried)" "events sent more than once (a request abandoned in flight is sent again)"
assert_eq 0 "$(double_stat duplicates)" "events the double already had"
assert_eq 0 "$(double_stat replays)" "answers replayed by Idempotency-Key"
assert_eq 0 "$(double_stat idempotency_errors)" "requests with a key the double was still answering (409)"
assert_eq 0 "$(double_stat concurrency_violations)" "requests for a (customer, event name) already in flight"
assert_eq 3 "$(double_stat meter_lists)" "meter lists (at start, the new rule in (ii), the new sender in (iv))"
[ "$(double_stat faults.slow)" -ge 4 ] || fail "the slow requests were not made"

# The accepted identifiers: exactly the expected ones, each once: every line for the rid rules,
# and for hits_keep each file's lines from one offset on, within the bounds the test observed.
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$T/logmeter.conf" keep "$T/k/k1.log" "$T/k/k2.log"
expect_file "$T/logmeter.conf" move "$T/m/a1.log" "$T/m/b1.log"
for f in k1 k2; do
	offsets_of "$T/k/$f.log" > "$T/$f.offsets"
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test keep "$(uid_of "$T/logmeter.conf" keep "$T/k/$f.log")" hits_keep \
		< "$T/$f.offsets" > "$T/$f.hits"
done
cut -f1 "$T/accepted.tsv" | sort > "$T/acc.sorted"
[ "$(sort -u "$T/acc.sorted" | wc -l)" = "$(wc -l < "$T/acc.sorted")" ] || fail "an identifier was accepted twice"
"$PYTHON3" - "$T" <<'PY' || fail "the accepted identifiers are not the expected ones"
import sys
t = sys.argv[1]
acc = set(open(t + "/acc.sorted").read().split())
exp = set(open(t + "/expected_ids").read().split())
bad = False
lower = dict(l.split("\t") for l in open(t + "/before_ii").read().splitlines())
upper = dict(l.split("\t") for l in open(t + "/after_ii").read().splitlines())
for f in ("k1", "k2"):
    path = "%s/k/%s.log" % (t, f)
    offs = [int(x) for x in open("%s/%s.offsets" % (t, f)).read().split()]
    ids = open("%s/%s.hits" % (t, f)).read().split()
    got = [o for o, i in zip(offs, ids) if i in acc]
    if not got:
        print("%s: no event of the new rule" % path)
        bad = True
        continue
    b = min(got)
    want = [o for o in offs if o >= b]
    if got != want:
        print("%s: the new rule's events are not every line from offset %d on: %d of %d" % (path, b, len(got), len(want)))
        bad = True
    if not int(lower[path]) <= b <= int(upper[path]):
        print("%s: the new rule starts at offset %d, outside [%s, %s]" % (path, b, lower[path], upper[path]))
        bad = True
    print("%s: the new rule from offset %d (checkpoint before the SIGHUP %s, size after the reload %s), %d events" % (path, b, lower[path], upper[path], len(got)))
    exp |= set(i for o, i in zip(offs, ids) if o >= b)
missing, extra = exp - acc, acc - exp
if missing or extra:
    print("%d expected identifiers not accepted, %d accepted not expected" % (len(missing), len(extra)))
    bad = True
sys.exit(1 if bad else 0)
PY
agent_stop || fail "the agent did not stop cleanly"
echo "t_reload: four reloads under load and a refused one: the unchanged files never reopened, no request in flight abandoned, the sender restarted only for [stripe], $(accepted_count) events accepted once"

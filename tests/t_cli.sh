#!/usr/bin/env bash
# The command line as an operator meets it: one agent per spool, SIGHUP reloads (good, broken, and a
# changed state_dir), an interrupted --once, a renamed source, and test-rule agreeing with run.
. "$(dirname "$0")/lib.sh"
lm_init cli
double_start

mkdir -p "$T/logs"
head -n 50 "$LOGS/elastic_apache_logs.log" > "$T/logs/a.log"
write_config "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source web]
path = $T/logs/*.log
[rule hits]
source = web
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET
customer = ip
value = 1
CONF
n_get=$(grep -c '"GET' "$T/logs/a.log")

# One agent per spool: a second one is refused while the first runs.
agent_start "$T/logmeter.conf"
wait_until 60 accepted_at_least "$n_get" || fail "first agent did not deliver"
# (With another instance id: a refused agent must not even have written its id into the spool.)
sed 's/^instance = test$/instance = intruder/' "$T/logmeter.conf" > "$T/second.conf"
rc=0; timeout 20 "$LOGMETER" run -c "$T/second.conf" 2> "$T/second.log" || rc=$?
[ "$rc" != 0 ] || fail "a second agent on the same spool was allowed to run"
grep -q 'already running' "$T/second.log" || fail "no clear message for the second agent: $(cat "$T/second.log")"
assert_eq test "$(sqlite3 -cmd '.timeout 5000' "file:$T/state/spool.db?mode=ro" "SELECT value FROM meta WHERE key = 'instance'")" \
	"the instance id after a refused second agent"
! grep -q 'instance id changed' "$T/second.log" || fail "the refused agent changed the instance id"

# SIGHUP with a broken configuration keeps the running one.
cp "$T/logmeter.conf" "$T/good.conf"
printf '[rule broken]\nsource = nope\n' >> "$T/logmeter.conf"
kill -HUP "$AGENT_PID"
wait_until 60 grep -q 'reload failed' "$T/agent.log" || fail "broken reload not reported"
# SIGHUP with another state_dir is refused (it would re-read and re-bill everything).
sed "s|^state_dir = .*|state_dir = $T/state2|" "$T/good.conf" > "$T/logmeter.conf"
kill -HUP "$AGENT_PID"
wait_until 60 grep -q 'reload refused: state_dir changed' "$T/agent.log" || fail "state_dir change not refused"
[ ! -e "$T/state2/spool.db" ] || fail "a second spool was created"
# The agent still runs on the old configuration: new lines are delivered once.
cp "$T/good.conf" "$T/logmeter.conf"
sed -n 51,80p "$LOGS/elastic_apache_logs.log" >> "$T/logs/a.log"
n_get=$(grep -c '"GET' "$T/logs/a.log")
wait_until 60 accepted_at_least "$n_get" || fail "lines after the reloads were not delivered"
# A good reload (a second rule) takes effect.
cat >> "$T/logmeter.conf" <<CONF
[rule posts]
source = web
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "POST
customer = ip
value = 1
CONF
kill -HUP "$AGENT_PID"
wait_until 60 grep -q 'configuration reloaded: 1 source, 2 rules' "$T/agent.log" || fail "good reload not applied"
agent_stop || fail "agent did not stop cleanly"
assert_eq "$(cut -f1 "$T/accepted.tsv" | sort -u | wc -l)" "$(wc -l < "$T/accepted.tsv")" "identifiers accepted once each"

# A renamed source: warned about at start, and its files are not read again from their start
# (their lines were billed under the old name): the renamed source goes on from their checkpoints.
sed -i 's/^\[source web\]$/[source website]/; s/^source = web$/source = website/' "$T/logmeter.conf"
"$LOGMETER" check -c "$T/logmeter.conf" >/dev/null || fail "renamed config invalid"
double_stop
rc=0; timeout 10 "$LOGMETER" run -c "$T/logmeter.conf" 2> "$T/rename.log" & pid=$!
wait_until 60 grep -q 'no longer has' "$T/rename.log" || fail "no warning about the renamed source: $(cat "$T/rename.log")"
wait_until 60 grep -q "a.log: read up to offset $(stat -c %s "$T/logs/a.log") by source web .*: source website goes on from there" "$T/rename.log" ||
	fail "the renamed source did not go on from the checkpoint: $(grep 'a.log' "$T/rename.log")"
kill -TERM $pid; wait $pid || true

# --once interrupted while Stripe is unreachable: not a success.
sed -n 81,110p "$LOGS/elastic_apache_logs.log" >> "$T/logs/a.log"
rc=0; timeout -s TERM 3 "$LOGMETER" run --once -c "$T/logmeter.conf" 2> "$T/once.log" || rc=$?
[ "$rc" != 0 ] || fail "an interrupted --once with events pending exited 0"
grep -q 'still pending' "$T/once.log" || fail "no pending count on an interrupted --once: $(tail -3 "$T/once.log")"

# test-rule shows what run will do: old timestamps become dead letters, long lines are skipped.
cat > "$T/tr.conf" <<CONF
[agent]
state_dir = $T/state-tr
max_line_length = 400
[source web]
path = $T/none.log
[rule bytes]
source = web
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
timestamp = time
CONF
head -n 1 "$LOGS/elastic_apache_logs.log" > "$T/tr.in"
awk 'length($0) > 400' "$LOGS/elastic_apache_logs.log" | head -n 1 >> "$T/tr.in"
[ "$(wc -l < "$T/tr.in")" = 2 ] || fail "test bug: no line over 400 bytes in the sample"
out=$("$LOGMETER" test-rule -c "$T/tr.conf" "$T/tr.in")
grep -q '^1: bytes: event .*-> dead letter: outside Stripe' <<<"$out" || fail "test-rule hides the window: $out"
grep -q '^2: skipped: line of [0-9]* bytes is longer than max_line_length (400)' <<<"$out" || fail "test-rule ignores max_line_length: $out"

# check refuses what run would refuse.
sed "s|^api_base = .*|api_base = http://127.0.0.1:9/v1|" "$T/good.conf" > "$T/v1.conf"
rc=0; out=$("$LOGMETER" check -c "$T/v1.conf" 2>&1) || rc=$?
[ "$rc" = 2 ] && grep -q 'api_base' <<<"$out" || fail "check accepted an api_base ending in /v1: $out"
echo "t_cli: lock, reloads, interrupted --once, renamed source, test-rule parity and api_base checks behave"

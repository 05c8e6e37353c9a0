#!/usr/bin/env bash
# A hostile log line against a pattern with nested unlimited repeats (docs/security.md): a rule
# `^(?<c>(?:a+)+)$` tries 2^30 ways to fail on thirty a's and a b. Under a systemd watchdog
# (WatchdogSec=8s: a worker without progress for 4 s is taken for hung):
#   1. with the default limits, 500 such lines in one batch among real nginx lines: each stops
#      at match_limit; the lines are counted in `status` (limits, and as invalid), the rule is
#      warned about once, the nginx lines are billed, and the watchdog never finds ingest stuck;
#   2. after a reload that raises match_limit to 20,000,000 (each line now costs the JIT tens of
#      milliseconds, the batch many seconds), ingest still reports progress line by line: the
#      watchdog keeps pinging, and no second warning comes within the minute.
. "$(dirname "$0")/lib.sh"
lm_init regex_limits
. "$top_srcdir/tests/tail_lib.sh"

SOCK=$T/notify.sock
notify_listen "$SOCK" "$T/notify.log"

double_start
CONF=$T/logmeter.conf
mkdir -p "$T/logs"
write_config "$CONF"
config_nginx_bytes "$CONF" "$T/logs/*.log"
cat >>"$CONF" <<'CONF'
[rule nested]
source = nginx
event_name = requests
pattern = ^(?<c>(?:a+)+)$
customer = c
value = 1
CONF
NGINX=$LOGS/elastic_nginx_logs_prefix29480.log
hostile() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) print "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" }'; }
status_has() { "$LOGMETER" status -c "$CONF" 2>&1 | grep -qxF "$1"; }
warnings() { grep -c "rule 'nested' gave up on it: it hit PCRE2's match_limit" "$T/agent.log" || true; }
stuck() { grep -q "watchdog: the ingest thread has made no progress" "$T/agent.log"; }
pings() { grep -c '^WATCHDOG=1$' "$T/notify.log" || true; }

{
	sed -n 1,200p "$NGINX"
	hostile 500
	sed -n 201,400p "$NGINX"
} >"$T/batch1.log"
NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=8000000 bash -c 'export WATCHDOG_PID=$$; exec "$0" run -c "$1"' \
	"$LOGMETER" "$CONF" >>"$T/agent.out" 2>>"$T/agent.log" &
AGENT_PID=$!
wait_until 30 grep -q '^READY=1' "$T/notify.log" || fail "no READY=1"
start=$(date +%s)
cp "$T/batch1.log" "$T/logs/access.log"
want=$(nginx_bytes_offsets "$T/batch1.log" | wc -l)
wait_until 120 accepted_at_least "$want" || fail "only $(accepted_count) of $want events"
wait_until 30 status_has "limits: 500 lines hit a PCRE2 limit" ||
	fail "status: $("$LOGMETER" status -c "$CONF" 2>&1 | grep -A3 '^limits')"
status_has "  rule nested match_limit 500" || fail "status: $("$LOGMETER" status -c "$CONF" 2>&1 | grep -A3 '^limits')"
assert_eq 1 "$(warnings)" "warnings about rule nested"
! stuck || fail "the watchdog took ingest for hung: $(grep watchdog "$T/agent.log")"
note "default limits: 500 hostile lines counted and warned about once; $want events"

sed -i 's/^pattern = ^(?<c>(?:a+)+)\$$/&\nmatch_limit = 20000000/' "$CONF"
grep -q '^match_limit = 20000000$' "$CONF" || fail "test bug: match_limit not set"
kill -HUP "$AGENT_PID"
wait_until 30 grep -q "configuration reloaded" "$T/agent.log" || fail "no reload"
p0=$(pings)
{
	hostile 300
	sed -n 401,500p "$NGINX"
} >"$T/batch2.log"
cat "$T/batch2.log" >>"$T/logs/access.log"
want=$((want + $(nginx_bytes_offsets "$T/batch2.log" | wc -l)))
wait_until 120 accepted_at_least "$want" || fail "after the reload: $(accepted_count) of $want events"
wait_until 30 status_has "limits: 800 lines hit a PCRE2 limit" ||
	fail "status: $("$LOGMETER" status -c "$CONF" 2>&1 | grep -A3 '^limits')"
elapsed=$(($(date +%s) - start))
! stuck || fail "a slow batch was taken for a hang: $(grep watchdog "$T/agent.log")"
[ "$(pings)" -gt "$p0" ] || fail "no watchdog pings while the slow batch was read"
# Once a minute at most: one warning, or one more per minute the test took.
w=$(warnings)
[ "$w" -ge 1 ] && [ "$w" -le $((1 + elapsed / 60)) ] || fail "$w warnings in $elapsed s"
assert_eq 800 "$(status_sum "$CONF" 10)" "lines counted as invalid"
agent_stop || fail "the agent did not stop cleanly"
assert_eq "$want" "$(accepted_count)" "events accepted"
echo "t_regex_limits: 800 hostile lines counted, warned about $w time(s), no watchdog stall; $want events"

#!/usr/bin/env bash
# `logmeter run` under systemd's Type=notify protocol, without systemd: a real AF_UNIX datagram
# socket in $NOTIFY_SOCKET receives what sd_notify(3) sends, as systemd would. Proves READY=1,
# WATCHDOG=1 pings at the rate WATCHDOG_USEC asks, RELOADING=1/READY=1 around SIGHUP (a good
# reload takes effect, a broken one keeps the old configuration running and says why), STOPPING=1,
# that a hung worker thread stops the pings (LOGMETER_STALL_AT), and that an agent with no
# sources and no rules idles without spinning and picks up a drop-in rule on SIGHUP.
. "$(dirname "$0")/lib.sh"
lm_init systemd_notify

# The listener writes each datagram as one line of $T/notify.log, newlines shown as '|'.
SOCK=$T/notify.sock
notify_listen "$SOCK" "$T/notify.log"
: >"$T/notify.log"

# WatchdogSec=4s: a check every second, a worker stuck for 2 s stops the pings (long enough that a
# loaded CI machine under ASan does not make a healthy worker look stuck).
WATCHDOG_MS=4000

# notify_start CONF [env...]: the agent as systemd starts a Type=notify service with
# WatchdogSec=$WATCHDOG_MS ms; WATCHDOG_PID is the agent's own pid (bash execs it).
notify_start() {
	local conf=$1
	shift
	[ -z "$AGENT_PID" ] || fail "the agent is already running"
	env NOTIFY_SOCKET="$SOCK" WATCHDOG_USEC=$((WATCHDOG_MS * 1000)) "$@" \
		bash -c 'export WATCHDOG_PID=$$; exec "$0" run -c "$1"' "$LOGMETER" "$conf" \
		>>"$T/agent.out" 2>>"$T/agent.log" &
	AGENT_PID=$!
}

pings() { grep -c '^WATCHDOG=1$' "$T/notify.log" || true; }
pings_at_least() { [ "$(pings)" -ge "$1" ]; }
notified() { grep -q -- "$1" "$T/notify.log"; }
logged() { grep -q -- "$1" "$T/agent.log"; }

double_start
mkdir -p "$T/logs"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/*.log"
# Expected bytes events for lines A..B of the Apache log (awk, not logmeter).
bytes_events() {
	apache_bytes_count <(sed -n "$1,$2p" "$LOGS/elastic_apache_logs.log")
}

# --- ready, pings, events -------------------------------------------------------------------
head -n 200 "$LOGS/elastic_apache_logs.log" >"$T/logs/access.log"
notify_start "$T/logmeter.conf"
wait_until 60 notified '^READY=1|STATUS=running: 1 source, 1 rule$' ||
	fail "no READY=1 with the status: $(cat "$T/notify.log")"
want=$(bytes_events 1 200)
wait_until 30 accepted_at_least "$want" || fail "only $(accepted_count) of $want events delivered"
p0=$(pings)
sleep 4
p1=$(pings)
# 4 s at one check per WATCHDOG_MS/4 = 1 s: about 4 pings; at least 2 allows a loaded machine.
[ $((p1 - p0)) -ge 2 ] || fail "$((p1 - p0)) watchdog pings in 4 s (WatchdogSec=4s)"
[ $((p1 - p0)) -le 6 ] || fail "$((p1 - p0)) watchdog pings in 4 s: far more than one per second"
note "READY=1, $want events, $((p1 - p0)) pings in 4 s"

# --- a good reload: a second rule, for lines appended after it ---------------------------------
cat >>"$T/logmeter.conf" <<CONF
[rule hits]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) 
customer = ip
value = 1
CONF
: >"$T/notify.log"
kill -HUP "$AGENT_PID"
wait_until 60 notified '^READY=1|STATUS=running: 1 source, 2 rules$' ||
	fail "no READY=1 after the reload: $(cat "$T/notify.log")"
# RELOADING=1 (with MONOTONIC_USEC, as systemd 253's Type=notify-reload wants) came first, of
# what the reload sent: a watchdog ping may come before it (a ping due when the SIGHUP came is
# sent first, and the listener may write one sent before the log was emptied after that).
first=$(grep -v '^WATCHDOG=1$' "$T/notify.log" | head -n 1)
case $first in
RELOADING=1\|MONOTONIC_USEC=[0-9]*\|STATUS=reloading*) ;;
*) fail "the first message after SIGHUP was '$first', not RELOADING=1" ;;
esac
sed -n 201,250p "$LOGS/elastic_apache_logs.log" >>"$T/logs/access.log"
want=$((want + $(bytes_events 201 250) + 50))
wait_until 30 accepted_at_least "$want" || fail "after the reload: $(accepted_count) of $want events"
note "reload: RELOADING=1 then READY=1; the new rule billed the 50 new lines"

# --- a broken reload: refused, the old configuration keeps running -----------------------------
cp "$T/logmeter.conf" "$T/logmeter.conf.good"
printf '[rule broken]\nsource = apache\nevent_name = requests\npattern = ^(?<ip>\\S+\ncustomer = ip\nvalue = 1\n' >>"$T/logmeter.conf"
line=$(grep -n '^pattern = ^(?<ip>\\S+$' "$T/logmeter.conf" | cut -d: -f1)
: >"$T/notify.log"
kill -HUP "$AGENT_PID"
wait_until 60 notified '^READY=1|STATUS=running: 1 source, 2 rules; the last reload failed' ||
	fail "no READY=1 saying the reload failed: $(cat "$T/notify.log")"
logged "reload failed: keeping the running configuration" || fail "the agent did not log the refusal"
logged "$T/logmeter.conf:$line:" || fail "the log does not name $T/logmeter.conf:$line"
agent_running || fail "a broken reload stopped the agent"
sed -n 251,280p "$LOGS/elastic_apache_logs.log" >>"$T/logs/access.log"
want=$((want + $(bytes_events 251 280) + 30))
wait_until 30 accepted_at_least "$want" || fail "after the broken reload: $(accepted_count) of $want events"
cp "$T/logmeter.conf.good" "$T/logmeter.conf"
wait_until 10 pings_at_least 2 || fail "no watchdog pings after the reloads"
note "broken reload refused ($T/logmeter.conf:$line named), old rules still billing"

# --- stop ------------------------------------------------------------------------------------
: >"$T/notify.log"
agent_stop || fail "the agent exited $? on SIGTERM"
notified '^STOPPING=1' || fail "no STOPPING=1: $(cat "$T/notify.log")"
[ "$(accepted_count)" = "$want" ] || fail "$(accepted_count) events accepted, expected exactly $want"

# --- a hung worker stops the pings -----------------------------------------------------------
for worker in sender ingest; do
	: >"$T/notify.log"
	: >"$T/agent.log"
	notify_start "$T/logmeter.conf" LOGMETER_STALL_AT="$worker:5"
	wait_until 60 notified '^READY=1' || fail "$worker stall: no READY=1"
	wait_until 60 logged "the $worker thread has made no progress" ||
		fail "the stalled $worker thread was not noticed: $(tail -5 "$T/agent.log")"
	logged "the $worker thread stops at its beat 5" || fail "the stall did not happen"
	p0=$(pings)
	sleep 4 # a whole watchdog timeout: systemd would have killed it by now
	p1=$(pings)
	[ "$p1" = "$p0" ] || fail "$worker stalled, yet $((p1 - p0)) pings came in 4 s"
	agent_running || fail "the agent died instead of hanging"
	agent_kill9 # what systemd's watchdog does (SIGABRT, then SIGKILL)
	note "$worker stalled: pings stopped ($p0 before, none after)"
done

# --- an idle agent (the packaged default: no sources, no rules) --------------------------------
mkdir -p "$T/idle/conf.d"
cat >"$T/idle/logmeter.conf" <<CONF
[agent]
state_dir = $T/idle/state
instance = idle
rescan_interval = 1s
[stripe]
api_base = $DOUBLE_URL
api_key_file = $T/stripe.key
retry_min_backoff = 50ms
retry_max_backoff = 500ms
max_requests_per_second = 1000
CONF
: >"$T/notify.log"
notify_start "$T/idle/logmeter.conf"
wait_until 60 notified '^READY=1|STATUS=running: 0 sources, 0 rules$' ||
	fail "the idle agent: $(cat "$T/notify.log") $(tail -5 "$T/agent.log")"
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
c0=$(cpu)
sleep 3
c1=$(cpu)
ticks=$(getconf CLK_TCK)
# A busy loop would burn ~3 s of CPU; a few wake-ups per second cost well under 10% of that.
[ $((c1 - c0)) -lt $((ticks * 3 / 10)) ] || fail "idle agent used $((c1 - c0)) ticks in 3 s"
wait_until 10 pings_at_least 3 || fail "the idle agent sent $(pings) pings"
# A rule dropped into conf.d, then SIGHUP (systemctl reload), and it bills.
sed -e '/^\[agent\]/,/^$/d' -e '/^\[stripe\]/,/^$/d' "$T/logmeter.conf.good" |
	sed -e '/^\[rule hits\]/,$d' >"$T/idle/conf.d/apache.conf"
grep -q '^\[source apache\]' "$T/idle/conf.d/apache.conf" || fail "test bug: $(cat "$T/idle/conf.d/apache.conf")"
: >"$T/notify.log"
before=$(accepted_count) # before the reload: the new rule bills at once
kill -HUP "$AGENT_PID"
wait_until 60 notified '^READY=1|STATUS=running: 1 source, 1 rule$' ||
	fail "the drop-in was not loaded: $(cat "$T/notify.log")"
# The idle agent's own spool has never seen these files: it bills lines 1..280 once more (another
# instance, so other identifiers).
want_idle=$(bytes_events 1 280)
wait_until 60 accepted_at_least $((before + want_idle)) ||
	fail "idle agent after reload: $(( $(accepted_count) - before )) of $want_idle events"
agent_stop || fail "the idle agent exited $?"
[ "$(accepted_count)" = $((before + want_idle)) ] ||
	fail "$(( $(accepted_count) - before )) events from the idle agent, expected exactly $want_idle"
echo "t_systemd_notify: READY/WATCHDOG/RELOADING/STOPPING as systemd expects; idle used $((c1 - c0)) of $((ticks * 3)) ticks"

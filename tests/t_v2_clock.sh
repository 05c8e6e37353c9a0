#!/usr/bin/env bash
# API v2 with this host's clock ahead of Stripe's (an NTP failure): the stream takes events up to
# 5 minutes ahead of Stripe's clock and validates them later, so events stamped by this host 400 s
# ahead of Stripe would be "delivered" and billed nothing. A meter event session's `created` is
# Stripe's clock: the agent measures the difference, holds the events by Stripe's clock and says
# so (the agent's log, and `status` while it runs); `run --once` leaves them pending and exits 1.
# With the clocks agreeing again, they are sent.
# The same with API v1: Stripe answers "too far in the future", and `run --once` says it is
# Stripe's clock that is behind, by at least as much as those answers show (never more than 400 s),
# not that the events are ahead of this host's clock.
. "$(dirname "$0")/lib.sh"
lm_init v2_clock
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log

double_start --timestamp-skew -400
mkdir -p "$T/logs"
head -n 2000 "$SRC_LOG" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log" # the time each line is read
conf="$T/logmeter.conf"
expected=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)

rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once with Stripe's clock 400 s behind"
assert_eq 0 "$(accepted_count)" "events accepted"
assert_eq 0 "$(double_stat error_reports)" "error reports (events Stripe took and did not bill)"
grep -q "this host's clock is [0-9]* s ahead of Stripe's" "$T/agent.log" ||
	fail "the agent did not say the clocks disagree: $(tail -n 5 "$T/agent.log")"
grep -q "run --once: $expected events are held (their timestamps are more than 5 minutes ahead of Stripe's clock)" \
	"$T/agent.log" || fail "run --once did not say it held the events: $(tail -n 5 "$T/agent.log")"

# The agent: `status` says it is Stripe's clock that is behind (the session's created time),
# not that the events are stamped ahead.
agent_start "$conf"
clock_said() {
	"$LOGMETER" status -c "$conf" > "$T/status" 2>&1
	grep -q "^clock: Stripe's clock is [0-9]* s behind this host's (a meter event session's created time)" "$T/status" &&
		grep -q "^held: $expected events stamped more than 5 minutes ahead of Stripe's clock, which is [0-9]* s behind" "$T/status"
}
wait_until 30 clock_said || fail "status does not say Stripe's clock is behind: $(cat "$T/status")"
behind=$(sed -n "s/^clock: Stripe's clock is \([0-9]*\) s behind.*/\1/p" "$T/status")
# The double's clock is 400 s behind; `created` is whole seconds of a clock read a moment later.
[ "$behind" -ge 398 ] && [ "$behind" -le 401 ] || fail "status says Stripe's clock is $behind s behind; it is 400"
agent_stop || fail "agent exited $? on SIGTERM"

# Stripe's clock right again: everything is sent, once.
double_restart
agent_once "$conf" || fail "run --once with the clocks agreeing exited $?"
assert_eq "$expected" "$(accepted_count)" "events accepted in the end"
assert_eq 0 "$(double_stat error_reports)" "error reports in the end"

# API v1, Stripe's clock 400 s behind again, new lines.
sed -i '/^api = v2$/d' "$conf"
double_restart --timestamp-skew -400
sed -n 2001,2300p "$SRC_LOG" >> "$T/logs/access.log"
expected_all=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
held=$((expected_all - expected))
[ "$held" -gt 0 ] || fail "test bug: no new events in lines 2001-2300"
: > "$T/agent.log"
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "v1: run --once with Stripe's clock 400 s behind"
assert_eq "$expected" "$(accepted_count)" "v1: events accepted"
line=$(grep "run --once: $held events are held" "$T/agent.log") ||
	fail "v1: run --once did not say it held the events: $(tail -n 5 "$T/agent.log")"
grep -q "ahead of Stripe's clock); Stripe's clock is at least [0-9]* s behind this host's" <<<"$line" ||
	fail "v1: run --once did not say Stripe's clock is behind: $line"
behind=$(sed -n "s/.*Stripe's clock is at least \([0-9]*\) s behind.*/\1/p" <<<"$line")
[ "$behind" -gt 0 ] && [ "$behind" -le 400 ] || fail "v1: Stripe's clock said $behind s behind; it is 400"
double_restart
agent_once "$conf" || fail "v1: run --once with the clocks agreeing exited $?"
assert_eq "$expected_all" "$(accepted_count)" "v1: events accepted in the end"

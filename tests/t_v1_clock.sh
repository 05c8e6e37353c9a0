#!/usr/bin/env bash
# API v1 with Stripe's clock 400 s behind this host's (an NTP failure on one side): Stripe answers
# "too far in the future" for events stamped now, and the agent holds them. `run --once` says
# whose clock is behind, Stripe's, and by at least how much as Stripe's answers show it (never more
# than the true 400 s): the events are held by Stripe's clock, not ahead of this host's. With the
# clocks agreeing again, they are sent, once.
. "$(dirname "$0")/lib.sh"
lm_init v1_clock
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log

double_start --timestamp-skew -400
mkdir -p "$T/logs"
head -n 300 "$SRC_LOG" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log" # the time each line is read
conf="$T/logmeter.conf"
expected=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)

rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once with Stripe's clock 400 s behind"
assert_eq 0 "$(accepted_count)" "events accepted"
line=$(grep "run --once: $expected events are held" "$T/agent.log") ||
	fail "run --once did not say it held the events: $(tail -n 5 "$T/agent.log")"
grep -q "ahead of Stripe's clock); Stripe's clock is at least [0-9]* s behind this host's" <<<"$line" ||
	fail "run --once did not say Stripe's clock is behind: $line"
if grep -q "ahead of this host's clock" <<<"$line"; then fail "run --once blamed this host's clock: $line"; fi
behind=$(sed -n "s/.*Stripe's clock is at least \([0-9]*\) s behind.*/\1/p" <<<"$line")
[ "$behind" -gt 0 ] && [ "$behind" -le 400 ] || fail "Stripe's clock said $behind s behind; it is 400"

double_restart
agent_once "$conf" || fail "run --once with the clocks agreeing exited $?"
assert_eq "$expected" "$(accepted_count)" "events accepted in the end"

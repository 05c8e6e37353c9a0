#!/usr/bin/env bash
# API v2: a meter event session whose `created` is more than a day off this host's clock, behind
# or ahead, is a wrong answer, not Stripe's clock: trusted, it would hold every event for that
# long (decades, for a `created` of 0). The agent does not use such a session: it says why, with
# both clocks' times in UTC and what to check (this host's date, or what answers at api_base),
# counts an unexpected answer, sends nothing and loses nothing; `run --once` ends. With a sane
# session the events are sent, once.
. "$(dirname "$0")/lib.sh"
lm_init v2_session_skew
SRC_LOG=$LOGS/elastic_nginx_logs_prefix29480.log

double_start --timestamp-skew -200000
mkdir -p "$T/logs"
head -n 500 "$SRC_LOG" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_v2 "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
conf="$T/logmeter.conf"
expected=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)

# check_refused SKEW WORD: run --once against a session `created` SKEW s off must refuse it.
check_refused() {
	local skew=$1 word=$2 rc=0
	: > "$T/agent.log"
	agent_once "$conf" || rc=$?
	[ "$rc" -ne 124 ] || fail "run --once did not end with a session created $skew s off"
	[ "$rc" -ne 0 ] || fail "run --once exited 0 with a session created $skew s off"
	assert_eq 0 "$(accepted_count)" "events accepted with a session created $skew s off"
	assert_eq 0 "$(double_stat error_reports)" "error reports with a session created $skew s off"
	# 200,000 s apart, give or take the request's time: the agent reads its clock in whole
	# seconds before it asks, and Stripe reads its own (`created`, in whole seconds) later, in the
	# same second or, if the request spans a second's tick, in the next (199,999 s behind).
	line=$(grep -o "created time [0-9T:-]*Z is \(1999[0-9][0-9]\|2000[0-9][0-9]\) s (2.3 days) $word this host's clock ([0-9T:-]*Z): no drift explains a day, so this host's date is wrong (compare date -u with a trusted clock; timedatectl, NTP) or what answers at api_base is not Stripe (a proxy, a cache)" \
		"$T/agent.log" | head -n 1)
	[ -n "$line" ] || fail "no word of the session's created time ($skew): $(tail -n 5 "$T/agent.log")"
	# The two UTC times it names are the seconds it names apart (GNU date reads them).
	local theirs ours secs
	theirs=$(date -u -d "$(sed -n 's/^created time \([^ ]*\) is.*/\1/p' <<<"$line")" +%s)
	ours=$(date -u -d "$(sed -n 's/.*this host.s clock (\([^)]*\)).*/\1/p' <<<"$line")" +%s)
	secs=$(sed -n 's/.* is \([0-9]*\) s (.*/\1/p' <<<"$line")
	assert_eq "$secs" "$(( theirs > ours ? theirs - ours : ours - theirs ))" "the seconds between the times the message names ($skew)"
	if grep -q "events are held until Stripe's clock" "$T/agent.log"; then
		fail "the agent held the events by a session created $skew s off"
	fi
	assert_eq "$expected" "$(export_count "$conf" pending)" "events pending ($skew)"
}
check_refused -200000 behind
double_restart --timestamp-skew 200000
check_refused 200000 "ahead of"

double_restart
agent_once "$conf" || fail "run --once with a sane session exited $?"
assert_eq "$expected" "$(accepted_count)" "events accepted in the end"
assert_eq 0 "$(double_stat error_reports)" "error reports in the end"

#!/usr/bin/env bash
# A timestamp_format without a year (syslog's "%b %d %H:%M:%S", here with %z) took the year of the
# time the line was read, with %z its year in UTC. A January line whose offset is ahead of UTC,
# read while it is still 31 December in UTC ("Jan 01 00:30:00 +0100" is 23:30 UTC), was billed a
# year early: a dead letter outside Stripe's window, its usage never billed. The agent's clock
# (libfaketime; skipped without it) and Stripe's (the double's) are set to a minute after such a
# line, at the first New Year at least two days ahead, whatever the time the test starts. Lines of
# that New Year in +01:00 and +14:00 and one of the 31 December before it in UTC are each billed
# once, at the time date(1) reads from the line with its year written out; nothing is dead.
. "$(dirname "$0")/lib.sh"
lm_init timestamp_year
faketime_find || skip "libfaketime is needed"
double_start

mkdir -p "$T/logs"
log=$T/logs/app.log
write_config "$T/logmeter.conf"
cat >>"$T/logmeter.conf" <<CONF
[source app]
path = $log
[rule usage]
source = app
event_name = requests
pattern = ^(?<t>[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d [-+]\d{4}) (?<c>cus_\w+) (?<v>\d+)\$
customer = c
value = v
timestamp = t
timestamp_format = %b %d %H:%M:%S %z
CONF

# The New Year of the lines; the one before it is the year the agent reads them in (in UTC).
year=$(($(date -u -d "@$(($(date +%s) + 2 * 86400))" +%Y) + 1))
cat >"$log" <<LOG
Jan 01 00:30:00 +0100 cus_A 3
Jan 01 09:00:00 +1400 cus_B 5
Dec 31 23:00:00 +0000 cus_C 7
LOG
# What each line says, its year written out (date(1), not logmeter): customer, value, time.
{
	printf 'cus_A\t3\t%s\n' "$(date -u -d "$year-01-01 00:30:00 +0100" +%s)"
	printf 'cus_B\t5\t%s\n' "$(date -u -d "$year-01-01 09:00:00 +1400" +%s)"
	printf 'cus_C\t7\t%s\n' "$(date -u -d "$((year - 1))-12-31 23:00:00 +0000" +%s)"
} | sort >"$T/expected.tsv"
# Read a minute after the +01:00 line, 23:31 UTC on 31 December: every line is in the past, within
# Stripe's 35 days, and the year in UTC is still the one before the lines' New Year until the run
# has taken 29 minutes (a run that slow would read the lines right, with or without the bug).
t_read=$(($(date -u -d "$year-01-01 00:30:00 +0100" +%s) + 60))
off=$((t_read - $(date +%s)))
[ "$off" -gt 0 ] || fail "test bug: the New Year $year is not ahead"
_lm_double_post_json /_double/clock "{\"advance\": $off, \"skew\": $off}"
echo "+${off}s" >"$T/faketime"
rc=0
LD_PRELOAD=$ft FAKETIME_TIMESTAMP_FILE=$T/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 agent_once "$T/logmeter.conf" || rc=$?
note "run --once on 31 December exited $rc"

# Accepted by the double (record: identifier, event_name, customer, value, timestamp, ...).
cut -f3,4,5 "$T/accepted.tsv" 2>/dev/null | sort >"$T/accepted_cvt.tsv"
diff -u "$T/expected.tsv" "$T/accepted_cvt.tsv" >"$T/diff" ||
	fail "the double did not take each line once at its time: $(cat "$T/diff");" \
		"dead letters: $(export_tsv "$T/logmeter.conf" dead | cut -f6,14,11 | head -n 3)"
assert_eq 0 "$(export_count "$T/logmeter.conf" dead)" "dead letters"
assert_eq 3 "$(export_count "$T/logmeter.conf" delivered)" "events delivered"
echo "t_timestamp_year: 3 lines without a year billed at their New Year ($year) times"

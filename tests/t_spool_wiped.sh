#!/usr/bin/env bash
# A spool that comes back empty (a restore of a 0-byte file, a file system that lost it) or goes
# missing, while its state directory shows it had one, is refused loudly by run and status: taken
# for a new spool, it would read every file again and bill what was delivered already. `logmeter
# spool start-over` is the documented way on; then the agent starts a new spool (here with
# read_from = tail, so that nothing is billed again) and bills new lines once.
. "$(dirname "$0")/lib.sh"
lm_init spool_wiped
double_start

mkdir -p "$T/logs"
log=$T/logs/access.log
head -n 200 "$LOGS/elastic_apache_logs.log" > "$log"
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$log"
db=$T/state/spool.db

agent_once "$conf" || fail "run --once exited $?"
assert_accepted_once "$conf" "$log"
n=$(accepted_count)
apache_bytes_ids "$conf" "$log" > "$T/first_ids" || fail "no identifiers for the first run"

# refused WHAT PATTERN: run --once and status fail, say PATTERN and how to go on, bill nothing and
# leave the state directory as it was.
refused() {
	local rc=0 before
	before=$(ls -l "$T/state" | md5sum)
	: > "$T/agent.log"
	agent_once "$conf" || rc=$?
	# 2, as for a bad configuration: only an operator can settle it, so the unit's
	# RestartPreventExitStatus=2 keeps systemd from restarting into it every 5 s.
	assert_eq 2 "$rc" "$1: run --once exit status"
	rc=0
	"$LOGMETER" check -c "$conf" > "$T/check.out" 2>&1 || rc=$?
	assert_eq 2 "$rc" "$1: check exit status"
	grep -q -- "$2" "$T/check.out" || fail "$1: check said: $(cat "$T/check.out")"
	grep -q -- "$2" "$T/agent.log" || fail "$1: no '$2' in: $(cat "$T/agent.log")"
	grep -q "logmeter spool start-over -c FILE" "$T/agent.log" || fail "$1: no way on in: $(cat "$T/agent.log")"
	rc=0
	"$LOGMETER" status -c "$conf" > "$T/status.out" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || fail "$1: status did not refuse it"
	grep -q -- "$2" "$T/status.out" || fail "$1: status said: $(cat "$T/status.out")"
	assert_eq "$n" "$(accepted_count)" "$1: events accepted"
	assert_eq "$before" "$(ls -l "$T/state" | md5sum)" "$1: the state directory changed"
}

note "emptied to 0 bytes"
: > "$db"
rm -f "$db-wal" "$db-shm"
refused "emptied" "spool $db is empty (0 bytes), but this state directory had a spool"
[ -s "$T/state/spool.id" ] || fail "no marker in the state directory"

note "missing"
rm -f "$db"
refused "missing" "spool $db is missing, but this state directory had a spool"

note "started over on purpose"
"$LOGMETER" spool start-over -c "$conf" > "$T/start_over.out" 2>&1 || fail "start-over exited $?: $(cat "$T/start_over.out")"
grep -q "is forgotten: the next start makes a new one" "$T/start_over.out" || fail "start-over said: $(cat "$T/start_over.out")"
rc=0
"$LOGMETER" spool start-over -c "$conf" > "$T/start_over.out" 2>&1 || rc=$?
assert_eq 1 "$rc" "a second start-over"
grep -q "nothing to start over" "$T/start_over.out" || fail "a second start-over said: $(cat "$T/start_over.out")"
sed -i "s|^path = $log\$|path = $log\nread_from = tail|" "$conf"
grep -q '^read_from = tail$' "$conf" || fail "test bug: read_from not set"
size=$(stat -c %s "$log")
agent_start "$conf"
wait_until 30 grep -q "access.log: tailing for source apache from offset $size" "$T/agent.log" ||
	fail "the new spool did not start at the end of the file"
head -n 300 "$LOGS/elastic_apache_logs.log" | tail -n 100 >> "$log"
m=$(LC_ALL=C awk -v from="$size" '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ && off >= from {c++} {off += length($0) + 1} END {print c + 0}' "$log")
[ "$m" -gt 0 ] || fail "test bug: the appended lines make no events"
wait_until 60 accepted_at_least $((n + m)) || fail "appended lines: $(accepted_count) of $((n + m))"
sleep 1 # a line billed twice would arrive now
agent_stop || fail "the agent did not stop cleanly"
uid=$(file_uid "$conf" "$log")
apache_bytes_offsets "$log" | awk -v from="$size" '$1 >= from' | identifiers_of apache "$uid" bytes > "$T/second_ids"
sort "$T/first_ids" "$T/second_ids" > "$T/expected_ids"
double_accepted_ids > "$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/ids.diff" ||
	fail "accepted identifiers differ: $(head -n 20 "$T/ids.diff")"
echo "t_spool_wiped: an emptied and a missing spool refused, nothing billed twice; $m new events once after start-over"

#!/usr/bin/env bash
# `status` as a health check (exit 0 healthy, 1 degraded; text and --json) when usage is being
# lost without anything paused:
#   1. no agent runs while lines wait unread (a crashed agent, a unit skipped, an agent refused at
#      start): degraded, naming the bytes waiting; healthy again once a run read them;
#   2. lines that hit a PCRE2 limit: degraded; with --since after the last of them, not;
#   3. a symbolic link refused (the source does not set follow_symlinks): degraded;
#   4. a file gone while logmeter was stopped (moved to another directory, logrotate's olddir):
#      degraded; a file deleted under the running agent before its last line was read: degraded.
# A `run --once` in which lines were lost (2 to 4) exits 1, its last log line counting them.
# The expected numbers come from wc, awk and the test's own lines, not from logmeter.
. "$(dirname "$0")/lib.sh"
lm_init status_lost
double_start

# status_rc CONF [ARGS]: status's exit status; its output in $T/status.out.
status_rc() {
	local conf=$1 rc=0
	shift
	"$LOGMETER" status -c "$conf" "$@" >"$T/status.out" 2>&1 || rc=$?
	echo "$rc"
}
# degraded CONF WORDS [ARGS]: status exits 1 with a "health: degraded:" line holding WORDS, and
# --json says the same.
degraded() {
	local conf=$1 words=$2
	shift 2
	assert_eq 1 "$(status_rc "$conf" "$@")" "status's exit status for '$words': $(cat "$T/status.out")"
	grep -q "^health: degraded: .*$words" "$T/status.out" || fail "status says: $(grep '^health' "$T/status.out")"
	"$LOGMETER" status -c "$conf" --json "$@" >"$T/status.json" || true
	"$PYTHON3" -c '
import json, re, sys
h = json.load(open(sys.argv[1]))["health"]
if h["status"] != "degraded" or not any(re.search(sys.argv[2], p) for p in h["problems"]):
    sys.exit("status --json: %r" % h)' "$T/status.json" "$words" || fail "status --json disagrees"
}
# once_lost CONF WORDS: run --once exits 1, its last log line saying that lines were lost: WORDS.
once_lost() {
	local rc=0
	agent_once "$1" || rc=$?
	assert_eq 1 "$rc" "run --once's exit status after '$2': $(tail -n 1 "$T/agent.log")"
	tail -n 1 "$T/agent.log" | grep -q "run --once: during this run lines were lost ($2): \`logmeter status\` says why" ||
		fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
}
# once_gone CONF: run --once exits 0 with a file gone when it started, read to its checkpoint
# (what was written to it while logmeter was stopped cannot be known: a warning, not a loss
# known), and says so last.
once_gone() {
	local rc=0
	agent_once "$1" || rc=$?
	assert_eq 0 "$rc" "run --once's exit status with a file gone: $(tail -n 1 "$T/agent.log")"
	tail -n 1 "$T/agent.log" | grep -q "warning: run --once: 1 file was gone when the run started (deleted, or moved out of its directory, while logmeter was not running), read to its checkpoint" ||
		fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
}
healthy() {
	local conf=$1
	shift
	assert_eq 0 "$(status_rc "$conf" "$@")" "status's exit status: $(cat "$T/status.out")"
	grep -qx "health: ok" "$T/status.out" || fail "status says: $(grep '^health' "$T/status.out")"
}
# conf_for NAME: a configuration with its own state directory and log directory $T/NAME.
conf_for() {
	local c=$T/$1.conf
	write_config "$c"
	sed -i "s#^state_dir = .*#state_dir = $T/$1/state#" "$c"
	mkdir -p "$T/$1/logs"
	echo "$c"
}

note "1. no agent while lines wait"
C1=$(conf_for idle)
log=$T/idle/logs/access.log
head -n 100 "$LOGS/elastic_apache_logs.log" >"$log"
config_apache_bytes "$C1" "$log"
agent_once "$C1" || fail "run --once exited $?"
healthy "$C1"
before=$(stat -c %s "$log")
head -n 150 "$LOGS/elastic_apache_logs.log" | tail -n 50 >>"$log"
waiting=$(($(stat -c %s "$log") - before))
degraded "$C1" "no agent is running, and $waiting bytes wait unread in 1 files"
agent_once "$C1" || fail "run --once exited $?"
healthy "$C1"

note "2. lines that hit a PCRE2 limit"
C2=$(conf_for limits)
cat >>"$C2" <<CONF
[source hostile]
path = $T/limits/logs/app.log
[rule nested]
source = hostile
event_name = requests
pattern = ^(?<c>(?:a+)+)$
customer = c
value = 1
CONF
awk 'BEGIN { for (i = 0; i < 20; i++) print "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" }' >"$T/limits/logs/app.log"
hostile=$(grep -c 'b$' "$T/limits/logs/app.log")
once_lost "$C2" "$hostile lines hit a PCRE2 limit"
degraded "$C2" "$hostile lines hit a PCRE2 limit since the agent started"
degraded "$C2" "$hostile lines hit a PCRE2 limit" --since 1h
healthy "$C2" --since "@$(($(date +%s) + 3600))"

note "3. a symbolic link refused"
C3=$(conf_for links)
head -n 50 "$LOGS/elastic_apache_logs.log" >"$T/links/target.txt"
ln -s "$T/links/target.txt" "$T/links/logs/access.log"
config_apache_bytes "$C3" "$T/links/logs/*.log"
once_lost "$C3" "1 symbolic link was refused"
degraded "$C3" "1 symbolic links were refused"

note "4. files gone unread"
C4=$(conf_for gone)
log=$T/gone/logs/access.log
head -n 20 "$LOGS/elastic_apache_logs.log" >"$log"
config_apache_bytes "$C4" "$log"
agent_once "$C4" || fail "run --once exited $?"
healthy "$C4"
# Rotated into another directory while logmeter is stopped, after lines were added to it.
mkdir -p "$T/gone/old"
head -n 30 "$LOGS/elastic_apache_logs.log" | tail -n 10 >>"$log"
mv "$log" "$T/gone/old/access.log.1"
head -n 40 "$LOGS/elastic_apache_logs.log" | tail -n 10 >"$log"
once_gone "$C4"
grep -q "access.log: gone while logmeter was stopped" "$T/agent.log" || fail "no warning of the gone file"
degraded "$C4" "1 files were gone when the agent started"
# Deleted under the running agent with its last line unfinished: those bytes are never read.
C5=$(conf_for deleted)
log=$T/deleted/logs/access.log
config_apache_bytes "$C5" "$log"
head -n 10 "$LOGS/elastic_apache_logs.log" >"$log"
printf '%s' "$(sed -n 11p "$LOGS/elastic_apache_logs.log")" >>"$log"
whole=$(head -n 10 "$LOGS/elastic_apache_logs.log" | wc -c)
partial=$(($(stat -c %s "$log") - whole))
agent_start "$C5"
wait_until 30 sh -c "'$LOGMETER' status -c '$C5' 2>/dev/null | grep -q '^    offset $whole '" ||
	fail "the whole lines were not read: $(cat "$T/status.out")"
rm "$log"
wait_until 30 sh -c "'$LOGMETER' status -c '$C5' 2>/dev/null | grep -q 'state gone'" ||
	fail "the deleted file was not released"
degraded "$C5" "1 files were gone before they were read to their end .$partial bytes unread."
agent_stop || fail "the agent did not stop cleanly"
echo "t_status_lost: degraded with no agent and lines waiting, PCRE2 limits (and --since), a refused symlink, files gone unread"

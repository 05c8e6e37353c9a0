#!/usr/bin/env bash
# A symlink the source does not follow is never opened, not even to look at its content: the
# checks that judge whether a new file is a copy of a tailed one (copytruncate), whether a record
# still describes a file and whether a file beside a rotated one was read open what they look at
# through the same guard as a log (docs/security.md). Here a link to the API key file sits in a
# watched directory through many rescans; strace records every open of its name: none may follow
# it (an open without O_NOFOLLOW).
. "$(dirname "$0")/lib.sh"
lm_init symlink_look
command -v strace >/dev/null 2>&1 || skip "no strace"
double_start

NGINX=$LOGS/elastic_nginx_logs_prefix29480.log
mkdir -p "$T/logs"
write_config "$T/logmeter.conf"
cat >>"$T/logmeter.conf" <<CONF
[source app]
path = $T/logs/*.log
[rule words]
source = app
event_name = requests
pattern = ^(?<c>\S+)
customer = c
value = 1
CONF
head -n 200 "$NGINX" > "$T/logs/app.log"
ln -s "$T/stripe.key" "$T/logs/k.log"
expected=$(grep -cP '^\S+' "$T/logs/app.log")

strace -f -qq -e trace=open,openat,openat2,stat,lstat,newfstatat,statx -o "$T/strace.out" \
	"$LOGMETER" run -c "$T/logmeter.conf" >>"$T/agent.out" 2>>"$T/agent.log" &
STRACE_PID=$!
# stop_traced: SIGTERM to the agent (strace's child: strace itself would only detach from it).
stop_traced() {
	local pid
	pid=$(pgrep -P "$STRACE_PID" 2>/dev/null) && kill -TERM $pid 2>/dev/null
	wait "$STRACE_PID" 2>/dev/null
}
trap 'rc=$?; stop_traced; (exit $rc); lm_cleanup' EXIT
wait_until 60 accepted_at_least "$expected" || fail "app.log not delivered: $(accepted_count) of $expected"
wait_until 60 grep -q 'k.log: a symbolic link, not followed' "$T/agent.log" || fail "k.log not refused"
# Rescans (every second): each looks at k.log's name again.
looked() { [ "$(grep -c 'logs/k\.log"' "$T/strace.out")" -ge "$1" ]; }
base=$(grep -c 'logs/k\.log"' "$T/strace.out")
wait_until 120 looked $((base + 12)) || fail "the agent did not look at k.log again (rescans)"
stop_traced || true

grep 'logs/k\.log"' "$T/strace.out" | grep -E 'open(at2?)?\(' | grep -v O_NOFOLLOW > "$T/followed" || true
[ ! -s "$T/followed" ] || fail "k.log (a link to the key) opened following it $(wc -l < "$T/followed") times: $(head -n 2 "$T/followed")"
assert_eq "$expected" "$(accepted_count)" "events accepted"
! grep -qF "$API_KEY" "$T/accepted.tsv" || fail "the key reached the double"
echo "t_symlink_look: a link to the key never opened through $((base + 12)) looks at its name"

#!/usr/bin/env bash
# Where the API key must not stay (docs/security.md):
#   1. the environment: LOGMETER_STRIPE_API_KEY is not in /proc/PID/environ of the running agent,
#      which still delivers with it, and again after a SIGHUP reload;
#   2. core dumps: the agent is not dumpable and its core limit is 0, so SIGQUIT leaves no core,
#      however high the limit it was started with; with [agent] allow_core_dumps = yes (for
#      debugging) it leaves one, with the key in it: proof that this machine writes cores where
#      the test looks (skipped where core_pattern pipes them elsewhere, or a sanitizer keeps
#      them off);
#   3. the files the agent creates are its own: 0600 (0700 for the state directory it makes)
#      under the umask of 022 it was started with.
. "$(dirname "$0")/lib.sh"
lm_init key_memory
double_start
ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -Hc)"

CONF=$T/logmeter.conf
mkdir -p "$T/logs"
write_config "$CONF"
rmdir "$T/state" # the agent makes it
sed -i '/^api_key_file = /d' "$CONF"
config_apache_bytes "$CONF" "$T/logs/*.log"
KEY=$API_KEY
APACHE=$LOGS/elastic_apache_logs.log

# agent_in DIR CONF: the agent with DIR as its working directory (where a core goes), the key
# only in its environment (not in lib.sh's API_KEY), the umask 022 of a shell.
agent_in() {
	mkdir -p "$1"
	(cd "$1" && umask 022 && unset API_KEY && LOGMETER_STRIPE_API_KEY=$KEY exec "$LOGMETER" run -c "$2") \
		>>"$T/agent.out" 2>>"$T/agent.log" &
	AGENT_PID=$!
}
started() { grep -q "started: instance" "$T/agent.log"; }

note "1. the key leaves the environment"
sed -n 1,300p "$APACHE" >"$T/logs/access.log"
agent_in "$T/run1" "$CONF"
want=$(apache_bytes_count "$T/logs/access.log")
wait_until 60 accepted_at_least "$want" || fail "only $(accepted_count) of $want events"
tr '\0' '\n' <"/proc/$AGENT_PID/environ" >"$T/environ" || fail "cannot read /proc/$AGENT_PID/environ"
grep -q '^PATH=' "$T/environ" || fail "test bug: /proc/$AGENT_PID/environ shows no PATH"
! grep -qF "$KEY" "$T/environ" || fail "the API key is in /proc/$AGENT_PID/environ"
! grep -q "^LOGMETER_STRIPE_API_KEY=." "$T/environ" || fail "LOGMETER_STRIPE_API_KEY still has a value"
# A reload reads the key again, from what was taken out of the environment.
kill -HUP "$AGENT_PID"
wait_until 30 grep -q "configuration reloaded" "$T/agent.log" || fail "no reload"
sed -n 301,600p "$APACHE" >>"$T/logs/access.log"
want=$(apache_bytes_count "$T/logs/access.log")
wait_until 60 accepted_at_least "$want" || fail "after the reload: $(accepted_count) of $want events"

note "3. its files are its own"
for f in spool.db spool.db-wal spool.db-shm agent.state agent.lock; do
	assert_eq "600" "$(stat -c %a "$T/state/$f")" "mode of $f"
done
assert_eq "700" "$(stat -c %a "$T/state")" "mode of the state directory it made"

note "2. no core"
grep -q "^Max core file size *0 " "/proc/$AGENT_PID/limits" ||
	fail "core limit: $(grep 'core file' "/proc/$AGENT_PID/limits")"
kill -QUIT "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
AGENT_PID=
[ "$rc" -gt 128 ] || fail "SIGQUIT: exit status $rc"
[ -z "$(ls "$T/run1" | grep '^core')" ] || fail "a core dump was written: $(ls -l "$T/run1")"

pattern=$(cat /proc/sys/kernel/core_pattern)
case $pattern in
'|'* | */*)
	note "core_pattern is '$pattern': cores go elsewhere here; the positive control is skipped"
	;;
*)
	sed -i 's/^\[agent\]$/[agent]\nallow_core_dumps = yes/' "$CONF"
	agent_in "$T/run2" "$CONF"
	wait_until 30 eval 'grep -c "started: instance" "$T/agent.log" | grep -qx 2' || fail "the second agent did not start"
	if grep -q "^Max core file size *0 " "/proc/$AGENT_PID/limits"; then
		# AddressSanitizer sets RLIMIT_CORE to 0 itself (its disable_coredump): nothing to see.
		ldd "$LOGMETER" | grep -q libasan || fail "allow_core_dumps = yes did not give the core limit back"
		note "built with AddressSanitizer, which keeps cores off: the positive control is skipped"
		agent_stop || true
	else
		kill -QUIT "$AGENT_PID"
		wait "$AGENT_PID" || true
		AGENT_PID=
		core=$(ls "$T/run2" | grep '^core' | head -n 1)
		[ -n "$core" ] || fail "no core even with allow_core_dumps = yes: the test cannot see cores here"
		grep -qaF "$KEY" "$T/run2/$core" || fail "test bug: the core holds no key"
		note "with allow_core_dumps = yes a core is written ($(du -h "$T/run2/$core" | cut -f1)), the key in it"
		rm -f "$T/run2/$core"
	fi
	;;
esac
! grep -qF "$KEY" "$T/agent.log" || fail "the key is in the log"
echo "t_key_memory: the key out of /proc/PID/environ, no core dump, files 0600"

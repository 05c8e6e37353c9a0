#!/usr/bin/env bash
# A symlink written literally as a source's `path` (no wildcard) is the administrator's, as the
# rest of what the administrator wrote (docs/security.md): current.log -> app-1.log is followed,
# without follow_symlinks. Still never to logmeter's own files (current.log -> the key file is
# refused), and not a link another user made there (root only: one owned by nobody is refused,
# saying who owns it and who may; owned by root, it is followed).
. "$(dirname "$0")/lib.sh"
lm_init symlink_literal
double_start

NGINX=$LOGS/elastic_nginx_logs_prefix29480.log
L=$T/logs
CONF=$T/etc/logmeter.conf # not beside the logs: the configuration's directory is logmeter's own
mkdir -p "$L" "$T/etc"
write_config "$CONF"
for s in cur key other; do
	mkdir -p "$L/$s"
	cat >>"$CONF" <<CONF
[source $s]
path = $L/$s/current.log
[rule words_$s]
source = $s
event_name = requests
pattern = ^(?<c>\S+)
customer = c
value = 1
CONF
done
head -n 120 "$NGINX" > "$L/cur/app-1.log"
ln -s app-1.log "$L/cur/current.log"
ln -s "$T/stripe.key" "$L/key/current.log"
head -n 30 "$NGINX" > "$L/other/app-1.log"
expected=$(grep -cP '^\S+' "$L/cur/app-1.log")
if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null; then
	ln -s app-1.log "$L/other/current.log"
	chown -h nobody "$L/other/current.log"
fi

rc=0
agent_once "$CONF" || rc=$?
# A link refused (the other user's; not the one to the key, logmeter's own) is lines not read,
# as `status` says: run --once exits 1 for it, and says so last.
if [ -L "$L/other/current.log" ]; then
	assert_eq 1 "$rc" "run --once's exit status with a link refused"
	tail -n 1 "$T/agent.log" | grep -q "run --once: during this run lines were lost (1 symbolic link was refused)" ||
		fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
else
	assert_eq 0 "$rc" "run --once's exit status"
fi
assert_eq "$expected" "$(accepted_count)" "events of current.log -> app-1.log"
grep -q "key/current.log: it is the API key file" "$T/agent.log" ||
	fail "the literal link to the key was not refused as logmeter's own: $(cat "$T/agent.log")"
! grep -qF "$API_KEY" "$T/accepted.tsv" || fail "the key reached the double"
if [ -L "$L/other/current.log" ]; then
	# The refusal says who owns the link and who may, and a fix that keeps the check.
	why="$L/other/current.log: a symbolic link (to app-1.log) owned by nobody (uid $(id -u nobody)): \[source other\] path names it without wildcards, and such a link is followed only when root or the user running logmeter, $(id -un) (uid $(id -u)), owns it: refused; if it points where it should, chown -h root it, or set path to its target"
	grep -q "$why" "$T/agent.log" ||
		fail "a literal link of another user was followed, or refused without saying why: $(cat "$T/agent.log")"
	"$LOGMETER" check -c "$CONF" > "$T/check.out" 2> "$T/check.err" || fail "check exited $?: $(cat "$T/check.err")"
	grep -q "warning: $why" "$T/check.err" || fail "check does not say why the link is refused: $(cat "$T/check.err")"
	# status's health names safe fixes, not following every link.
	"$LOGMETER" status -c "$CONF" > "$T/status.out" 2>&1 || true
	grep -q "^health: degraded: 1 symbolic links were refused .*name a target that is a log of yours in a source's path, or exclude the link (exclude =); set follow_symlinks = yes only where no untrusted user can make links" "$T/status.out" ||
		fail "status's advice on refused links: $(cat "$T/status.out")"
	# The advice works: owned by root (the user running the test), the link is followed.
	chown -h "$(id -u)" "$L/other/current.log"
	agent_once "$CONF" || fail "run --once after chown -h exited $?"
	assert_eq "$((expected + $(grep -cP '^\S+' "$L/other/app-1.log")))" "$(accepted_count)" \
		"events once the literal link belongs to root"
else
	note "not root: a literal link of another user is not tried"
fi
echo "t_symlink_literal: a literal current.log link followed ($expected events); to the key and of another user refused"

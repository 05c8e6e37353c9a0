#!/usr/bin/env bash
# What `run` refuses to start with besides a bad configuration, and that `check` refuses alike,
# with the same words and exit status 2 (docs/security.md): a systemd unit with
# RestartPreventExitStatus=2 does not restart into the same refusal every few seconds.
#   - a state directory that others or its group may write, that another user owns, or that is
#     reached through a symbolic link (the real path the refusal suggests is held to the same checks:
#     the advice works, or the refusal says why it would not yet); one (existing or not) inside a directory that others or its
#     group may write without the sticky bit, or that a user other than root or logmeter's owns; a spool.db or spool.db-wal that is a symbolic link (its
#     target is never created, even by root);
#   - an API key file that others may read, that its group may write, that a group other than the
#     one logmeter runs as (or logmeter) may read, or no key at all.
# Admin commands that open the spool without those checks (status) refuse a spool.db symlink
# too (SQLITE_OPEN_NOFOLLOW). Nothing is written into a refused state directory.
. "$(dirname "$0")/lib.sh"
lm_init state_dir
double_start

CONF=$T/logmeter.conf
mkdir -p "$T/logs"
write_config "$CONF"
config_apache_bytes "$CONF" "$T/logs/*.log"
sed -n 1,100p "$LOGS/elastic_apache_logs.log" >"$T/logs/access.log"
S=$T/state

# refused WORDS: check and run --once both exit 2 saying WORDS (a fixed string), in the same
# message, and leave no spool behind.
refused() {
	local words=$1 rc=0 crc=0 cmsg rmsg
	"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" || crc=$?
	assert_eq 2 "$crc" "check's exit status for '$words': $(cat "$T/check.err")"
	cmsg=$(sed -n 's/^error: //p' "$T/check.err")
	grep -qF -- "$words" <<<"$cmsg" || fail "check says '$cmsg', not '$words'"
	: >"$T/agent.log"
	agent_once "$CONF" || rc=$?
	assert_eq 2 "$rc" "run's exit status for '$words': $(cat "$T/agent.log")"
	rmsg=$(sed -n 's/^logmeter: error: //p' "$T/agent.log")
	assert_eq "$cmsg" "$rmsg" "run's words against check's"
	assert_eq 0 "$(accepted_count)" "events delivered despite the refusal"
}
no_spool() {
	[ ! -e "$S/spool.db" ] || fail "a spool was created in a refused state directory: $(ls -la "$S")"
}

note "a state directory others may write"
chmod 0777 "$S"
refused "state_dir $S is writable by others (mode 0777)"
no_spool
chmod 0775 "$S"
refused "state_dir $S is writable by its group (mode 0775)"
no_spool

if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null; then
	note "a state directory of another user"
	chmod 0700 "$S"
	chown nobody "$S"
	refused "state_dir $S belongs to uid $(id -u nobody) (nobody), not to the user running logmeter (uid 0, root)"
	no_spool
	chown root "$S"
else
	note "not root: a state directory of another user is not tried"
fi
chmod 0700 "$S"

# Whoever may write the directory that holds the state directory may rename it away, spool.id
# with it: the next start would make a new spool and bill every log again.
note "a state directory inside a directory others may write"
P=$T/shared
S_KEPT=$S
S=$P/state
mkdir -p "$P"
chmod 0777 "$P"
sed -i "s#^state_dir = .*#state_dir = $S#" "$CONF"
refused "state_dir $S is inside $P, which is writable by others without the sticky bit (mode 0777)"
[ ! -e "$S" ] || fail "the state directory was created inside $P"
mkdir -m 0700 "$S"
refused "state_dir $S is inside $P, which is writable by others without the sticky bit (mode 0777)"
no_spool
chmod 0770 "$P"
refused "state_dir $S is inside $P, which is writable by its group without the sticky bit (mode 0770)"
no_spool
chmod 1777 "$P" # sticky, as /tmp: only the owner of an entry may rename it
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>&1 || fail "a sticky parent was refused: $(cat "$T/check.out")"
if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null; then
	chmod 0755 "$P"
	chown nobody "$P"
	refused "state_dir $S is inside $P, which belongs to uid $(id -u nobody) (nobody), neither root nor the user running logmeter"
	no_spool
fi
S=$S_KEPT
sed -i "s#^state_dir = .*#state_dir = $S#" "$CONF"

note "a state directory through a symlink"
mv "$S" "$T/real-state"
ln -s "$T/real-state" "$S"
refused "state_dir $S is reached through a symbolic link (its real path is $T/real-state): logmeter opens the spool without following links; set state_dir = $T/real-state (under the packaged systemd unit, also ReadWritePaths=$T/real-state in a drop-in"
# The advice works: the real path passes.
sed -i "s#^state_dir = .*#state_dir = $T/real-state#" "$CONF"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" ||
	fail "the real path the refusal suggests is refused too: $(cat "$T/check.err")"
sed -i "s#^state_dir = .*#state_dir = $S#" "$CONF"
rm "$S"
# A real path that would be refused too: the refusal says so, and why, so that following it
# does not only meet the next refusal; fixing both, it passes.
mkdir -m 0777 "$T/open"
mv "$T/real-state" "$T/open/real-state"
ln -s "$T/open/real-state" "$S"
refused "state_dir $S is reached through a symbolic link (its real path is $T/open/real-state): logmeter opens the spool without following links; set state_dir = $T/open/real-state once it passes too, which it does not now: state_dir $T/open/real-state is inside $T/open, which is writable by others without the sticky bit (mode 0777)"
chmod go-w "$T/open"
sed -i "s#^state_dir = .*#state_dir = $T/open/real-state#" "$CONF"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" ||
	fail "the real path, its directory fixed as the refusal says, is refused: $(cat "$T/check.err")"
sed -i "s#^state_dir = .*#state_dir = $S#" "$CONF"
rm "$S"
mv "$T/open/real-state" "$S"

note "spool.db and spool.db-wal as symlinks"
mkdir -p "$T/victim"
ln -s "$T/victim/planted.db" "$S/spool.db"
refused "$S/spool.db is a symbolic link, not a regular file"
[ ! -e "$T/victim/planted.db" ] || fail "the link's target was created"
# A link to an existing database: status, which reads the spool without the checks of run,
# does not open it either.
sqlite3 "$T/victim/other.db" 'CREATE TABLE t(x)'
ln -sfn "$T/victim/other.db" "$S/spool.db"
rc=0
"$LOGMETER" status -c "$CONF" >"$T/status.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -qF "spool $S/spool.db is a symbolic link or is reached through one: refused" "$T/status.out" ||
	fail "status through a spool.db symlink: exit $rc: $(cat "$T/status.out")"
rm "$S/spool.db"
ln -s "$T/victim/planted.db-wal" "$S/spool.db-wal"
refused "$S/spool.db-wal is a symbolic link, not a regular file"
[ ! -e "$T/victim/planted.db-wal" ] || fail "the WAL link's target was created"
rm "$S/spool.db-wal"

note "the API key file"
chmod 0644 "$T/stripe.key"
refused "the Stripe API key file $T/stripe.key is readable or writable by others (mode 0644)"
chmod 0600 "$T/stripe.key"
# Group bits: a group may replace the key only never; read it only if it is the group logmeter
# runs as (or the service's own group logmeter). The user running the test is root for chgrp to
# a group it is not in; adm is where the package puts the user logmeter, to read /var/log.
own_group=$(id -gn)
chgrp "$own_group" "$T/stripe.key"
chmod 0660 "$T/stripe.key"
refused "the Stripe API key file $T/stripe.key is writable by its group $own_group (mode 0660)"
if [ "$(id -u)" = 0 ] && other_group=$(getent group adm | cut -d: -f1) && [ -n "$other_group" ] &&
	[ "$(getent group adm | cut -d: -f3)" != "$(id -g)" ]; then
	chgrp "$other_group" "$T/stripe.key"
	chmod 0640 "$T/stripe.key"
	refused "the Stripe API key file $T/stripe.key is readable by its group $other_group (mode 0640), which is neither the group logmeter runs as ($own_group) nor logmeter"
	grep -qF 'chown root:logmeter and chmod 640 it (or chmod 600' "$T/check.err" ||
		fail "the refusal does not say how to fix it: $(cat "$T/check.err")"
	chmod 0660 "$T/stripe.key"
	refused "the Stripe API key file $T/stripe.key is writable by its group $other_group (mode 0660)"
	chgrp "$own_group" "$T/stripe.key"
else
	note "not root, or no group adm apart from ours: a key file of a foreign group is not tried"
fi
# Its owner may rewrite it whatever the mode: root or the user running logmeter only.
if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null; then
	chmod 0600 "$T/stripe.key"
	chown nobody "$T/stripe.key"
	refused "the Stripe API key file $T/stripe.key belongs to nobody, neither root nor the user running logmeter (root)"
	chown root "$T/stripe.key"
else
	note "not root, or no user nobody: a key file of another owner is not tried"
fi
# Its own group may read it: check and run accept it (below, with a spool and events).
chmod 0640 "$T/stripe.key"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" ||
	fail "a key file 0640 of the group logmeter runs as: $(cat "$T/check.err")"
chmod 0600 "$T/stripe.key"
sed -i "s#^api_key_file = .*#api_key_file = $T/nokey#" "$CONF"
refused "cannot read the Stripe API key file $T/nokey"
sed -i "s#^api_key_file = .*#api_key_file = $T/stripe.key#" "$CONF"
no_spool

note "all fixed: check and run agree again"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" || fail "check: $(cat "$T/check.err")"
[ ! -s "$T/check.err" ] || fail "check warned: $(cat "$T/check.err")"
agent_once "$CONF" || fail "run --once exited $?"
assert_eq "$(apache_bytes_count "$T/logs/access.log")" "$(accepted_count)" "events delivered"
grep -qx "RestartPreventExitStatus=2" "$top_srcdir/debian/logmeter.service" ||
	fail "the systemd unit restarts on exit status 2"
echo "t_state_dir: refusals of the state directory and the key, alike in check and run (exit 2)"

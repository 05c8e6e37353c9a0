#!/usr/bin/env bash
# `logmeter spool recover` run as root (the natural way) on the spool of the service user keeps
# the spool's owner: a root-owned spool.db would be refused by the agent, which runs as that user,
# and the unit does not restart on that refusal (exit 2), so billing would stop (docs/spool.md).
. "$(dirname "$0")/lib.sh"
lm_init spool_recover_owner
[ "$(id -u)" = 0 ] || skip "needs root, to recover as root a spool of another user"
getent passwd nobody >/dev/null || skip "no user nobody"
double_start

mkdir -p "$T/logs"
head -n 300 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/access.log"
agent_once "$T/logmeter.conf" || fail "run --once exited $?"
group=$(id -gn nobody)
chown -R "nobody:$group" "$T/state"
# --force: the spool is sound, and recover leaves a sound spool as it is without it.
out=$("$LOGMETER" spool recover --force -c "$T/logmeter.conf" 2>&1) || fail "spool recover exited $?: $out"
ls "$T/state"/spool.db.before-recover-* >/dev/null 2>&1 || fail "the old spool was not kept: $(ls "$T/state")"
assert_eq "nobody:$group" "$(stat -c %U:%G "$T/state/spool.db")" "owner of the recovered spool.db"
for f in "$T/state"/spool.db-wal "$T/state"/spool.db-shm; do
	[ ! -e "$f" ] || assert_eq "nobody:$group" "$(stat -c %U:%G "$f")" "owner of $f"
done
echo "t_spool_recover_owner: recovered as root, spool.db still nobody:$group's"

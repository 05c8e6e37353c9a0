#!/usr/bin/env bash
# What a writable log directory can do with symlinks (docs/security.md). Whoever can create a
# file where a source's glob looks can put a link there: to the API key file, to the spool, to
# the configuration. The rule of the test bills the first word of every line, so a key read as
# a log would become a customer id, in the spool and at Stripe.
#   1. follow_symlinks = no (the default): every link the glob matches, to a file or through a
#      directory a wildcard matched, is refused, and so is a hard link to the key file; each
#      refusal is logged once however many rescans see it again, counted in `status`, and
#      `check` names the same files in the same words; the real logs are billed.
#   2. follow_symlinks = yes: links are followed (a log elsewhere, a directory elsewhere), but
#      never to the key, the spool, the configuration or the include directory.
# Each time the key appears nowhere: not in the spool, not at the double, not in the log.
. "$(dirname "$0")/lib.sh"
lm_init symlink_guard
double_start

CONF=$T/etc/logmeter.conf
L=$T/logs
NGINX=$LOGS/elastic_nginx_logs_prefix29480.log
mkdir -p "$T/etc/conf.d" "$L" "$T/dirs/good" "$T/secret" "$T/elsewhere"
write_config "$CONF"
printf '[agent]\nrotate_wait = 100ms\n' >"$T/etc/conf.d/timers.conf"
config_rules() { # config_rules [FOLLOW]: the sources, with follow_symlinks = FOLLOW if given
	local follow=${1:+follow_symlinks = $1}
	cat <<CONF
[source app]
path = $L/*.log
$follow
[source dirs]
path = $T/dirs/*/app.log
$follow
[rule words_app]
source = app
event_name = requests
pattern = ^(?<c>\S+)
customer = c
value = 1
[rule words_dirs]
source = dirs
event_name = requests
pattern = ^(?<c>\S+)
customer = c
value = 1
CONF
}
cp "$CONF" "$T/base.conf"
config_rules >>"$CONF"

# The logs, real nginx lines; and the attacker's links beside them.
sed -n 1,40p "$NGINX" >"$L/access.log"
sed -n 41,60p "$NGINX" >"$T/dirs/good/app.log"
sed -n 61,75p "$NGINX" >"$T/elsewhere/real.log"
sed -n 76,90p "$NGINX" >"$T/secret/app.log"
sed -n 91,95p "$NGINX" >"$T/etc/app.log"
ln -s "$T/stripe.key" "$L/key.log"
ln -s "$CONF" "$L/conf.log"
ln -s "$T/state/spool.db" "$L/spool.log"
ln -s "$T/etc/conf.d/timers.conf" "$L/include.log"
ln -s "$T/elsewhere/real.log" "$L/other.log"
ln "$T/stripe.key" "$L/hard.log"
ln -s "$T/secret" "$T/dirs/evil"
ln -s "$T/etc" "$T/dirs/etc"
KEY=$(cat "$T/stripe.key")
lines() { cat "$@" | wc -l; }

key_nowhere() {
	local f
	for f in "$T/accepted.tsv" "$T/double.log" "$T/agent.log" "$T/agent.out" "$T/backfill.log" \
		"$T/export.jsonl"; do
		[ ! -f "$f" ] || ! grep -qF "$KEY" "$f" || fail "the API key is in $(basename "$f")"
	done
}
status_has() { "$LOGMETER" status -c "$CONF" 2>&1 | grep -qxF "$1"; }
# refusals: the refusal messages of the agent's log, as `check` words them.
refusals() {
	sed -n 's/^logmeter: warning: \(.*: refused\) (retried at every rescan)$/\1/p' "$T/agent.log" | sort
}

note "1. follow_symlinks = no, by default"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" || fail "check refused: $(cat "$T/check.err")"
sed -n 's/^warning: //p' "$T/check.err" | sort >"$T/check.refused"
assert_eq 8 "$(wc -l <"$T/check.refused")" "files check says run refuses: $(cat "$T/check.err")"
grep -qF "$L/key.log: a symbolic link, not followed ([source app] follow_symlinks = no): refused" "$T/check.refused" ||
	fail "check does not name the key link: $(cat "$T/check.refused")"
grep -qF "$T/dirs/evil/app.log: reached through a symbolic link (it is $T/secret/app.log)" "$T/check.refused" ||
	fail "check does not name the link through a directory: $(cat "$T/check.refused")"
grep -qF "$L/hard.log: it is the API key file ($L/hard.log)" "$T/check.refused" ||
	fail "check does not name the hard link to the key: $(cat "$T/check.refused")"

agent_start "$CONF"
want=$(lines "$L/access.log" "$T/dirs/good/app.log")
wait_until 60 accepted_at_least "$want" || fail "only $(accepted_count) of $want events"
wait_until 30 status_has "refused: 7 symbolic links not followed, 1 files of logmeter's own (docs/security.md)" ||
	fail "status: $("$LOGMETER" status -c "$CONF" 2>&1 | grep -E '^(refused|limits)')"
# Rescans see the links again and again: two rotated files released "drained", each by a rescan
# at least rotate_wait after its last change, prove that rescans ran after the refusals.
mv "$L/access.log" "$L/access.log.1"
wait_until 30 grep -q "access.log.1: .*released (drained)" "$T/agent.log" || fail "no rescan released access.log.1"
sed -n 96,100p "$NGINX" >"$L/late.log"
want=$((want + 5))
wait_until 30 accepted_at_least "$want" || fail "late.log: only $(accepted_count) of $want events"
mv "$L/late.log" "$L/late.log.1"
wait_until 30 grep -q "late.log.1: .*released (drained)" "$T/agent.log" || fail "no rescan released late.log.1"
refusals >"$T/run.refused"
diff -u "$T/check.refused" "$T/run.refused" >"$T/refused.diff" ||
	fail "run and check disagree, or a refusal was logged twice: $(cat "$T/refused.diff")"
status_has "refused: 7 symbolic links not followed, 1 files of logmeter's own (docs/security.md)" ||
	fail "the refusals were counted again: $("$LOGMETER" status -c "$CONF" 2>&1 | grep '^refused')"
agent_stop || fail "the agent did not stop cleanly"
assert_eq "$want" "$(accepted_count)" "events accepted"
# backfill opens archives as the agent opens logs: the links among them refused alike.
for f in key.log hard.log; do
	rc=0
	"$LOGMETER" backfill -c "$CONF" --stamp-now --source app "$L/$f" >>"$T/agent.out" 2>"$T/backfill.err" || rc=$?
	[ "$rc" = 1 ] && grep -qF "$(grep -F "$L/$f: " "$T/check.refused")" "$T/backfill.err" ||
		fail "backfill of $f: exit $rc: $(cat "$T/backfill.err")"
	cat "$T/backfill.err" >>"$T/backfill.log"
done
assert_eq "$want" "$(accepted_count)" "events accepted after the backfills"
"$LOGMETER" spool export -c "$CONF" >"$T/export.jsonl" || fail "spool export failed"
key_nowhere
note "no-follow: 7 links and 1 hard link refused, each logged once, and by backfill; $want events"

note "2. follow_symlinks = yes"
cp "$T/base.conf" "$CONF"
config_rules yes >>"$CONF"
mv "$T/agent.log" "$T/agent1.log"
"$LOGMETER" check -c "$CONF" >"$T/check.out" 2>"$T/check.err" || fail "check refused: $(cat "$T/check.err")"
sed -n 's/^warning: //p' "$T/check.err" | sort >"$T/check.refused"
for p in "$L/key.log: it is the API key file ($T/stripe.key)" \
	"$L/hard.log: it is the API key file ($L/hard.log)" \
	"$L/conf.log: it is a configuration file ($CONF)" \
	"$L/include.log: it is a configuration file ($T/etc/conf.d/timers.conf)" \
	"$L/spool.log: it is a file of the spool ($T/state/spool.db)" \
	"$T/dirs/etc/app.log: a symbolic link into $T/etc (to $T/etc/app.log), a directory of logmeter's own"; do
	grep -qF "$p" "$T/check.refused" || fail "check does not refuse '$p': $(cat "$T/check.refused")"
done
assert_eq 6 "$(wc -l <"$T/check.refused")" "files check says run refuses: $(cat "$T/check.refused")"
agent_start "$CONF"
want=$((want + $(lines "$T/elsewhere/real.log" "$T/secret/app.log")))
wait_until 60 accepted_at_least "$want" || fail "links elsewhere: only $(accepted_count) of $want events"
wait_until 30 status_has "refused: 0 symbolic links not followed, 6 files of logmeter's own (docs/security.md)" ||
	fail "status: $("$LOGMETER" status -c "$CONF" 2>&1 | grep -E '^(refused|limits)')"
refusals >"$T/run.refused"
diff -u "$T/check.refused" "$T/run.refused" >"$T/refused.diff" || fail "run and check disagree: $(cat "$T/refused.diff")"
agent_stop || fail "the agent did not stop cleanly"
assert_eq "$want" "$(accepted_count)" "events accepted"
"$LOGMETER" spool export -c "$CONF" >"$T/export.jsonl" || fail "spool export failed"
key_nowhere
echo "t_symlink_guard: links refused without follow_symlinks, and into logmeter's own files with it; $want events; the key nowhere"

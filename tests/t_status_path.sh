#!/usr/bin/env bash
# `status` names a rotated file where it is now, not where logmeter last saw it: a file rotated
# again after it was released (logrotate shifts app.log.1 to app.log.2 at the next rotation), one
# renamed while logmeter was stopped, and one moved to a directory nobody watches (logrotate's
# olddir) while the agent still reads it.
. "$(dirname "$0")/lib.sh"
lm_init status_path
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/sp" "$T/old"
conf=$T/logmeter.conf
write_config "$conf"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 1s/' "$conf"
rule_conf sp "$T/sp/app.log" >> "$conf"
L=$T/sp/app.log

# path_of UID: the path status shows for the record UID.
path_of() {
	status_tsv "$conf" | awk -F'\t' -v u="$1" '$2 == u { print $1 }'
}
# state_of UID: its state in status.
state_of() {
	status_tsv "$conf" | awk -F'\t' -v u="$1" '$2 == u { print $3 }'
}

lines 1 10 > "$L"
agent_start "$conf"
wait_until 60 accepted_at_least 10 || fail "the first lines were not delivered"
uid1=$(uid_of "$conf" sp "$L")

note "rotated, released, then rotated again"
mv "$L" "$L.1"
lines 11 5 > "$L"
wait_until 60 eval '[ "$(state_of "$uid1")" = drained ]' || fail "the rotated file was not released"
mv "$L.1" "$L.2"
assert_eq "$L.2" "$(path_of "$uid1")" "path of the file rotated twice"
"$LOGMETER" status -c "$conf" | grep -qF "renamed since logmeter last saw it, as $L.1" ||
	fail "status does not say where it was: $("$LOGMETER" status -c "$conf" | grep -A1 "$L.2")"
"$LOGMETER" status --json -c "$conf" | "$PYTHON3" -c '
import json, sys
f = [f for f in json.load(sys.stdin)["files"] if f["identity"] == sys.argv[1]][0]
assert f["path"] == sys.argv[2] and f["recorded_path"] == sys.argv[3], f' "$uid1" "$L.2" "$L.1" ||
	fail "status --json does not name the file where it is"

note "moved to a directory nobody watches while the agent reads it"
wait_until 60 accepted_at_least 15 || fail "app.log: $(accepted_count) of 15"
uid2=$(uid_of "$conf" sp "$L")
exec 7>>"$L" # the writer keeps its descriptor
mv "$L" "$T/old/app.log.1"
lines 16 5 > "$L"
lines 21 4 >&7
wait_until 60 accepted_at_least 24 || fail "$(accepted_count) of 24 delivered"
exec 7>&-
wait_until 30 eval '[ "$(path_of "$uid2")" = "$T/old/app.log.1" ]' ||
	fail "status shows $(path_of "$uid2") for the file moved to $T/old/app.log.1"

note "renamed while logmeter is stopped"
agent_stop || fail "the agent did not stop cleanly"
mv "$L.2" "$L.3"
assert_eq "$L.3" "$(path_of "$uid1")" "path of the file rotated while stopped"
echo "t_status_path: status names rotated files where they are"

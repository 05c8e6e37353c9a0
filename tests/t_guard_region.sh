#!/usr/bin/env bash
# The guard's 4 KiB region of agent.state (read by `status`) with more than it can hold: 40 rules
# with 100-byte names, each of which hits PCRE2's match_limit on the same 3 hostile lines, and a
# sparse file whose path is about 450 bytes long (its tailing warning keeps the path). Nothing may
# be cut silently: every rule is either shown with its count or counted as not shown, and a path
# shown is the whole path (docs/security.md, docs/tailing.md). 2: a path longer than the 511
# bytes the region keeps is shown marked " [cut]", not as the path of another file.
. "$(dirname "$0")/lib.sh"
lm_init guard_region
. "$top_srcdir/tests/tail_lib.sh"
double_start

x100=$(head -c 100 /dev/zero | tr '\0' d)
D=$T/$x100/$x100/$x100/$x100/$(head -c 40 /dev/zero | tr '\0' e)
mkdir -p "$D"
conf=$T/logmeter.conf
write_config "$conf"
# A configuration line holds 199 bytes at most: the glob reaches the long directories.
printf '[source s]\npath = %s/d*/d*/d*/d*/e*/*.log\n\n' "$T" >>"$conf"
nrules=40
for i in $(seq 1 $nrules); do
	name=r$(printf '%03d' "$i")_$(head -c 95 /dev/zero | tr '\0' n)
	printf '[rule %s]\nsource = s\nevent_name = requests\npattern = ^(?<c>(?:a+)+)$\n' "$name"
	printf 'match_limit = 1000\ncustomer = c\nvalue = 1\n\n'
done >>"$conf"
hostile() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) print "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" }'; }

agent_start "$conf"
hostile 3 >"$D/h.log"
printf 'x\n' >"$D/sparse.log"
truncate -s 1G "$D/sparse.log" || skip "no sparse file here"
limits() { "$LOGMETER" status -c "$conf" 2>&1 | grep -qxF "limits: $((nrules * 3)) lines hit a PCRE2 limit"; }
wait_until 60 limits || fail "status: $("$LOGMETER" status -c "$conf" 2>&1 | grep '^limits')"
hole() { "$LOGMETER" status -c "$conf" 2>&1 | grep -q '^tailing: .* 1 files that end in a hole'; }
wait_until 60 hole || fail "status: $("$LOGMETER" status -c "$conf" 2>&1 | grep '^tailing')"
agent_stop || fail "agent exit $?"

"$LOGMETER" status -c "$conf" >"$T/status.txt" 2>&1 || true
shown=$(grep -c '^  rule r[0-9]*_n* match_limit 3$' "$T/status.txt" || true)
cut=$(sed -n 's/^  \([0-9]*\) more rules hit a limit, not shown.*/\1/p' "$T/status.txt")
note "$shown rules shown, ${cut:-no} more said not shown"
assert_eq "$nrules" "$((shown + ${cut:-0}))" "rules shown plus rules said not shown"
path=$(sed -n 's/^  sparse_holes: the last at [^:]*:[^:]*:[^:]*: //p' "$T/status.txt")
case $path in
"$D/sparse.log" | "(its path not kept"*) ;;
*) fail "the sparse file's path in status is neither whole nor said not kept: '$path'" ;;
esac
"$LOGMETER" status -c "$conf" --json >"$T/status.json" 2>&1 || true
"$PYTHON3" - "$T/status.json" "$nrules" "$D/sparse.log" <<'PY' || fail "status --json"
import json, sys
g = json.load(open(sys.argv[1]))["guard"]
n = len(g["limits_by_rule"]) + g["limits_rules_cut"]
assert n == int(sys.argv[2]), (len(g["limits_by_rule"]), g["limits_rules_cut"])
assert all(r["match_limit"] == 3 for r in g["limits_by_rule"]), g["limits_by_rule"]
p = g["tailing"]["sparse_holes"]["path"]
assert p in (None, sys.argv[3]), p
PY
note "2: a path longer than the 511 bytes kept: marked cut, not shown as another file's path"
L=$T/long/$x100/$x100/$x100/$x100/$x100/$(head -c 40 /dev/zero | tr '\0' e)
mkdir -p "$L"
conf2=$T/logmeter2.conf
write_config "$conf2"
sed -i "s|^state_dir = .*|state_dir = $T/state2|" "$conf2"
printf '[source l]\npath = %s/long/d*/d*/d*/d*/d*/e*/*.log\n\n' "$T" >>"$conf2"
printf '[rule l]\nsource = l\nevent_name = requests\npattern = ^(?<c>z)$\ncustomer = c\nvalue = 1\n' >>"$conf2"
printf 'x\n' >"$L/sparse.log"
truncate -s 1G "$L/sparse.log" || skip "no sparse file here"
long=$L/sparse.log
[ "${#long}" -gt 511 ] || fail "test bug: the path is ${#long} bytes long"
agent_start "$conf2"
hole2() { "$LOGMETER" status -c "$conf2" 2>&1 | grep -q '^tailing: .* 1 files that end in a hole'; }
wait_until 60 hole2 || fail "2: status: $("$LOGMETER" status -c "$conf2" 2>&1 | grep '^tailing')"
agent_stop || fail "agent exit $?"
"$LOGMETER" status -c "$conf2" >"$T/status2.txt" 2>&1 || true
path=$(sed -n 's/^  sparse_holes: the last at [^:]*:[^:]*:[^:]*: //p' "$T/status2.txt")
case $path in
*" [cut]") [ "${long#"${path% \[cut\]}"}" != "$long" ] || fail "2: the cut path is no prefix of the path: '$path'" ;;
*) fail "2: the path in status is not marked cut: '$path' (${#path} bytes, the path ${#long})" ;;
esac
echo "t_guard_region: $nrules rules that hit a limit, each shown or counted as not shown; the path whole"

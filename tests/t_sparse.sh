#!/usr/bin/env bash
# A file under the glob extended into a huge hole (`truncate -s 1T`: anyone who may write a file
# where a glob looks can do it, and it costs no disk): its trailing NULs are not consumed until
# other bytes follow them, so reading them again at every change would scan a whole TiB of zeros
# on the thread that reads every file, and the other files' lines would wait behind it. The hole
# is seen as one (SEEK_DATA) and not read; another file's lines are read at once; the agent stops
# cleanly. `status` counts it and names the file (text and --json).
. "$(dirname "$0")/lib.sh"
lm_init sparse
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/sp"
write_config "$T/logmeter.conf"
rule_conf sp "$T/sp/*.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
A=$T/sp/a.log
B=$T/sp/b.log
writer_init

put_rids "$A" 10
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
cp "$A" "$T/a_before"
uid_a=$(uid_of "$conf" sp "$A")
truncate -s 1T "$A" || skip "no sparse file of 1 TiB here"
put_rids "$B" 10
wait_until 60 delivered || fail "another file's lines not read behind the hole: $(accepted_count) of $written"
wait_until 60 grep -q "sp/a.log: its last [0-9]* bytes are a hole" "$T/agent.log" ||
	fail "the hole was not seen"
# status shows it (text and --json): counted, the file named.
sparse_status() {
	"$LOGMETER" status -c "$conf" > "$T/status.txt" 2>&1
	grep -q "^tailing: 0 copies .*, 0 files rotated .*, 1 files that end in a hole" "$T/status.txt" &&
		grep -qF "  sparse_holes: the last at " "$T/status.txt" &&
		grep -q "sparse_holes: .*: $A\$" "$T/status.txt"
}
wait_until 30 sparse_status || fail "status does not show the hole: $(grep -A3 '^tailing' "$T/status.txt")"
"$LOGMETER" status -c "$conf" --json > "$T/status.json" || true
"$PYTHON3" - "$T/status.json" "$A" <<'PY' || fail "status --json does not show the hole"
import json, sys
t = json.load(open(sys.argv[1]))["guard"]["tailing"]
assert t["sparse_holes"]["count"] == 1 and t["sparse_holes"]["path"] == sys.argv[2], t
assert isinstance(t["sparse_holes"]["last"], int), t
for k in ("empty_copies", "rotated_stopped"):
    assert t[k] == {"count": 0, "last": None, "path": None}, t
PY
agent_stop || fail "agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_from sp "$uid_a" "$T/a_before" 0
expect_file "$conf" sp "$B"
check_accepted
assert_eq 1 "$(grep -c 'are a hole' "$T/agent.log")" "hole warnings"
echo "t_sparse: a 1 TiB hole not read; the other file's $((written - 10)) lines read at once"

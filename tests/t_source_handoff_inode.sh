#!/usr/bin/env bash
# A log deleted while logmeter was stopped, with lines written after its checkpoint, and a new
# file in another source's directory that got its inode (ext4 gives a freed inode to the next file
# created): that new file is no hand-over of the deleted one (docs/tailing.md, "One file, one
# source"). Source b reads it from its start, under a record of its own, and the deleted file's
# record of source a is marked gone with its loss counted (the lines written to it after its
# checkpoint were never read), not said "moved while logmeter was stopped ..., read on by source
# b" and drained, which hid the loss from `status`. The inode reuse is made certain by giving the
# record of the deleted file, while logmeter is stopped, the device and inode of the new file in
# the spool, which is what the agent would find after a real reuse. Every rid of the files still
# there is accepted once (rids by awk).
. "$(dirname "$0")/lib.sh"
lm_init source_handoff_inode
. "$top_srcdir/tests/tail_lib.sh"
double_start
rid=1
written=0

mkdir -p "$T/a" "$T/b"
conf=$T/logmeter.conf
write_config "$conf"
{
	rule_conf a "$T/a/*.log"
	rule_conf b "$T/b/*.log"
} >>"$conf"
state=$(sed -n 's/^[[:space:]]*state_dir[[:space:]]*=[[:space:]]*//p' "$conf" | tail -n 1)
put_rids "$T/a/x.log" 30
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent exit $?"
at=$(stat -c %s "$T/a/x.log")

note "a/x.log written to and deleted while stopped, b/new.log created with its inode"
put_rids "$T/a/x.log" 10 # never read: lost with the file
rm "$T/a/x.log"
lost=10
put_rids "$T/b/new.log" 20
"$PYTHON3" - "$state" "$T/a/x.log" "$T/b/new.log" <<'PY' || fail "cannot give the record the new file's inode"
import os, sqlite3, sys
st = os.stat(sys.argv[3])
db = sqlite3.connect(sys.argv[1] + "/spool.db", timeout=10)
n = db.execute("UPDATE files SET dev = ?, ino = ? WHERE source = 'a' AND path = ?",
               (st.st_dev, st.st_ino, sys.argv[2])).rowcount
assert n == 1, n
db.commit()
PY
agent_start "$conf"
accepted_all() { accepted_at_least $((written - lost)); }
wait_until 60 accepted_all || fail "b/new.log not read: $(accepted_count) of $((written - lost)) accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent exit $?"

# Every rid of the files there (a/x.log's first 30 lines were delivered before it was deleted).
seq 1 30 >"$T/exp_rids"
LC_ALL=C awk '{ sub(/.* rid=/, ""); print }' "$T/b/new.log" >>"$T/exp_rids"
assert_eq "$(sort -n "$T/exp_rids" | tr '\n' ' ')" "$(cut -f4 "$T/accepted.tsv" | sort -n | tr '\n' ' ')" \
	"rids accepted"
! grep -qF "$T/a/x.log: moved while logmeter was stopped to $T/b/new.log" "$T/agent.log" ||
	fail "the deleted a/x.log said moved to b/new.log and read on from offset $at"
grep -qF "$T/a/x.log: gone while logmeter was stopped (deleted, or moved out of its directory): nothing after offset $at of it can be read" \
	"$T/agent.log" || fail "the loss of a/x.log not logged: $(grep -F x.log "$T/agent.log" | tail -3)"
assert_eq gone "$(spool_sql "$conf" "SELECT state FROM files WHERE source = 'a' AND path = ?" "$T/a/x.log")" \
	"a's record of the deleted file"
"$LOGMETER" status -c "$conf" --json >"$T/status.json" 2>/dev/null || true
assert_eq 1 "$("$PYTHON3" -c 'import json, sys; print(json.load(open(sys.argv[1]))["guard"]["gone_unread"])' "$T/status.json")" \
	"status --json: files gone at start"
echo "t_source_handoff_inode: a file with a deleted log's inode in another source's directory is read from its start, and the deleted log said gone"

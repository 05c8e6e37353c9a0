#!/usr/bin/env bash
# A file of one source deleted (or compressed by logrotate) while logmeter is stopped, and a new
# log of another source, in another directory of the same file system, made after it: ext4 gives
# the freed inode to the next file created, in any directory, so the new file has the inode of
# the first source's record, which is still reading. It was taken for that source's file ("read by
# source rs only") and read by no source at all: every line of it lost. The new file is read by
# the source whose glob matches it, from its start; the first source's record is marked gone.
# The inode reuse is made certain by giving the record the new file's inode while logmeter is
# stopped (what the agent sees after the reuse); the rids billed must be exactly those written.
. "$(dirname "$0")/lib.sh"
lm_init inode_reuse_other_source
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/logs/rs" "$T/logs/od"
write_config "$T/logmeter.conf"
rule_conf rs "$T/logs/rs/app.log" >>"$T/logmeter.conf"
rule_conf od "$T/logs/od/app.log" >>"$T/logmeter.conf"
lines 1 20 >"$T/logs/rs/app.log"
agent_once "$T/logmeter.conf" || fail "the first run --once exited $?"

# While stopped: rs's file deleted, a new log of od made, its inode the one rs's record holds.
rm "$T/logs/rs/app.log"
lines 21 30 >"$T/logs/od/app.log"
"$PYTHON3" -c '
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/spool.db", timeout=10)
st = os.stat(sys.argv[2])
n = db.execute("UPDATE files SET dev = ?, ino = ? WHERE source = ?", (st.st_dev, st.st_ino, "rs")).rowcount
db.commit()
sys.exit(0 if n == 1 else 1)' "$T/state" "$T/logs/od/app.log" || fail "test bug: cannot give rs's record the new inode"
agent_once "$T/logmeter.conf" || fail "the second run --once exited $?"

assert_eq "$(seq 1 50)" "$(cut -f4 "$T/accepted.tsv" | sort -n)" "rids accepted, each once"
grep -q "read by source rs" "$T/agent.log" && fail "od's new file taken for rs's: $(grep 'read by source rs' "$T/agent.log")"
assert_eq gone "$(spool_sql "$T/logmeter.conf" "SELECT CASE state WHEN 2 THEN 'gone' ELSE state END FROM files WHERE source = 'rs'")" \
	"rs's record"
echo "t_inode_reuse_other_source: a new file of another source with a freed inode is read by its own source"

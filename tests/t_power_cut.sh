#!/usr/bin/env bash
# A power cut with durability = normal: the commits after the WAL's last sync are undone (SQLite:
# "a transaction committed in WAL mode with synchronous=NORMAL might roll back following a power
# loss"). The agent runs under strace, which records each write to spool.db-wal and each sync of
# it; after kill -9 the WAL is cut back to what had been synced when the agent died, as a power
# cut at that moment leaves it at worst (the log files themselves are kept whole). Then the agent
# starts again: lines are read again where their commits were undone, and nothing Stripe accepted
# is billed again or sent with another payload (docs/durability.md). A file first seen just before
# the cut is among them.
. "$(dirname "$0")/lib.sh"
lm_init power_cut
. "$top_srcdir/tests/tail_lib.sh"
command -v strace >/dev/null 2>&1 || skip "strace is needed to see what reached the disk"
strace -f -qq -o /dev/null true 2>/dev/null || skip "strace cannot trace here (ptrace refused)"
double_start

mkdir -p "$T/pc"
conf=$T/logmeter.conf
write_config "$conf"
sed -i 's/^\[agent\]$/[agent]\ndurability = normal\nbatch_lines = 20/' "$conf"
rule_conf pc "$T/pc/*.log" >> "$conf"
wal=$T/state/spool.db-wal

lines 1 60 > "$T/pc/a.log"
# The agent under strace, started by it (every write to the WAL is seen): AGENT_PID is strace's;
# the agent is its child.
strace -f -qq -y -s 0 -e trace=pwrite64,write,fsync,fdatasync,ftruncate -e signal=none \
	-o "$T/strace.out" "$LOGMETER" run -c "$conf" >>"$T/agent.out" 2>>"$T/agent.log" &
AGENT_PID=$!
wait_until 30 grep -q 'info: started' "$T/agent.log" || fail "the agent did not start"
agent=$(pgrep -P "$AGENT_PID" -x logmeter) || fail "no agent under strace"
wait_until 60 accepted_at_least 60 || fail "a.log: $(accepted_count) of 60 delivered"
lines 61 40 >> "$T/pc/a.log"
lines 101 30 > "$T/pc/b.log" # first seen now: its record is one of the last commits
wait_until 60 accepted_at_least 130 || fail "$(accepted_count) of 130 delivered"
# The sender records deliveries up to a second after Stripe's answers: with them in the WAL and
# not yet synced, the cut below undoes them.
wait_until 60 eval '"$LOGMETER" status -c "$conf" | grep -q "^events: pending 0, delivered 130,"' ||
	fail "deliveries not recorded: $("$LOGMETER" status -c "$conf" | grep '^events')"
kill -KILL "$agent"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=
accepted_before=$(accepted_count)

# What a power cut at that moment leaves: the WAL as far as it had been synced. A write counts as
# synced if it completed before a sync of the WAL began that then succeeded.
"$PYTHON3" - "$T/strace.out" "$wal" "$T/state/spool.db" > "$T/cut" <<'PY' || fail "cannot cut the WAL: $(cat "$T/cut")"
import os, re, sys
trace, wal, db = sys.argv[1:4]
call = re.compile(r'^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\((\d+)<([^>]*)>)(.*)$')
pending, written, synced, cut_below, db_writes = {}, 0, 0, None, 0
for line in open(trace):
    m = call.match(line)
    if not m:
        continue
    pid, resumed, name, fd, path, rest = m.groups()
    if name is not None:
        pending[pid] = (name, path, rest)
        if name in ("fsync", "fdatasync") and path == wal:
            pending[pid] = (name, path, rest, written)
    if "<unfinished ...>" in rest and name is not None:
        continue
    entry = pending.pop(pid, None)
    if entry is None:
        continue
    res = re.search(r'= (-?\d+)', rest)
    if res is None:
        continue
    ret = int(res.group(1))
    name, path = entry[0], entry[1]
    args = entry[2]
    if name in ("pwrite64", "write") and path == wal and ret > 0:
        off = re.search(r', (\d+), (\d+)\)?\s', args)
        if name == "pwrite64" and off:
            start = int(off.group(2))
            if start < synced:
                cut_below = start  # the WAL started over: the model does not hold
            written = max(written, start + ret)
    elif name in ("pwrite64", "write") and path == db and ret > 0 and written > 0:
        db_writes += 1  # a checkpoint: the database file changed too
    elif name in ("fsync", "fdatasync") and path == wal and ret == 0:
        synced = max(synced, entry[3])
    elif name == "ftruncate" and path == wal:
        cut_below = 0
if cut_below is not None or db_writes:
    sys.exit("the WAL started over or was checkpointed during the test: cutting it proves nothing")
size = os.path.getsize(wal)
if synced <= 0 or synced > size:
    sys.exit("no sync of the WAL seen (synced %d of %d bytes)" % (synced, size))
os.truncate(wal, synced)
try:
    os.unlink(wal[:-4] + "-shm")
except FileNotFoundError:
    pass
print(size - synced)
PY
cut=$(cat "$T/cut")
[ "$cut" -gt 0 ] || fail "nothing was left unsynced: the test would prove nothing"
note "the WAL cut back by $cut bytes to what was synced"

agent_start "$conf"
wait_until 60 eval '[ "$("$LOGMETER" status -c "$conf" | sed -n "s/^events: pending \([0-9]*\),.*/\1/p")" = 0 ]' ||
	fail "events left pending after the restart: $("$LOGMETER" status -c "$conf" | grep '^events')"
wait_until 60 eval '[ "$(status_sum "$conf" 6)" = 0 ]' || fail "the files were not read to their end"
sleep 1 # a line billed twice would arrive now
agent_stop || fail "the agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" pc "$T/pc/a.log" "$T/pc/b.log"
check_accepted
assert_eq 130 "$(accepted_count)" "events accepted"
# Nothing re-sent with another payload under a key used before, nothing dead.
assert_eq 0 "$(double_stat idempotency_errors)" "idempotency errors"
"$LOGMETER" status -c "$conf" | grep -q "^events: pending 0, delivered 130, dead letters 0, unsure 0" ||
	fail "status: $("$LOGMETER" status -c "$conf" | grep '^events')"
# What Stripe accepted is what the spool holds: the timestamps of the first reading.
"$LOGMETER" spool export -c "$conf" > "$T/export.jsonl" || fail "export exited $?"
"$PYTHON3" - "$T/export.jsonl" "$T/accepted.tsv" <<'PY' || fail "accepted timestamps differ from the spool's"
import json, sys
spool = {e["identifier"]: e["timestamp"] for e in map(json.loads, open(sys.argv[1]))}
for line in open(sys.argv[2]):
    f = line.rstrip("\n").split("\t")
    assert int(f[4]) == spool[f[0]], (f[0], f[4], spool.get(f[0]))
PY
echo "t_power_cut: $cut bytes of WAL undone after $accepted_before events accepted; each of 130 accepted once, unchanged"

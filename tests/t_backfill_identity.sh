#!/usr/bin/env bash
# logmeter backfill never bills the same content twice, through the real binary against the
# Stripe double (counts from zcat | grep -cP, never from logmeter):
#   1. three backfills of the same archive and one of another file at once, no agent: the archive
#      is billed once, and nothing is left pending when they have all ended (the one that waited
#      delivers what it committed, it is not taken for an agent);
#   2. beside a running agent, the same content under three paths (two .gz, one plain) at once:
#      billed once;
#   3. copies of the live file shorter than what the agent read (a backup taken earlier, a
#      copytruncate copy the agent read past, compressed, its first three lines: shorter than the
#      1 KiB fingerprint): nothing new, nothing billed;
#   4. a concatenation of two archives billed before: nothing new; one of an archive billed before
#      and a new one: only the new one, which is then recognised alone; a plain file of new lines
#      followed by an archive's content billed before (no gzip member says where it starts): only
#      the new lines;
#   5. an archive another source billed: refused, in the dry run too, nothing billed.
. "$(dirname "$0")/lib.sh"
lm_init backfill_identity
double_start

PATTERN='^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)' # config_apache_bytes's
APACHE=$LOGS/elastic_apache_logs.log
mkdir -p "$T/logs" "$T/archive" "$T/nlogs"
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$T/logs/access.log"
cat >>"$conf" <<CONF
[source nginx]
path = $T/nlogs/*.log
[rule nbytes]
source = nginx
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
CONF

bf() { # bf OUT ARGS...: backfill --source apache, stdout to OUT, stderr to agent.log
	local out=$1
	shift
	timeout 120 "$LOGMETER" backfill -c "$conf" --stamp-now "$@" >"$out" 2>>"$T/agent.log"
}
count() { grep -cP "$PATTERN" "$1" || true; }
count_gz() { zcat "$1" | grep -cP "$PATTERN" || true; }
pending() {
	"$LOGMETER" status -c "$conf" --json 2>/dev/null |
		"$PYTHON3" -c 'import json, sys; print(json.load(sys.stdin)["events"]["pending"])'
}
nothing_pending() { [ "$(pending)" = 0 ]; }
no_duplicates() { [ -z "$(double_accepted_ids | uniq -d)" ] || fail "an identifier accepted twice"; }

# --- 1. at once, no agent ---------------------------------------------------------------------
sed -n '1,5000p' "$APACHE" | gzip >"$T/archive/big.log.gz"
sed -n '5001,5300p' "$APACHE" >"$T/archive/small.log"
want=$(($(count_gz "$T/archive/big.log.gz") + $(count "$T/archive/small.log")))
pids=
for i in 1 2 3; do
	bf "$T/big$i.out" --source apache "$T/archive/big.log.gz" &
	pids="$pids $!"
done
bf "$T/small.out" --source apache "$T/archive/small.log" &
pids="$pids $!"
for p in $pids; do
	wait "$p" || fail "a backfill exited $? (see agent.log)"
done
assert_eq "$want" "$(accepted_count)" "events accepted after three backfills of one archive and one of another file at once"
assert_eq 0 "$(pending)" "events left pending once every backfill ended"
no_duplicates
[ "$(cat "$T"/big?.out | grep -c 'events added from')" = 1 ] || fail "the archive was read more than once: $(cat "$T"/big?.out)"
grep -q 'every line of it was read already' "$T/big2.out" "$T/big3.out" "$T/big1.out" ||
	fail "no backfill saw the archive read already: $(cat "$T"/big?.out)"
if grep -q 'an agent runs on\|the running agent is reading' "$T/agent.log"; then
	fail "a backfill took another backfill for an agent: $(grep 'agent' "$T/agent.log")"
fi
note "at once without an agent: $want events, each once, nothing left pending"

# --- 2. beside the agent: one content under three paths at once --------------------------------
sed -n '6001,6100p' "$APACHE" >"$T/logs/access.log"
agent_start "$conf"
n0=$(accepted_count)
wait_until 30 accepted_at_least $((n0 + $(count "$T/logs/access.log"))) ||
	fail "the agent did not bill the live file"
sed -n '5301,5800p' "$APACHE" >"$T/archive/cc.log"
gzip -k "$T/archive/cc.log"
cp "$T/archive/cc.log.gz" "$T/archive/cc2.log.gz"
n1=$(accepted_count)
want=$(count "$T/archive/cc.log")
pids=
for f in cc.log.gz cc2.log.gz cc.log; do
	bf "$T/$f.out" --source apache "$T/archive/$f" &
	pids="$pids $!"
done
for p in $pids; do
	wait "$p" || fail "a backfill beside the agent exited $?"
done
wait_until 30 nothing_pending || fail "the agent did not send what backfill committed"
assert_eq $((n1 + want)) "$(accepted_count)" "one content under three paths beside the agent"
no_duplicates
note "beside the agent: one content under three paths, $want events, once"

# --- 3. copies shorter than what was read ------------------------------------------------------
lines_count() { sed -n "$1p" "$APACHE" | grep -cP "$PATTERN" || true; }
E=$((n1 + want)) # every event accepted so far, as counted here
sed -n '6101,6900p' "$APACHE" >>"$T/logs/access.log" # 900 lines
E=$((E + $(lines_count 6101,6900)))
wait_until 30 accepted_at_least "$E" || fail "the agent did not bill lines 101-900"
cp "$T/logs/access.log" "$T/archive/backup.log" # a backup, taken while billed up to line 900
head -n 3 "$T/logs/access.log" | gzip >"$T/archive/head3.log.gz" # 500 bytes: within the head
sed -n '6901,7000p' "$APACHE" >>"$T/logs/access.log"
E=$((E + $(lines_count 6901,7000)))
wait_until 30 accepted_at_least "$E" || fail "the agent did not bill lines 901-1000"
cp "$T/logs/access.log" "$T/logs/access.log.1" # copytruncate's copy, 1000 lines ...
sed -n '7001,7010p' "$APACHE" >>"$T/logs/access.log" # ... lines written before the truncation ...
E=$((E + $(lines_count 7001,7010)))
wait_until 30 accepted_at_least "$E" || fail "the agent did not bill lines 1001-1010"
: >"$T/logs/access.log" # ... and the truncation, after the agent read past the copy's end
gzip "$T/logs/access.log.1"
bf "$T/short.out" --dry-run --source apache "$T/archive/backup.log" "$T/logs/access.log.1.gz" \
	"$T/archive/head3.log.gz" || fail "dry run of the short copies exited $?"
for f in "$T/archive/backup.log" "$T/logs/access.log.1.gz" "$T/archive/head3.log.gz"; do
	grep -q "^$f: .*, all from the lines before offset [0-9]*, already read as $T/logs/access.log (identity [0-9a-f]*; [0-9]* of its events are in the spool): 0 new$" "$T/short.out" ||
		fail "dry run of $f: $(cat "$T/short.out")"
done
bf "$T/short.out" --source apache "$T/archive/backup.log" "$T/logs/access.log.1.gz" \
	"$T/archive/head3.log.gz" || fail "backfill of the short copies exited $?"
[ "$(grep -c ': 0 events added: every line of it was read already, as '"$T"'/logs/access.log ' "$T/short.out")" = 3 ] ||
	fail "short copies: $(cat "$T/short.out")"
wait_until 30 nothing_pending || fail "events pending"
assert_eq "$E" "$(accepted_count)" "events after backfilling a backup and a copytruncate copy already read"
note "a backup taken earlier, a copytruncate copy the agent read past, its first lines: nothing billed again"

# --- 4. concatenated archives ------------------------------------------------------------------
sed -n '8001,8200p' "$APACHE" | gzip >"$T/archive/x.log.gz"
sed -n '8201,8400p' "$APACHE" | gzip >"$T/archive/y.log.gz"
sed -n '8401,8500p' "$APACHE" | gzip >"$T/archive/z.log.gz"
bf "$T/xy.out" --source apache "$T/archive/x.log.gz" "$T/archive/y.log.gz" || fail "backfill x, y exited $?"
n4=$((E + $(count_gz "$T/archive/x.log.gz") + $(count_gz "$T/archive/y.log.gz")))
wait_until 30 accepted_at_least "$n4" || fail "x and y were not billed"
cat "$T/archive/x.log.gz" "$T/archive/y.log.gz" >"$T/archive/month.log.gz"
bf "$T/month.out" --dry-run --source apache "$T/archive/month.log.gz" || fail "dry run of month exited $?"
grep -q "^$T/archive/month.log.gz: gzip, [0-9]* bytes, 2 parts" "$T/month.out" || fail "month: $(cat "$T/month.out")"
[ "$(grep -c ': 0 new$' "$T/month.out")" = 2 ] || fail "month: $(cat "$T/month.out")"
bf "$T/month.out" --source apache "$T/archive/month.log.gz" || fail "backfill of month exited $?"
[ "$(grep -c 'every line of it was read already' "$T/month.out")" = 2 ] || fail "month: $(cat "$T/month.out")"
cat "$T/archive/y.log.gz" "$T/archive/z.log.gz" >"$T/archive/yz.log.gz"
bf "$T/yz.out" --source apache "$T/archive/yz.log.gz" || fail "backfill of yz exited $?"
n5=$((n4 + $(count_gz "$T/archive/z.log.gz")))
wait_until 30 nothing_pending || fail "events pending"
assert_eq "$n5" "$(accepted_count)" "a concatenation of two archives billed before, then of one and a new one"
bf "$T/z.out" --source apache "$T/archive/z.log.gz" || fail "backfill of z exited $?"
grep -q 'every line of it was read already, as '"$T/archive/yz.log.gz " "$T/z.out" || fail "z: $(cat "$T/z.out")"
wait_until 30 nothing_pending || fail "events pending"
assert_eq "$n5" "$(accepted_count)" "the new member backfilled again alone"
{ sed -n '8501,8600p' "$APACHE"; zcat "$T/archive/x.log.gz"; } >"$T/archive/wx.log"
bf "$T/wx.out" --dry-run --source apache "$T/archive/wx.log" || fail "dry run of wx exited $?"
grep -q "^$T/archive/wx.log: plain, [0-9]* bytes, 2 parts" "$T/wx.out" || fail "wx: $(cat "$T/wx.out")"
grep -q "already read as $T/archive/x.log.gz .*: 0 new$" "$T/wx.out" || fail "wx: $(cat "$T/wx.out")"
bf "$T/wx.out" --source apache "$T/archive/wx.log" || fail "backfill of wx exited $?"
n5=$((n5 + $(lines_count 8501,8600)))
wait_until 30 nothing_pending || fail "events pending"
assert_eq "$n5" "$(accepted_count)" "new lines followed by an archive billed before, in one plain file"
no_duplicates
note "concatenated archives: only the member never read is billed, once"

# --- 5. another source's archive -----------------------------------------------------------------
rc=0
bf "$T/ng.out" --dry-run --source nginx "$T/archive/x.log.gz" || rc=$?
assert_eq 1 "$rc" "dry run of an archive another source billed"
grep -q "^refused: $T/archive/x.log.gz: already read by \[source apache\]" "$T/ng.out" || fail "dry run: $(cat "$T/ng.out")"
rc=0
bf "$T/ng.out" --source nginx "$T/archive/x.log.gz" || rc=$?
assert_eq 1 "$rc" "backfill of an archive another source billed"
grep -q "x.log.gz: already read by \[source apache\] as $T/archive/x.log.gz" "$T/agent.log" || fail "no refusal in the log"
wait_until 30 nothing_pending || fail "events pending"
assert_eq "$n5" "$(accepted_count)" "events after the refusal"
agent_stop || fail "the agent exited $?"
no_duplicates
note "an archive another source billed: refused, nothing billed"

# --- 6. a copy that goes on past what was read of a file still there ---------------------------
sed -n '9001,9050p' "$APACHE" >"$T/logs/access.log"
agent_once "$conf" || fail "run --once exited $?"
E=$((n5 + $(lines_count 9001,9050)))
assert_eq "$E" "$(accepted_count)" "events of the live file"
{ cat "$T/logs/access.log"; sed -n '9051,9100p' "$APACHE"; } >"$T/archive/ahead.log"
rc=0
bf "$T/ahead.out" --source apache "$T/archive/ahead.log" || rc=$?
assert_eq 1 "$rc" "backfill of a copy ahead of a file still there"
grep -q "ahead.log: goes on past offset [0-9]*, where the file read as $T/logs/access.log (identity [0-9a-f]*) was read to, and that file is still there" "$T/agent.log" ||
	fail "no refusal for the copy ahead of its file"
sed -n '9051,9100p' "$APACHE" >>"$T/logs/access.log" # the file itself bills them
agent_once "$conf" || fail "run --once exited $?"
assert_eq $((E + $(lines_count 9051,9100))) "$(accepted_count)" "events once the file itself grew"
no_duplicates
note "a copy ahead of its file still there: refused; the file bills its own lines"

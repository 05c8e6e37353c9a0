#!/usr/bin/env bash
# Disk full under the spool, on small tmpfs file systems made for the test (root only).
#
# 1. The spool fills its own file system: the whole real Apache log is more than fits. Reading
#    pauses (a clear log line, `status` says so, the file's checkpoint stays below its end and
#    does not move), sending goes on meanwhile, delivered events are pruned early to make room,
#    reading resumes, and in the end every expected event was accepted exactly once.
# 2. Something else fills the file system (min_free_bytes = 0, so that only a failed commit can
#    tell): a commit fails with SQLITE_FULL, reading pauses the same way, the sender keeps its
#    unrecorded outcomes in memory (bounded), and once the other file is deleted everything
#    resumes and drains, again exactly once.
. "$(dirname "$0")/lib.sh"
lm_init disk_full
double_start

mkdir -p "$T/logs"
# The whole log: about 9,000 events. An event takes some 25 bytes of the spool (docs/spool.md),
# most of them its customer: the map gives every client IP a customer id of 96 characters
# (Stripe allows 100), so that an event takes about 130 bytes and the log's events about 1.2 MiB,
# more than the file systems below leave them.
cp "$LOGS/elastic_apache_logs.log" "$T/logs/access.log"
total=$(apache_bytes_count "$T/logs/access.log")
[ "$total" -gt 8000 ] || fail "test bug: only $total expected events"
awk '{print $1}' "$T/logs/access.log" | sort -u |
	awk '{printf "%s,cus_%092d\n", $1, NR}' > "$T/customers.csv"

# conf STATE_DIR MIN_FREE FILE: a configuration reading FILE with the spool in STATE_DIR.
conf() {
	write_config "$T/$1.conf"
	sed -i "s|^state_dir = .*|state_dir = $T/$1/state\nmin_free_bytes = $2\nbatch_lines = 200|" \
		"$T/$1.conf"
	config_apache_bytes "$T/$1.conf" "$3" "$T/customers.csv"
}

# The file's checkpoint ("offset N") in a status output.
offset_of() {
	sed -n 's/^ *offset \([0-9]*\) .*/\1/p' <<<"$1" | head -n 1
}

# Paused: status says so, and exits 1 (degraded: a health check fails).
status_paused() {
	local rc=0
	st=$("$LOGMETER" status -c "$1" 2>&1) || rc=$?
	[ "$rc" = 1 ] && grep -q '^ingest: paused (disk full since' <<<"$st"
}

status_reading() {
	st=$("$LOGMETER" status -c "$1" 2>&1) && grep -q '^ingest: reading' <<<"$st"
}

# check_exactly_once CONF FILE: the double accepted exactly the expected identifiers of FILE
# (accepted.tsv holds only this phase's events) and nothing is pending.
check_exactly_once() {
	assert_accepted_once "$1" "$2"
	st=$("$LOGMETER" status -c "$1")
	grep -q "^events: pending 0, " <<<"$st" || fail "events still pending: $st"
}

# ---- 1. the spool fills its own file system ----------------------------------------------------
# 6 MiB hold the WAL (4.2 MiB once full), min_free_bytes and less than 1 MiB of events: the
# log's events do not fit. 1,000 requests per second make the pause last a few seconds.
lm_mount_tmpfs "$T/one" 6m
conf one 1M "$T/logs/access.log"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 1000/' "$T/one.conf"
agent_start "$T/one.conf"
wait_until 30 status_paused "$T/one.conf" || fail "reading never paused: $st"
size=$(stat -c %s "$T/logs/access.log")
off1=$(offset_of "$st")
since1=$(grep '^ingest:' <<<"$st")
acc1=$(accepted_count)
[ "$off1" -lt "$size" ] || fail "paused, but the checkpoint $off1 is at the end ($size): $st"
grep -q "spool disk full ($T/one/state/spool.db): reading paused; nothing is lost, resuming when space is free" \
	"$T/agent.log" || fail "no clear log line about the pause"
# Until more is accepted or the pause ends (not a fixed time: a loaded machine may send nothing
# for longer than any sleep). Counted before the status, so that a status still showing the same
# pause shows that what was accepted meanwhile was sent while reading was paused.
sent_or_resumed() {
	acc2=$(accepted_count)
	st=$("$LOGMETER" status -c "$T/one.conf")
	[ "$acc2" -gt "$acc1" ] || [ "$(grep '^ingest:' <<<"$st")" != "$since1" ]
}
wait_until 120 sent_or_resumed || fail "sending stopped while reading was paused ($acc1 -> $acc2): $st"
if [ "$(grep '^ingest:' <<<"$st")" = "$since1" ]; then
	# Still the same pause: nothing was read, sending went on.
	assert_eq "$off1" "$(offset_of "$st")" "checkpoint while paused"
	[ "$acc2" -gt "$acc1" ] || fail "sending stopped while reading was paused ($acc1 -> $acc2)"
else
	note "the pause ended before more was accepted; not sampled twice"
fi
wait_until 180 accepted_at_least "$total" || fail "stuck at $(accepted_count) of $total accepted"
wait_until 60 status_reading "$T/one.conf" || fail "reading did not resume: $st"
grep -q "has room again .*: reading resumed" "$T/agent.log" || fail "no log line about the resume"
grep -q "pruned [0-9]* delivered events before their delivered_retention" "$T/agent.log" ||
	fail "no delivered events were pruned to make room"
assert_eq "$size" "$(offset_of "$st")" "checkpoint at the end"
agent_stop || fail "agent exited $?"
check_exactly_once "$T/one.conf" "$T/logs/access.log"
pauses=$(grep -c "spool disk full" "$T/agent.log" || true)
note "phase 1 ($SECONDS s): $total events exactly once; $pauses pause lines logged"

# ---- 2. something else fills the file system ---------------------------------------------------
# A fresh spool on 8 MiB, of which another file takes 6.5 MiB: the 1.5 MiB left cannot hold the
# WAL frames of the log's events (1.2 MiB of batches, and the pages each commit rewrites), so an
# ingest commit must fail. With min_free_bytes = 0 only the failed commit tells.
lm_mount_tmpfs "$T/two" 8m
conf two 0 "$T/logs/access.log"
mkdir -p "$T/two/state"
dd if=/dev/zero of="$T/two/other" bs=1k count=6656 2>/dev/null
mv "$T/accepted.tsv" "$T/accepted.one.tsv"
double_restart # empty record: a new spool means new identifiers
: > "$T/agent.log"
agent_start "$T/two.conf"
wait_until 30 status_paused "$T/two.conf" || fail "reading never paused: $st"
grep -q "^ingest: paused (disk full since .*SQLITE_FULL" <<<"$st" || fail "not paused by SQLITE_FULL: $st"
grep -q "spool disk full ($T/two/state/spool.db): reading paused; nothing is lost" "$T/agent.log" ||
	fail "no clear log line about the pause"
off2=$(offset_of "$st")
[ "$off2" -lt "$size" ] || fail "paused, but the checkpoint $off2 is at the end ($size)"
# Outcomes the full spool cannot record stay in memory, at most one queue's worth (2,000) plus
# the requests in flight: the sender then waits.
sleep 2
st=$("$LOGMETER" status -c "$T/two.conf")
acc=$(accepted_count)
recorded=$(sed -n 's/^events: pending [0-9]*, delivered \([0-9]*\),.*/\1/p' <<<"$st")
# Delivered events pruned to make room leave the spool's count, not Stripe's.
pruned=$(sed -n 's/.*pruned \([0-9]*\) delivered events before their delivered_retention.*/\1/p' \
	"$T/agent.log" | awk '{ n += $1 } END { print n + 0 }')
held=$((acc - recorded - pruned))
[ "$acc" -lt "$total" ] || fail "everything was accepted although the disk was full"
[ "$held" -le 2008 ] || fail "$held outcomes kept in memory while the disk was full (max 2,000 + 8 in flight)"
# The sender says so once it has an outcome to record: waited for, as the 2 s above bound nothing.
wait_until 60 grep -q "cannot record [0-9]* delivery outcomes in the spool: .*SQLITE_FULL" "$T/agent.log" ||
	fail "no log line about the outcomes that could not be recorded"
assert_eq "$off2" "$(offset_of "$st")" "checkpoint while paused"
rm "$T/two/other" # the operator frees space
wait_until 180 accepted_at_least "$total" || fail "stuck at $(accepted_count) of $total accepted"
wait_until 60 status_reading "$T/two.conf" || fail "reading did not resume: $st"
agent_stop || fail "agent exited $?"
check_exactly_once "$T/two.conf" "$T/logs/access.log"
assert_eq 0 "$(double_stat concurrency_violations)" "requests in flight at once for one customer and meter"
echo "t_disk_full: $total events exactly once with the spool filling its file system ($pauses pause lines), and again after SQLITE_FULL (paused at offset $off2 of $size, $held outcomes held)"

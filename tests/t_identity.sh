#!/usr/bin/env bash
# File identity and checkpoint validation, each case in its own source of one agent:
#   trunc   truncated and grown past the old offset before logmeter noticed (agent frozen)
#   trunc2  the same while logmeter is stopped: the checkpoint is checked by content, not size
#   reuse   a file deleted and a new one created with the same inode (ext4 reuses them at once),
#           starting with the same banner line, while the agent runs
#   reuse2  the same while logmeter is stopped
#   hdr     two files in a row (rename and create) whose first line is the same CSV-like header,
#           the new one first seen holding only that header
# Every rid is accepted once, under the uid of the file incarnation that held it.
. "$(dirname "$0")/lib.sh"
lm_init identity
. "$top_srcdir/tests/tail_lib.sh"
double_start

# Inode reuse needs a file system of our own: on a busy one, another process may take the freed
# inode first. ext4 gives the freed inode to the next file created in the directory; tmpfs no
# longer reuses inode numbers (Linux 6.x numbers them in sequence). A small ext4 image, loop
# mounted, and unmounted by the trap; without loop devices, the test's own directory is tried.
FS=$T
if command -v mkfs.ext4 >/dev/null 2>&1 && truncate -s 16M "$T/fs.img" &&
	mkfs.ext4 -q -F "$T/fs.img" >/dev/null 2>&1 && mkdir "$T/fs" &&
	mount -o loop "$T/fs.img" "$T/fs" 2>/dev/null; then
	FS=$T/fs
	trap 'rc=$?; _lm_kill "$AGENT_PID"; AGENT_PID=; umount "$T/fs" 2>/dev/null || umount -l "$T/fs"
		(exit $rc); lm_cleanup' EXIT
else
	note "no loop-mounted ext4: trying inode reuse in $T"
fi

BANNER='# access log: remote_addr - remote_user [time_local] "request" status bytes "referer" "agent" rid'
mkdir -p "$T/trunc" "$T/trunc2" "$FS/reuse" "$FS/reuse2" "$T/hdr" "$T/snap"
write_config "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 2s/' "$T/logmeter.conf"
{
	for s in trunc trunc2; do rule_conf "$s" "$T/$s/app.log"; done
	for s in reuse reuse2; do rule_conf "$s" "$FS/$s/app.log"; done
	rule_conf hdr "$T/hdr/app.log*"
} >> "$T/logmeter.conf"

rid=1
total=0
# put FILE COUNT: appends the next COUNT rids to FILE.
put() {
	lines "$rid" "$2" >> "$1"
	rid=$(($rid + $2))
	total=$((total + $2))
}
# snap FILE NAME: keeps a copy of the file as it is now (an incarnation about to be destroyed).
snap() {
	cp "$1" "$T/snap/$2"
	echo "$T/snap/$2"
}
delivered() {
	accepted_at_least "$total"
}
# with_ino DIR INO: a new empty file in DIR (named .fill.N, which no glob matches) with inode INO,
# freed just before. ext4 hands out the lowest free inode of the directory's group, so files are
# created until it comes; the others are removed. Prints its path.
with_ino() {
	local n f
	for n in $(seq 3000); do
		f=$1/.fill.$n
		: > "$f"
		if [ "$(stat -c %i "$f")" = "$2" ]; then
			find "$1" -maxdepth 1 -name '.fill.*' ! -name ".fill.$n" -delete
			echo "$f"
			return 0
		fi
	done
	find "$1" -maxdepth 1 -name '.fill.*' -delete
	return 1
}
# uids SOURCE: the uids of the source's records, oldest first.
uids() {
	spool_sql "$T/logmeter.conf" "SELECT uid FROM files WHERE source = ? ORDER BY id" "$1"
}
: > "$T/expected_ids"
: > "$T/expected_rids"
# expect SOURCE N FILE: FILE holds what the source's Nth record (1-based) read.
expect() {
	local uid
	uid=$(uids "$1" | sed -n "${2}p")
	[ -n "$uid" ] || fail "$1: no record $2: $(uids "$1" | tr '\n' ' ')"
	ids_for "$1" "$uid" "$3" >> "$T/expected_ids"
	rids_of "$3" >> "$T/expected_rids"
}

for s in trunc trunc2; do put "$T/$s/app.log" 30; done
for s in reuse reuse2; do put "$FS/$s/app.log" 30; done
printf '%s\n' "$BANNER" > "$T/hdr/app.log"
put "$T/hdr/app.log" 20

agent_start "$T/logmeter.conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $total"

note "truncated and grown past the old offset before the agent noticed"
trunc1=$(snap "$T/trunc/app.log" trunc1)
kill -STOP "$AGENT_PID"
# kill returns before every thread has stopped: wait, so that the agent first sees the file
# truncated and grown past its checkpoint, as this case says.
wait_until 30 agent_frozen || fail "the agent did not stop"
: > "$T/trunc/app.log"
put "$T/trunc/app.log" 60
[ "$(stat -c %s "$T/trunc/app.log")" -gt "$(stat -c %s "$trunc1")" ] || fail "test bug: not grown past"
kill -CONT "$AGENT_PID"
wait_until 60 delivered || fail "after truncate and grow: $(accepted_count) of $total"
grep -q "trunc/app.log: checkpoint at [0-9]* no longer matches" "$T/agent.log" || fail "no reset logged"

note "a file deleted and its inode reused, first line identical, while the agent runs"
ino=$(stat -c %i "$FS/reuse/app.log")
reuse1=$(snap "$FS/reuse/app.log" reuse1)
rm "$FS/reuse/app.log"
# the agent must let go of it first (a file held open keeps its inode)
wait_until 60 grep -q 'reuse/app.log: deleted and read to its end' "$T/agent.log" ||
	fail "deleted file not released"
f=$(with_ino "$FS/reuse" "$ino") || fail "the file system of $FS reused no inode: cannot test inode reuse"
printf '%s\n' "$BANNER" > "$f"
put "$f" 10
mv "$f" "$FS/reuse/app.log"
put "$FS/reuse/app.log" 10
wait_until 60 delivered || fail "after inode reuse: $(accepted_count) of $total"

note "rename and create, the new file first holding only the same header"
mv "$T/hdr/app.log" "$T/hdr/app.log.1"
printf '%s\n' "$BANNER" > "$T/hdr/app.log"
wait_until 60 eval "spool_sql '$T/logmeter.conf' \"SELECT count(*) FROM files WHERE source = 'hdr'\" | grep -qx 2" ||
	fail "the new header-only file was not taken as a new file"
put "$T/hdr/app.log" 20
wait_until 60 delivered || fail "after the header-only file grew: $(accepted_count) of $total"

note "truncated and grown past the old offset, and an inode reused, while logmeter is stopped"
agent_stop || fail "agent did not stop cleanly"
trunc2_1=$(snap "$T/trunc2/app.log" trunc2_1)
: > "$T/trunc2/app.log"
put "$T/trunc2/app.log" 50
[ "$(stat -c %s "$T/trunc2/app.log")" -gt "$(stat -c %s "$trunc2_1")" ] || fail "test bug: not grown past"
reuse2_1=$(snap "$FS/reuse2/app.log" reuse2_1)
ino=$(stat -c %i "$FS/reuse2/app.log")
rm "$FS/reuse2/app.log"
f=$(with_ino "$FS/reuse2" "$ino") || fail "the file system of $FS reused no inode: cannot test inode reuse"
printf '%s\n' "$BANNER" > "$f"
put "$f" 40
mv "$f" "$FS/reuse2/app.log"
agent_start "$T/logmeter.conf"
wait_until 60 delivered || fail "after the restart: $(accepted_count) of $total"
agent_stop || fail "agent did not stop cleanly"

expect trunc 1 "$trunc1"
expect trunc 2 "$T/trunc/app.log"
expect trunc2 1 "$trunc2_1"
expect trunc2 2 "$T/trunc2/app.log"
expect reuse 1 "$reuse1"
expect reuse 2 "$FS/reuse/app.log"
expect reuse2 1 "$reuse2_1"
expect reuse2 2 "$FS/reuse2/app.log"
expect hdr 1 "$T/hdr/app.log.1"
expect hdr 2 "$T/hdr/app.log"
assert_eq "$total" "$(wc -l < "$T/expected_rids")" "rids written"
check_accepted

# Counters: resets are the checkpoints found stale (truncations, the replacement while stopped);
# a deleted file's reused inode is a new file, not a reset. The banners are lines no rule matches.
sum() { status_sum "$T/logmeter.conf" "$1" "\$15 == \"$2\""; }
assert_eq 1 "$(sum 14 trunc)" "trunc: resets"
assert_eq 1 "$(sum 14 trunc2)" "trunc2: resets"
assert_eq 0 "$(sum 14 reuse)" "reuse: resets"
assert_eq 1 "$(sum 14 reuse2)" "reuse2: resets"
assert_eq 0 "$(sum 14 hdr)" "hdr: resets"
assert_eq 1 "$(sum 9 reuse)" "reuse: banner lines unmatched"
assert_eq 2 "$(sum 9 hdr)" "hdr: banner lines unmatched"
assert_eq "$total" "$(status_sum "$T/logmeter.conf" 8)" "matched lines in all"
# States: a deleted file is gone, a replaced or truncated record is retired as gone, the live
# files are reading.
for f in trunc/app.log trunc2/app.log; do
	assert_eq reading "$(status_state "$T/logmeter.conf" "${f%%/*}" "$T/$f")" "$f: state"
done
for f in reuse/app.log reuse2/app.log; do
	assert_eq reading "$(status_state "$T/logmeter.conf" "${f%%/*}" "$FS/$f")" "$f: state"
done
assert_eq "gone" "$(status_tsv "$T/logmeter.conf" | awk -F'\t' -v u="$(uids reuse | head -n1)" '$2 == u { print $3 }')" "reuse: the deleted file's state"
echo "t_identity: $total rids through truncations, inode reuse (running and stopped) and identical first lines, each accepted once"

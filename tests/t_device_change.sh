#!/usr/bin/env bash
# The same file system back under another device number while logmeter is stopped (a reboot that
# numbers disks in another order, LVM, a loop device, a container's bind mount): every file keeps
# its record (same path, inode and content) and is read on from its checkpoint, with a warning;
# nothing is billed twice, also for a file rotated meanwhile. A file whose content is not the record's is still a new file.
#
# With root and loop devices the file system really comes back under another number: an ext4
# image attached to two loop devices, mounted from the first, then (unmounted) from the second:
# same inodes, another st_dev. Without them the spool's recorded device numbers are changed while
# logmeter is stopped, which is what the agent sees after such a remount: a record whose device is
# not the file's.
. "$(dirname "$0")/lib.sh"
lm_init device_change
. "$top_srcdir/tests/tail_lib.sh"
double_start

REAL=0
FS=$T/fs
LOOPS=
mkdir -p "$FS"
if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null 2>&1 && command -v losetup >/dev/null 2>&1 &&
	truncate -s 16M "$T/fs.img" && mkfs.ext4 -q -F "$T/fs.img" >/dev/null 2>&1 &&
	L1=$(losetup -f --show "$T/fs.img" 2>/dev/null); then
	LOOPS=$L1
	trap 'rc=$?; _lm_kill "$AGENT_PID"; AGENT_PID=; umount "$FS" 2>/dev/null || umount -l "$FS" 2>/dev/null
		for l in $LOOPS; do losetup -d "$l" 2>/dev/null; done; (exit $rc); lm_cleanup' EXIT
	if mount "$L1" "$FS" 2>/dev/null; then
		REAL=1
	fi
fi
[ "$REAL" = 1 ] || note "no loop-mounted ext4: the recorded device numbers are changed instead"

mkdir -p "$FS/logs"
write_config "$T/logmeter.conf"
rule_conf app "$FS/logs/*.log*" >> "$T/logmeter.conf"

rid=1
total=0
put() {
	lines "$rid" "$2" >> "$1"
	rid=$((rid + $2))
	total=$((total + $2))
}
put "$FS/logs/app.log" 40
put "$FS/logs/web.log" 25
printf 'first line of a file that is not the record'"'"'s\n' > "$FS/logs/other.log"
put "$FS/logs/other.log" 5
agent_once "$T/logmeter.conf" || fail "first run --once failed"
assert_eq "$total" "$(accepted_count)" "accepted after the first run"
dev1=$(stat -c %d "$FS/logs/app.log")

if [ "$REAL" = 1 ]; then
	umount "$FS" || fail "cannot unmount $FS"
	L2=$(losetup -f --show "$T/fs.img") || fail "no second loop device"
	LOOPS="$LOOPS $L2"
	mount "$L2" "$FS" || fail "cannot mount $L2"
else
	state=$(sed -n 's/^[[:space:]]*state_dir[[:space:]]*=[[:space:]]*//p' "$T/logmeter.conf" | tail -n 1)
	"$PYTHON3" -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/spool.db", timeout=10)
db.execute("UPDATE files SET dev = dev + 4096")
db.commit()' "$state" || fail "cannot change the recorded devices"
fi
dev2=$(stat -c %d "$FS/logs/app.log")
[ "$REAL" = 0 ] || [ "$dev1" != "$dev2" ] || fail "test bug: the file system came back with the same device $dev1"
old_app=$(spool_sql "$T/logmeter.conf" "SELECT uid FROM files WHERE path = ?" "$FS/logs/app.log")
old_web=$(spool_sql "$T/logmeter.conf" "SELECT uid FROM files WHERE path = ?" "$FS/logs/web.log")

# other.log is rewritten in place (same inode) with other content: not the record's file.
cp "$FS/logs/other.log" "$T/other.1"
ids_for app "$(spool_sql "$T/logmeter.conf" "SELECT uid FROM files WHERE path = ?" "$FS/logs/other.log")" "$T/other.1" >> "$T/expected_ids"
rids_of "$T/other.1" >> "$T/expected_rids"
lines "$rid" 7 > "$T/other.new"
cat "$T/other.new" > "$FS/logs/other.log"
rid=$((rid + 7))
total=$((total + 7))
# app.log rotated while logmeter is stopped: found by its inode in its directory.
put "$FS/logs/app.log" 5
mv "$FS/logs/app.log" "$FS/logs/app.log.1"
put "$FS/logs/app.log" 10
put "$FS/logs/web.log" 3

agent_once "$T/logmeter.conf" || fail "second run --once failed"
assert_eq "$total" "$(accepted_count)" "accepted after the remount"
assert_eq 2 "$(grep -c 'mounted again under another device number' "$T/agent.log")" \
	"warnings of a changed device (app.log.1 and web.log)"
assert_eq "$old_app" "$(uid_of "$T/logmeter.conf" app "$FS/logs/app.log.1")" "app.log's record kept, renamed"
assert_eq "$old_web" "$(uid_of "$T/logmeter.conf" app "$FS/logs/web.log")" "web.log's record kept"
assert_eq 2 "$(spool_sql "$T/logmeter.conf" "SELECT count(*) FROM files WHERE path = ?" "$FS/logs/other.log")" \
	"other.log, rewritten: a new record"
expect_file "$T/logmeter.conf" app "$FS/logs/app.log.1" "$FS/logs/app.log" "$FS/logs/web.log" "$FS/logs/other.log"
check_accepted
echo "t_device_change: $total rids across a file system back under another device number (real remount: $REAL), each accepted once"

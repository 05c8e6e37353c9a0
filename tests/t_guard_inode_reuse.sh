#!/usr/bin/env bash
# The guard's protected files after one of them is replaced under its name while the agent runs
# (docs/security.md), before any reload: an editor or `mv` writes the configuration or the key as
# a new file and the old one's inode is freed.
#   1. A new log file given the freed inode (ext4 hands a freed inode to the next file made near
#      it) is a log like any other: read and billed, not refused as "a configuration file" until
#      the next reload (while the refused file is rotated out of the glob and lost).
#   2. What the key file's name leads to now is protected at once: a hard link to the new key in
#      the log directory is refused, not read as a log.
. "$(dirname "$0")/lib.sh"
lm_init guard_inode_reuse
double_start

CONF=$T/logmeter.conf
L=$T/logs
APACHE=$LOGS/elastic_apache_logs.log
mkdir -p "$L"
write_config "$CONF"
config_apache_bytes "$CONF" "$L/access*.log"
# own: the files of logmeter's own that `status` says were refused.
own() {
	"$LOGMETER" status -c "$CONF" 2>/dev/null |
		sed -n 's/^refused: [0-9]* symbolic links not followed, \([0-9]*\) files of .*/\1/p'
}
# done_or_refused N M: the double accepted N events, or M files of logmeter's own were refused.
done_or_refused() {
	accepted_at_least "$1" || [ "$(own)" -ge "$2" ]
}

sed -n 1,60p "$APACHE" >"$L/access-1.log"
n1=$(apache_bytes_count "$L/access-1.log")
agent_start "$CONF"
wait_until 60 accepted_at_least "$n1" || fail "access-1.log: $(accepted_count) of $n1 accepted"
assert_eq 0 "$(own)" "refused files before anything was replaced"

note "1. the configuration replaced by a new file, not reloaded; a new log takes its old inode"
old=$(stat -c %i "$CONF")
cp "$CONF" "$T/logmeter.conf.new"
mv "$T/logmeter.conf.new" "$CONF"
# Files made beside the logs (a name the glob does not match) until one has the freed inode.
found=
for i in $(seq 1000); do
	: >"$L/new.$i"
	if [ "$(stat -c %i "$L/new.$i")" = "$old" ]; then
		found=$L/new.$i
		break
	fi
done
rm -f "$L"/new.[0-9]*[0-9]
[ -n "$found" ] || {
	agent_stop || true
	skip "this file system ($(stat -f -c %T "$L")) gave no new file the freed inode $old"
}
sed -n 61,140p "$APACHE" >"$found"
mv "$found" "$L/access-2.log"
n2=$(apache_bytes_count "$L/access-2.log")
wait_until 60 done_or_refused $((n1 + n2)) 1 ||
	fail "access-2.log: $(accepted_count) of $((n1 + n2)) accepted"
assert_eq 0 "$(own)" "files refused as logmeter's own (the log with the freed inode)"
! grep -qF "access-2.log: it is" "$T/agent.log" || fail "the new log was refused as a file of its own"
wait_until 60 accepted_at_least $((n1 + n2)) || fail "$(accepted_count) of $((n1 + n2)) accepted"

note "2. the key replaced by a new file, not reloaded; a hard link to the new one in the logs"
cp "$T/stripe.key" "$T/stripe.key.new"
mv "$T/stripe.key.new" "$T/stripe.key"
ln "$T/stripe.key" "$L/access-key.log"
sed -n 141,200p "$APACHE" >>"$L/access-2.log"
n3=$(apache_bytes_count <(sed -n 141,200p "$APACHE"))
# The rescan that follows the lines finds the link too: both done when the lines are billed and
# the link refused.
wait_until 60 done_or_refused 1000000 1 || fail "the hard link to the new key was not refused"
grep -qF "$L/access-key.log: it is the API key file" "$T/agent.log" ||
	fail "the refusal does not name the key file"
wait_until 60 accepted_at_least $((n1 + n2 + n3)) ||
	fail "$(accepted_count) of $((n1 + n2 + n3)) accepted"
KEY=$(cat "$T/stripe.key")
for f in "$T/accepted.tsv" "$T/agent.log"; do
	! grep -qF "$KEY" "$f" || fail "the API key is in $(basename "$f")"
done
agent_stop || fail "the agent exited with an error"

# Every line billed once: the identifiers awk and tests/identifiers.py expect for both logs.
{
	apache_bytes_ids "$CONF" "$L/access-1.log"
	apache_bytes_ids "$CONF" "$L/access-2.log"
} | sort >"$T/expected_ids"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/ids.diff" ||
	fail "accepted identifiers differ: $(head -n 20 "$T/ids.diff")"
note "ok: $((n1 + n2 + n3)) events, each once; the new log read, the new key refused"

#!/usr/bin/env bash
# The life of the files under a glob, with the agent running as user nobody (so that file
# permissions apply although the tests run as root) and the periodic rescan a minute away (so
# that what is found is found through inotify):
#   later   files that appear after the start under the glob
#   nodir   a glob whose directory does not exist at start, created later (two levels)
#   del     a file deleted while it is being read: read to its end, then closed
#   later   a file logmeter may not read: a clear error, the other files unaffected, read once
#           it is made readable
# Every rid is accepted once; no deleted file stays open.
. "$(dirname "$0")/lib.sh"
lm_init glob_lifecycle
. "$top_srcdir/tests/tail_lib.sh"
id nobody >/dev/null 2>&1 || skip "no user nobody"
command -v setpriv >/dev/null 2>&1 || skip "setpriv not found"
double_start

mkdir -p "$T/g" "$T/nodir" "$T/del"
write_config "$T/logmeter.conf"
sed -i 's/^rescan_interval = .*/rescan_interval = 60s/; s/^\[agent\]$/[agent]\nbatch_lines = 50/' "$T/logmeter.conf"
{
	rule_conf later "$T/g/*.log"
	rule_conf nodir "$T/nodir/sub/deeper/*.log"
	rule_conf del "$T/del/*.log"
} >> "$T/logmeter.conf"

# The agent as nobody: its binary, state and logs where nobody can reach them.
cp "$LOGMETER" "$T/logmeter"
cat > "$T/logmeter-nobody" <<EOF
#!/bin/sh
exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$T/logmeter" "\$@"
EOF
chmod 755 "$T" "$T/logmeter-nobody"
chown -R nobody:nogroup "$T/state" "$T/stripe.key" "$T/g" "$T/nodir" "$T/del"
chmod 644 "$T/logmeter.conf"
ROOT_LOGMETER=$LOGMETER

rid=1
written=0
put() { # put FILE COUNT
	lines "$rid" "$2" >> "$1"
	rid=$((rid + $2))
	written=$((written + $2))
}
delivered() {
	accepted_at_least "$written"
}

put "$T/g/a.log" 10
put "$T/g/secret.log" 10
chmod 000 "$T/g/secret.log"
secret=10
written=$((written - secret)) # not deliverable until readable

LOGMETER=$T/logmeter-nobody agent_start "$T/logmeter.conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
wait_until 60 grep -q "g/secret.log: cannot open: Permission denied (retried at every rescan)" "$T/agent.log" ||
	fail "no clear error for the unreadable file"
[ "$(ps -o user= -p "$AGENT_PID")" = nobody ] || fail "the agent does not run as nobody"

note "files that appear later"
put "$T/g/b.log" 10
put "$T/g/c.log" 5
put "$T/g/a.log" 5
wait_until 60 delivered || fail "new files not delivered: $(accepted_count) of $written"

note "a directory that does not exist yet"
mkdir -p "$T/nodir/sub"
sleep 0.2
mkdir "$T/nodir/sub/deeper"
put "$T/nodir/sub/deeper/x.log" 10
wait_until 60 delivered || fail "files in the new directory not delivered: $(accepted_count) of $written"
put "$T/nodir/sub/deeper/y.log" 10
put "$T/nodir/sub/deeper/x.log" 10
wait_until 60 delivered || fail "more files in the new directory not delivered: $(accepted_count) of $written"

note "the unreadable file made readable"
grep -c "g/secret.log: cannot open" "$T/agent.log" | grep -qx 1 || fail "the error was logged more than once"
chmod 644 "$T/g/secret.log"
written=$((written + secret))
wait_until 60 delivered || fail "the file made readable not delivered: $(accepted_count) of $written"

note "a file deleted while it is being read"
lines "$rid" 2000 > "$T/big.tmp"
cp "$T/big.tmp" "$T/big.copy"
chown nobody "$T/big.tmp"
mv "$T/big.tmp" "$T/del/big.log"
rid=$((rid + 2000))
written=$((written + 2000))
big_size=$(stat -c %s "$T/del/big.log")
wait_until 60 eval "[ \"\$(status_sum '$T/logmeter.conf' 4 '\$15 == \"del\"')\" -gt 0 ]" ||
	fail "the big file was not read"
at=$(status_sum "$T/logmeter.conf" 4 '$15 == "del"')
rm "$T/del/big.log"
note "deleted at checkpoint $at of $big_size ($([ "$at" -lt "$big_size" ] && echo "while being read" || echo "after it was read"))"
wait_until 60 delivered || fail "the deleted file was not read to its end: $(accepted_count) of $written"
wait_until 60 grep -q "del/big.log: deleted and read to its end: released (gone)" "$T/agent.log" ||
	fail "the deleted file was not released"
wait_until 60 eval '! open_fds "$AGENT_PID" | grep -q "(deleted)"' ||
	fail "a deleted file is held open: $(open_fds "$AGENT_PID" | grep deleted)"
agent_stop || fail "agent did not stop cleanly"
LOGMETER=$ROOT_LOGMETER

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$T"/g/*.log; do expect_file "$T/logmeter.conf" later "$f"; done
for f in "$T"/nodir/sub/deeper/*.log; do expect_file "$T/logmeter.conf" nodir "$f"; done
uid=$(spool_sql "$T/logmeter.conf" "SELECT uid FROM files WHERE source = 'del'")
ids_for del "$uid" "$T/big.copy" >> "$T/expected_ids"
rids_of "$T/big.copy" >> "$T/expected_rids"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids written"
check_accepted
assert_eq "$written" "$(status_sum "$T/logmeter.conf" 8)" "matched lines"
assert_eq gone "$(status_tsv "$T/logmeter.conf" | awk -F'\t' '$15 == "del" { print $3 }')" "state of the deleted file"
echo "t_glob_lifecycle: $written rids from later files, a later directory, an unreadable file and a file deleted while read, each accepted once"

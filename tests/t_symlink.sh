#!/usr/bin/env bash
# Symlinked log paths whose target changes, the way Kubernetes lays out container logs: the glob
# matches links in containers/, each pointing to a file in a pod directory nobody else watches.
# The source says follow_symlinks = yes (without it such links are refused: t_symlink_guard.sh);
# the configuration lives in etc/, a directory no followed link may lead into.
#   1. the target is written (seen through the watch on the link's target)
#   2. the container restarts: a new target 1.log, the link replaced atomically; the old
#      container still writes its last lines to 0.log after the switch
#   3. the kubelet rotates the target: 1.log renamed, a new 1.log created, the writer reopens
#      after a few more lines
#   4. the old container's log is deleted
# Every rid is accepted once; no deleted file stays open.
. "$(dirname "$0")/lib.sh"
lm_init symlink
. "$top_srcdir/tests/tail_lib.sh"
double_start

P=$T/pods/ns_app_1234/app
CONF=$T/etc/logmeter.conf
mkdir -p "$P" "$T/containers" "$T/etc"
write_config "$CONF"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 2s/' "$CONF"
rule_conf k8s "$T/containers/*.log" "follow_symlinks = yes" >> "$CONF"

rid=1
written=0
put() { # put FD COUNT
	lines "$rid" "$2" >&"$1"
	rid=$((rid + $2))
	written=$((written + $2))
}
delivered() {
	accepted_at_least "$written"
}
# relink TARGET: points containers/app.log at TARGET atomically (a new link renamed over it).
relink() {
	ln -s "$1" "$T/containers/.app.log.tmp"
	mv -T "$T/containers/.app.log.tmp" "$T/containers/app.log"
}

exec 7>>"$P/0.log"
put 7 20
relink "$P/0.log"
agent_start "$CONF" 7>&- 8>&- # not the writer's descriptors
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
put 7 10
wait_until 60 delivered || fail "appended lines not delivered: $(accepted_count) of $written"

note "the container restarts: a new target"
exec 8>>"$P/1.log"
put 8 5
put 7 5
relink "$P/1.log"
put 7 5 # the old container's last lines, after the switch
exec 7>&-
put 8 10
wait_until 60 delivered || fail "after the target changed: $(accepted_count) of $written"
wait_until 60 eval "[ \"\$(status_state '$CONF' k8s '$P/0.log')\" = drained ]" ||
	fail "the old target was not released as drained: $(status_state "$CONF" k8s "$P/0.log")"

note "the target is rotated by the kubelet"
put 8 10
mv "$P/1.log" "$P/1.log.20260101-000000"
put 8 5 # still to the renamed file
: > "$P/1.log"
exec 8>>"$P/1.log"
put 8 10
wait_until 60 delivered || fail "after the target was rotated: $(accepted_count) of $written"

note "the old container's log is deleted"
cp "$P/0.log" "$T/old0.log"
old0_uid=$(uid_of "$CONF" k8s "$P/0.log")
rm "$P/0.log"
put 8 5
wait_until 60 delivered || fail "after the delete: $(accepted_count) of $written"
wait_until 60 eval '! open_fds "$AGENT_PID" | grep -q "(deleted)"' ||
	fail "a deleted file is held open: $(open_fds "$AGENT_PID" | grep deleted)"
agent_stop || fail "agent did not stop cleanly"
exec 8>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
ids_for k8s "$old0_uid" "$T/old0.log" >> "$T/expected_ids"
rids_of "$T/old0.log" >> "$T/expected_rids"
expect_file "$CONF" k8s "$P/1.log.20260101-000000"
expect_file "$CONF" k8s "$P/1.log"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq 0 "$(status_sum "$CONF" 14)" "checkpoint resets"
assert_eq "$written" "$(status_sum "$CONF" 8)" "matched lines"
assert_eq 3 "$(status_tsv "$CONF" | wc -l)" "file records"
echo "t_symlink: $written rids through a target change, a target rotation and a delete, each accepted once"

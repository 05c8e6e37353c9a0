#!/usr/bin/env bash
# `run --once` from cron with logrotate's `create` and `rotate 1`, the glob matching the live name
# only (app.log): a rotation renames app.log to app.log.1, which a run reads to its end, and the
# next rotation deletes it. A run sees a file rotated away for one scan only, so it never saw it
# unchanged for rotate_wait and never released it: its record stayed "reading", and the run after
# the rotation that deleted it reported it gone while logmeter was stopped, counted lines lost
# and exited 1 (`status` degraded), though every line was billed. A file whose ctime is at least
# rotate_wait old is released as the agent releases it after watching it that long, and its
# deletion loses nothing. Every rid written is accepted once (values checked against seq).
. "$(dirname "$0")/lib.sh"
lm_init once_rotated_deleted
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/rs"
write_config "$T/logmeter.conf"
sed -i 's/^rescan_interval = 1s$/&\nrotate_wait = 100ms/' "$T/logmeter.conf"
rule_conf rs "$T/rs/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/rs/app.log
writer_init

# once_ok WHAT: a run --once that must exit 0 and warn of nothing.
once_ok() {
	local rc=0
	: > "$T/run.log"
	timeout 120 "$LOGMETER" run --once -c "$conf" 2> "$T/run.log" || rc=$?
	cat "$T/run.log" >> "$T/agent.log"
	[ "$rc" = 0 ] || fail "$1: run --once exited $rc: $(tail -n 2 "$T/run.log" | tr '\n' ' ')"
	! grep -q 'warning\|error' "$T/run.log" || fail "$1: $(grep 'warning\|error' "$T/run.log" | head -n 3 | tr '\n' ' ')"
}

# ctime_aged FILE: FILE's ctime is more than a second behind the wall clock (so at least
# rotate_wait, 100 ms, old).
ctime_aged() {
	[ "$(date +%s)" -gt $(($(stat -c %Z "$1") + 1)) ]
}

put_rids "$L" 20
once_ok "first run"
# Rotation 1: renamed and created; the writer writes on to the renamed file until it reopens.
mv "$L" "$L.1"
: > "$L"
put_rids "$L.1" 5
put_rids "$L" 10
once_ok "the run after rotation 1"
wait_until 60 ctime_aged "$L.1" || fail "app.log.1's ctime did not age"
put_rids "$L" 10
once_ok "a later run"
# Rotation 2 (rotate 1), in logrotate's order: rename, create, then delete the oldest, so that the
# new app.log cannot get its inode.
mv "$L.1" "$L.2"
mv "$L" "$L.1"
: > "$L"
rm "$L.2"
put_rids "$L" 10
once_ok "the run after rotation 2, which deleted the file rotation 1 made"

"$LOGMETER" status -c "$conf" > "$T/status.out" || fail "status degraded: $(grep health "$T/status.out")"
assert_eq "$(seq 1 "$written" | tr '\n' ' ')" "$(cut -f4 "$T/accepted.tsv" | sort -n | tr '\n' ' ')" "rids accepted"
assert_eq "$written" "$(cut -f1 "$T/accepted.tsv" | sort -u | wc -l)" "distinct identifiers accepted"
note "ok: $written lines, each billed once; no run warned or exited 1"

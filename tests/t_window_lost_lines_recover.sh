#!/usr/bin/env bash
# `spool recover` with a damaged page of the aggregation windows' table and one of their lines'
# table: the lost windows' lines on the destroyed lines page leave no trace, so the lines recover
# finds are a lower bound of what the lost windows held, and its warning says so ("lost at least
# ..."). The loss outlives recover's output: `status` is degraded, naming when and how much, until
# `status --since` a later time. Expected counts come from SQL over a copy taken before the
# damage, not from recover.
. "$(dirname "$0")/lib.sh"
lm_init window_lost_lines_recover
need_dbstat
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
# Windows that stay open: lines stamped 2 to 3 hours ahead, of 60 customers in 8 windows of a
# minute each, 2 lines a window.
now=$(date +%s)
now=$((now - now % 60)) # a minute's start: the two lines of a window stay in one minute
awk -v now="$now" 'BEGIN { for (w = 0; w < 8; w++) for (c = 0; c < 60; c++) for (k = 0; k < 2; k++)
	printf "%d cus_%03d %d\n", now + 7200 + w * 600 + k, c, 1 + c + w }' >"$log"
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s"
conf="$T/logmeter.conf"
state="$T/state"
db="$state/spool.db"

rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once leaving windows open"
assert_eq 480 "$(sqlite3 "$db" "SELECT count(*) FROM windows WHERE state = 0")" "open windows"
cp "$db" "$T/pristine.db"
wpage=$(windows_leaf "$db")
[ -n "$wpage" ] || fail "test bug: no second leaf page of windows"

# A leaf page of window_lines that holds lines of the windows lost with $wpage: tried in turn on
# the pristine copy until recover finds fewer lines of the lost windows than they held.
found=
for lpage in $(sqlite3 "$T/pristine.db" "SELECT pageno FROM dbstat WHERE name = 'window_lines'
	AND pagetype = 'leaf' ORDER BY pageno"); do
	rm -f "$db" "$db-wal" "$db-shm" "$db".corrupt-*
	cp "$T/pristine.db" "$db"
	spool_ruin "$db" "$wpage" "$lpage"
	"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
		fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"
	# What the lost windows held, by SQL over the pristine copy and the recovered spool.
	lost_windows=$(sqlite3 "$db" "ATTACH '$T/pristine.db' AS old;
		SELECT count(*) FROM old.windows w WHERE NOT EXISTS (SELECT 1 FROM main.windows n
		WHERE n.rule = w.rule AND n.customer = w.customer AND n.start = w.start)")
	held=$(sqlite3 "$db" "ATTACH '$T/pristine.db' AS old;
		SELECT count(*) FROM old.window_lines l WHERE l.window_id IN (SELECT w.id FROM old.windows w
		WHERE NOT EXISTS (SELECT 1 FROM main.windows n WHERE n.rule = w.rule AND
		n.customer = w.customer AND n.start = w.start))")
	said=$(sed -n 's/^warning: [0-9]* aggregation windows were lost .* the usage of their \([0-9]*\) lines is lost.*/\1/p' "$T/recover.out")
	[ -n "$said" ] || fail "recover named no lines lost: $(cat "$T/recover.out")"
	if [ "$said" -lt "$held" ]; then
		found=$lpage
		break
	fi
done
[ -n "$found" ] || fail "test bug: no page of window_lines holds lines of the lost windows"
[ "$lost_windows" -gt 0 ] || fail "test bug: no window lost"
note "windows page $wpage and lines page $found: $lost_windows windows lost, $held lines, $said found"

line=$(grep "^warning: $lost_windows aggregation windows were lost" "$T/recover.out") ||
	fail "recover did not say $lost_windows windows were lost: $(cat "$T/recover.out")"
grep -qF "the usage of their $said lines is lost at least (the lines found: a lost window's row held its count of lines, and lines of it on damaged pages left no trace, also outside the byte offsets below), never billed" <<<"$line" ||
	fail "recover does not say that $said lines are a lower bound of $held: $line"

# status remembers the loss: degraded, with when and how much.
rc=0
"$LOGMETER" status -c "$conf" >"$T/status.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "status exits 0 after a loss of usage: $(cat "$T/status.out")"
h=$(grep "^health: degraded: \`spool recover\` at [0-9TZ:-]* lost the usage of " "$T/status.out") ||
	fail "status does not say what recover lost: $(grep '^health' "$T/status.out")"
# Every lost window counted: those with lines found, and those that left none.
open_lost=$(sed -n 's/.* lost the usage of \([0-9]*\) aggregation windows (at least \([0-9]*\) lines), never billed.*/\1 \2/p' <<<"$h")
unknown_lost=$(sed -n 's/.*never billed; \([0-9]*\) more lost windows left no line and no meter event.*/\1/p' <<<"$h")
[ -n "$open_lost" ] || fail "status: $h"
assert_eq "$lost_windows" "$((${open_lost% *} + ${unknown_lost:-0}))" "windows lost, as status counts them"
assert_eq "$said" "${open_lost#* }" "lines found, as status counts them"
"$LOGMETER" status -c "$conf" --json >"$T/status.json" 2>/dev/null || true
"$PYTHON3" -c '
import json, sys
h = json.load(open(sys.argv[1]))["health"]
assert h["status"] == "degraded", h
assert any("spool recover` at " in p and "lost the usage of" in p for p in h["problems"]), h
' "$T/status.json" || fail "status --json: $(cat "$T/status.json")"
# Handled: `status --since` a time after the recovery leaves it out.
"$LOGMETER" status -c "$conf" --since "$(date -u -d @$(($(date +%s) + 60)) +%Y-%m-%dT%H:%M:%SZ)" >"$T/status2.out" 2>&1 || true
if grep -q "lost the usage of" "$T/status2.out"; then
	fail "status --since after the recovery still names it: $(grep '^health' "$T/status2.out")"
fi
echo "t_window_lost_lines_recover: $lost_windows windows lost with $held lines, $said found: recover says at least, status remembers"

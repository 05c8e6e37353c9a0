#!/usr/bin/env bash
# `spool recover` with the file record lost of the file the aggregation windows' lines came from:
# the windows' meter events, pending when the spool was damaged, keep their identifiers (kept in
# their rows of outcomes: a window's identifier holds no file uid) and stay pending, and the agent
# bills each window once after the recover, each customer's total the sum of its lines. Before,
# recover made them dead letters ("its identifier cannot be computed"), and their usage was billed
# only by an operator's `replay --dead`.
. "$(dirname "$0")/lib.sh"
lm_init window_lost_file_recover
need_dbstat
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
past_windows_log "$log" # closed as soon as a sender runs
write_config "$T/logmeter.conf"
config_epoch_rule "$T/logmeter.conf" "$log" "aggregate = 60s" "aggregate_grace = 1s"
conf="$T/logmeter.conf"
state="$T/state"
db="$state/spool.db"

# The windows close while Stripe cannot be reached: their meter events stay pending.
double_stop
agent_start "$conf"
# (Before the agent made the spool, sqlite3 cannot open it: no count.)
closed() {
	sqlite3 -cmd ".timeout 5000" "file:$db?mode=ro" "SELECT count(*) FROM windows WHERE state = 1" 2>/dev/null
}
wait_until 60 eval '[ "$(closed)" = '"$n_windows"' ]' || fail "the agent closed $(closed) of $n_windows windows"
agent_stop || fail "agent exited $? on SIGTERM"
[ ! -e "$db-wal" ] || fail "a clean stop left a WAL"
"$LOGMETER" spool export -c "$conf" --state pending | "$PYTHON3" -c '
import json, sys
for line in sys.stdin:
    print(json.loads(line)["identifier"])' | sort >"$T/pending_before"
assert_eq "$n_windows" "$(wc -l <"$T/pending_before")" "pending meter events before the damage"
assert_eq "$n_windows" "$(grep -c '^lmw2-' "$T/pending_before")" "window identifiers before the damage"

# Overwrite the page of the files table (one file: one page) with bytes no b-tree page starts with.
pages=$(sqlite3 "$db" "SELECT group_concat(pageno) FROM dbstat WHERE name = 'files'")
assert_eq 1 "$(tr ',' '\n' <<<"$pages" | wc -l)" "pages of the files table"
spool_ruin "$db" "$pages"

"$LOGMETER" spool recover -c "$conf" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "spool recover exited $?: $(cat "$T/recover.out" "$T/recover.err")"
grep -q "^warning: 1 file records were lost" "$T/recover.out" ||
	fail "recover did not say the file record was lost: $(cat "$T/recover.out")"
grep -qx "events: pending $n_windows, delivered 0, dead letters 0, unsure 0" "$T/recover.out" ||
	fail "recover's counts: $(cat "$T/recover.out")"
"$LOGMETER" spool export -c "$conf" --state pending | "$PYTHON3" -c '
import json, sys
for line in sys.stdin:
    print(json.loads(line)["identifier"])' | sort >"$T/pending_after"
"$LOGMETER" spool export -c "$conf" --state dead >"$T/dead_after"
assert_eq "" "$(cat "$T/dead_after")" "dead letters after the recover"
assert_eq "$(cat "$T/pending_before")" "$(cat "$T/pending_after")" \
	"pending identifiers after the recover"
"$LOGMETER" spool check -c "$conf" >"$T/check.out" 2>&1 ||
	fail "spool check after recover: $(cat "$T/check.out")"

# The file is new to the agent now (its record was lost): read from its end, as docs/spool.md
# advises, so that its lines are not billed a second time under a new uid.
sed -i "s|^path = $log\$|&\nread_from = tail|" "$conf"
grep -q '^read_from = tail$' "$conf" || fail "test bug: read_from not set"
double_restart
agent_once "$conf" || fail "run --once after the recover exited $?"
assert_eq "$(cat "$T/pending_before")" "$(double_accepted_ids)" "identifiers billed"
expected=$(awk '{ s[$2] += $3 } END { for (c in s) print c, s[c] }' "$log" | sort)
got=$(awk -F'\t' '{ s[$3] += $4 } END { for (c in s) print c, s[c] }' "$T/accepted.tsv" | sort)
assert_eq "$expected" "$got" "totals billed per customer"
echo "t_window_lost_file_recover: $n_windows window meter events kept pending with their identifiers and billed once"

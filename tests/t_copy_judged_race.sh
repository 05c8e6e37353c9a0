#!/usr/bin/env bash
# A copy of a tailed log under the glob (`*.log`), made by cp while the agent runs: cp creates its
# output empty and fills it a moment later. The agent judges a new file without a record (is it
# the copy of a file it tails?) by what it holds when it looks, then opens it; a copy filled
# between the look and the open was read as a new file, every line of it billed a second time
# (seen once in CI, in t_copy_grown.sh). Here the moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_open_judged, docs/crash-testing.md): the agent stops itself after
# judging the copy, before opening it; the copy is filled while it is stopped; SIGCONT.
#   1. cp's way: the copy judged empty
#   2. the copy judged with its first line only (one line is no proof of a copy), the rest
#      written before the open
# Every rid is billed once, under the original's identifiers, and both files are taken for copies.
. "$(dirname "$0")/lib.sh"
lm_init copy_judged_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf g "$T/g/*.log"
G=$T/g/app.log
race_writer "$G" 20
# The original has a record after the first run: the second start judges no file, so every stop
# below is a copy's.
race_first_run watch_open_judged:1,watch_open_judged:2 "$G"

note "1: the copy created empty, judged, and filled before the agent opened it"
: > "$T/g/copy.log"
stopped_at watch_open_judged 1
cat "$G" >> "$T/g/copy.log"
kill -CONT "$AGENT_PID"
writer_put 10
settle "1, after the copy"
grep -q "g/copy.log: holds what .*/g/app.log held" "$T/agent.log" ||
	fail "1: copy.log not taken for a copy"

note "2: the copy judged with one line, its other lines written before the agent opened it"
# Its first line made outside the glob and moved in: the agent sees the file with that line only.
head -n 1 "$G" > "$T/g/copy2.tmp"
mv "$T/g/copy2.tmp" "$T/g/copy2.log"
stopped_at watch_open_judged 2
tail -n +2 "$G" >> "$T/g/copy2.log"
kill -CONT "$AGENT_PID"
writer_put 5
settle "2, after the copy"
grep -q "g/copy2.log: holds what .*/g/app.log held" "$T/agent.log" ||
	fail "2: copy2.log not taken for a copy"
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" g "$G"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the original"
check_accepted
assert_eq 0 "$(status_sum "$conf" 8 '$1 ~ /\/copy[0-9]*\.log$/')" "lines matched in the copies"
echo "t_copy_judged_race: $written rids each accepted once; copies filled between the look and the open were taken for copies"

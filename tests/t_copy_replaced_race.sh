#!/usr/bin/env bash
# A new file under the glob (`*.log`) is judged (is it the copy of a file the agent tails?) by what
# its name leads to when the agent looks, then opened by that name. A rename between the look and
# the open puts another file under the name: a copy of the tailed log, made under a name the glob
# does not match and moved into place (`cp app.log copy.tmp && mv copy.tmp new.log`), over a
# file judged no copy. The agent opened the copy without judging it and read it as a new file,
# every line of it billed a second time (unless the copy was longer than the file judged: then it
# was opened as empty and judged again). The moment is made certain with a stop point
# (LOGMETER_STOP_AT=watch_open_judged, docs/crash-testing.md): the agent stops itself after judging
# the first file, before opening it; the copy replaces it while it is stopped; SIGCONT.
# Every rid is billed once, under the original's identifiers, and the copy is taken for a copy.
. "$(dirname "$0")/lib.sh"
lm_init copy_replaced_race
. "$top_srcdir/tests/tail_lib.sh"
double_start

race_conf g "$T/g/*.log"
G=$T/g/app.log
race_writer "$G" 20
# The original has a record after the first run: the second start judges no file, so the stop
# below is new.log's.
race_first_run watch_open_judged:1 "$G"

# The file judged: no line of the log, and longer than the copy (a copy longer than the file
# judged is judged again at its first read).
LC_ALL=C awk 'BEGIN { for (i = 1; i <= 400; i++) printf "not a line of app.log, number %d\n", i }' \
	> "$T/g/new.tmp"
cp "$G" "$T/g/copy.tmp"
[ "$(wc -c < "$T/g/new.tmp")" -gt "$(wc -c < "$T/g/copy.tmp")" ] ||
	fail "test bug: the file judged is not longer than the copy"
mv "$T/g/new.tmp" "$T/g/new.log"
stopped_at watch_open_judged 1
mv "$T/g/copy.tmp" "$T/g/new.log"
kill -CONT "$AGENT_PID"
writer_put 10
settle "after the copy"
copy_taken() { grep -q "g/new.log: holds what .*/g/app.log held" "$T/agent.log"; }
taken=yes
wait_until 60 copy_taken || taken=no
agent_stop || fail "agent did not stop cleanly"
exec 7>&-

: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" g "$G"
assert_eq "$written" "$(wc -l < "$T/expected_rids")" "rids in the original"
check_accepted
assert_eq yes "$taken" "new.log (the copy) taken for a copy"
assert_eq 0 "$(status_sum "$conf" 8 '$1 ~ /\/new\.log$/')" "lines matched in the copy"
echo "t_copy_replaced_race: $written rids each accepted once; a copy moved over a file judged no copy was taken for a copy"

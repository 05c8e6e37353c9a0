#!/usr/bin/env bash
# Rotations faster than the agent looks (Docker's json-file driver can rotate its own file several
# times in a millisecond): app.log -> app.log.1 -> app.log.2 ..., a new app.log each time, the glob
# matching only app.log. Every file that appeared under a matching name is read to its end wherever
# it was renamed, also the generations renamed before the agent opened them (found by following
# the renames inotify reported, then by inode among the directory's entries). First with the agent
# frozen while the writer rotates three times (every event is queued before it looks: the case is
# the same every time), then against the running agent, several times.
. "$(dirname "$0")/lib.sh"
lm_init fast_rotation
. "$top_srcdir/tests/tail_lib.sh"
double_start

mkdir -p "$T/fr"
write_config "$T/logmeter.conf"
sed -i 's/^\[agent\]$/[agent]\nrotate_wait = 1s/' "$T/logmeter.conf"
rule_conf fr "$T/fr/app.log" >> "$T/logmeter.conf"
conf=$T/logmeter.conf
L=$T/fr/app.log

# rotate FIRST PER TIMES: TIMES times, in one process and as fast as it goes: PER lines (rids from
# FIRST on) appended to app.log, the rotated files shifted (app.log.N -> app.log.N+1), app.log
# renamed to app.log.1 and a new app.log created; then PER more lines to the last app.log. Prints
# the next rid.
rotate() {
	"$PYTHON3" - "$L" "$1" "$2" "$3" "$T/lines.txt" <<'PY'
import os, sys
path, rid, per, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
src = open(sys.argv[5]).read().splitlines()
def put(n):
    global rid
    with open(path, "a") as f:
        f.write("".join("%s rid=%d\n" % (src[(r - 1) % len(src)], r) for r in range(rid, rid + n)))
    rid += n
for _ in range(times):
    put(per)
    n = 1
    while os.path.exists("%s.%d" % (path, n)):
        n += 1
    for k in range(n - 1, 0, -1):
        os.rename("%s.%d" % (path, k), "%s.%d" % (path, k + 1))
    os.rename(path, path + ".1")
    open(path, "x").close()
put(per)
print(rid)
PY
}
# The lines of the real log, one a line, for the writer.
LC_ALL=C awk '{print}' "$NGINX_LOG" > "$T/lines.txt"

lines 1 5 > "$L"
agent_start "$conf"
wait_until 60 accepted_at_least 5 || fail "the first 5 lines were not delivered"

note "three rotations while the agent is frozen"
kill -STOP "$AGENT_PID"
wait_until 30 agent_frozen || fail "the agent did not stop"
rid=$(rotate 6 9 3) || fail "the writer failed"
kill -CONT "$AGENT_PID"
total=$((rid - 1))
wait_until 60 accepted_at_least "$total" || fail "after three rotations: $(accepted_count) of $total"

note "three rotations within a millisecond or so, against the running agent, 5 times"
for i in 1 2 3 4 5; do
	rid=$(rotate "$rid" 4 3) || fail "the writer failed"
	total=$((rid - 1))
	wait_until 60 accepted_at_least "$total" || fail "round $i: $(accepted_count) of $total"
done
sleep 1 # a line billed twice would arrive now
agent_stop || fail "the agent did not stop cleanly"

: > "$T/expected_ids"
: > "$T/expected_rids"
for f in "$L" "$L".*; do expect_file "$conf" fr "$f"; done
assert_eq "$total" "$(wc -l < "$T/expected_rids")" "rids in the files"
check_accepted
assert_eq "$total" "$(status_sum "$conf" 8)" "matched lines"
echo "t_fast_rotation: $total rids through $(ls "$T"/fr | wc -l) files rotated faster than the agent looks, each accepted once"

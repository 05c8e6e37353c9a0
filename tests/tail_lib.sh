# Helpers for the tailing tests (t_rotation.sh, t_identity.sh, ...). Source it after lib.sh and
# lm_init. The test lines are real nginx access-log lines with a request id appended
# (" rid=N", as with nginx's $request_id): every line is distinct, and the rule bills the rid as
# the event's value, so the values the Stripe double accepted must be exactly the rids written,
# each once, whatever uid the agent gave each file. The identifiers are checked too, computed by
# tests/identifiers.py from the byte offsets awk finds in the files as they are on disk.

NGINX_LOG=$LOGS/elastic_nginx_logs_prefix29480.log
NGINX_LINES=$(wc -l < "$NGINX_LOG")

# lines FIRST COUNT: lines with rids FIRST .. FIRST+COUNT-1 (line N of the real log, cycling).
lines() {
	LC_ALL=C awk -v first="$1" -v n="$2" -v total="$NGINX_LINES" '
		BEGIN { last = first + n - 1; stop = last <= total ? last : total }
		{ l[NR] = $0 }
		NR >= stop { exit }
		END {
			for (r = first; r <= last; r++)
				printf "%s rid=%d\n", l[(r - 1) % total + 1], r
		}' "$NGINX_LOG"
}

# The copytruncate writer of t_copytruncate.sh and t_copy_glob.sh: it appends to descriptor 7
# (opened with O_APPEND by the test and never reopened). writer_init starts the counts: $rid the
# next rid, $written the lines written, $lost those written between a copy and its truncation,
# listed in $T/window_rids.
writer_init() {
	rid=1
	written=0
	lost=0
	: > "$T/window_rids"
}
# writer_put COUNT: the next COUNT lines.
writer_put() {
	lines "$rid" "$1" >&7
	rid=$((rid + $1))
	written=$((written + $1))
}
# writer_window COUNT: COUNT lines written between the copy and the truncation (lost by the
# method).
writer_window() {
	lines "$rid" "$1" >&7
	[ "$1" = 0 ] || seq "$rid" $((rid + $1 - 1)) >> "$T/window_rids"
	rid=$((rid + $1))
	lost=$((lost + $1))
}

# put_rids FILE COUNT: the next COUNT rid lines appended to FILE (the writer's counts follow).
put_rids() {
	lines "$rid" "$2" >> "$1"
	rid=$((rid + $2))
	written=$((written + $2))
}
# rotate_numbered FILE: logrotate's shift of FILE.1 .. FILE.4 to FILE.2 .. FILE.5.
rotate_numbered() {
	local n
	for n in 4 3 2 1; do
		[ ! -e "$1.$n" ] || mv "$1.$n" "$1.$((n + 1))"
	done
}
# caught_up CONF: every record read to the end of its file (for wait_until).
caught_up() {
	[ "$(status_sum "$1" 6)" = 0 ]
}

# delivered: every line the writer wrote was accepted (for wait_until).
delivered() {
	accepted_at_least "$written"
}

# settle WHAT: every line written accepted and every record read to its file's end (the test's
# configuration in $conf); fails naming WHAT otherwise.
settle() {
	wait_until 60 delivered || fail "$1: $(accepted_count) of $written accepted"
	wait_until 60 caught_up "$conf" || fail "$1: the agent did not catch up"
}

# stopped_at POINT N: the agent reached stop point POINT (LOGMETER_STOP_AT) at least N times, and
# every thread of it is stopped; fails otherwise.
stopped_at() {
	local point=$1 n=$2
	_stops_reached() { [ "$(grep -c "stop point $point reached" "$T/agent.log")" -ge "$n" ]; }
	wait_until 60 _stops_reached || fail "the agent did not stop at $point ($n)"
	wait_until 30 agent_frozen || fail "the agent did not stop"
}

# The setup of the tests that stop the agent at a moment (LOGMETER_STOP_AT, docs/crash-testing.md)
# and change a file while it is stopped.
#
# race_conf SOURCE PATH [SOURCE PATH]...: their configuration, $conf ($T/logmeter.conf): the
# double's [agent] and [stripe] (write_config) with no periodic rescan during the test
# (rescan_interval 60m: the agent reads files on their inotify events, in the order they come, and
# scans at start only), and for each SOURCE PATH, in that order, a [source] reading PATH (a file or
# a glob, its directory created) with its rule rid_SOURCE (rule_conf).
race_conf() {
	conf=$T/logmeter.conf
	write_config "$conf"
	sed -i 's/^rescan_interval = .*/rescan_interval = 60m/' "$conf"
	while [ $# -ge 2 ]; do
		mkdir -p "$(dirname "$2")"
		rule_conf "$1" "$2" >>"$conf"
		shift 2
	done
	[ $# = 0 ] || fail "test bug: race_conf: source $1 without its path"
}
# race_writer FILE [COUNT]: the writer of writer_put on FILE, created empty: descriptor 7, opened
# with O_APPEND and never reopened (start the agent with 7>&-), its counts started (writer_init),
# and COUNT lines written (none without COUNT).
race_writer() {
	: >"$1"
	exec 7>>"$1"
	writer_init
	[ -z "${2:-}" ] || writer_put "$2"
}
# race_first_run [POINTS FILE]: the agent started with $conf until every line written so far is
# accepted and every record read to its file's end (settle), then stopped: the files written
# have their records before the race. With POINTS, the agent is started again with
# LOGMETER_STOP_AT=POINTS, and waited for until it tails FILE (one of those files) again: until
# agent.log, which the first run wrote to as well, says so once more than before that start.
race_first_run() {
	local before
	agent_start "$conf" 7>&-
	settle "first lines"
	agent_stop || fail "agent did not stop cleanly"
	[ $# -gt 0 ] || return 0
	before=$(grep -cF "$2: tailing for source " "$T/agent.log" || true)
	[ "$before" -gt 0 ] || fail "test bug: the first run did not tail $2"
	_tailed_again() { [ "$(grep -cF "$2: tailing for source " "$T/agent.log")" -gt "$1" ]; }
	LOGMETER_STOP_AT=$1 agent_start "$conf" 7>&-
	wait_until 60 _tailed_again "$before" "$2" || fail "$2 was not opened again"
}
# copytruncate_while_running: the first cases of the copytruncate tests, with the running agent
# and the test's own copytruncate WINDOW: the agent up to date when the copy is made; then frozen
# (SIGSTOP) with lines not read yet when the copy is made, lines written between the copy and the
# truncation, and more lines than before after it.
copytruncate_while_running() {
	note "1: the agent up to date"
	copytruncate 0
	writer_put 20
	wait_until 60 delivered || fail "after copytruncate 1: $(accepted_count) of $written"

	note "2: the agent frozen, unread lines in the copy, a window between copy and truncate"
	kill -STOP "$AGENT_PID"
	wait_until 30 agent_frozen || fail "the agent did not stop"
	writer_put 30
	copytruncate 5
	writer_put 60 # more than before: grown past the old checkpoint
	kill -CONT "$AGENT_PID"
	wait_until 60 delivered || fail "after copytruncate 2: $(accepted_count) of $written"
}

# rule_conf SOURCE PATH [more source lines]: a [source] and its rule "rid_SOURCE" that bills
# each line's rid to its client IP (event name "requests").
rule_conf() {
	local src=$1 path=$2
	shift 2
	printf '[source %s]\npath = %s\n' "$src" "$path"
	local l
	for l in "$@"; do printf '%s\n' "$l"; done
	printf '[rule rid_%s]\nsource = %s\nevent_name = requests\n' "$src" "$src"
	printf 'pattern = ^(?<ip>\\S+) .* rid=(?<rid>\\d+)$\ncustomer = ip\nvalue = rid\n\n'
}

# rids_of FILE...: the rids of the lines of the files, one a line (the lines as
# tests/lines_model.py splits them: with LINE_MAX=N in the environment, lines longer than N bytes
# are left out, as the agent skips them; text torn by NULs is no line).
rids_of() {
	local f
	for f in "$@"; do
		"$PYTHON3" -c '
import os, sys
sys.path.insert(0, sys.argv[1])
from lines_model import rid_lines
for _, rid in rid_lines(open(sys.argv[2], "rb").read(), int(os.environ.get("LINE_MAX", "0"))):
    print(rid)' "$top_srcdir/tests" "$f"
	done
}

# offsets_of FILE: byte offsets of the complete lines ending in " rid=N" (a CR before the newline
# allowed), one a line, as rids_of splits them. A line starts at its first byte that is not a NUL
# (docs/tailing.md). A last line without its newline is not a line yet.
offsets_of() {
	"$PYTHON3" -c '
import os, sys
sys.path.insert(0, sys.argv[1])
from lines_model import rid_lines
for off, _ in rid_lines(open(sys.argv[2], "rb").read(), int(os.environ.get("LINE_MAX", "0"))):
    print(off)' "$top_srcdir/tests" "$1"
}

# spool_sql CONF SQL [ARGS...]: runs a read-only query on the agent's spool, rows as TSV.
spool_sql() {
	local conf=$1 sql=$2 state
	shift 2
	state=$(sed -n 's/^[[:space:]]*state_dir[[:space:]]*=[[:space:]]*//p' "$conf" | tail -n 1)
	"$PYTHON3" -c '
import sqlite3, sys
db = sqlite3.connect("file:%s/spool.db?mode=ro" % sys.argv[1], uri=True, timeout=10)
for row in db.execute(sys.argv[2], sys.argv[3:]):
    print("\t".join("" if v is None else str(v) for v in row))' "$state" "$sql" "$@"
}

# uid_of CONF SOURCE FILE: the uid of the newest record of the file on disk (by device and inode).
uid_of() {
	local dev ino
	dev=$("$PYTHON3" -c 'import os, sys; print(os.stat(sys.argv[1]).st_dev)' "$3")
	ino=$(stat -c %i "$3")
	spool_sql "$1" "SELECT uid FROM files WHERE source = ? AND dev = ? AND ino = ? ORDER BY id DESC LIMIT 1" "$2" "$dev" "$ino"
}

# ids_for SOURCE UID FILE: the identifiers of FILE's rid lines read under UID (instance "test",
# rule rid_SOURCE).
ids_for() {
	offsets_of "$3" | "$PYTHON3" "$top_srcdir/tests/identifiers.py" test "$1" "$2" "rid_$1"
}

# expect_file CONF SOURCE FILE...: appends each file's identifiers (under the uid of the newest
# record of its device and inode) to $T/expected_ids and its rids to $T/expected_rids. One
# process for all the files; the identifiers come from tests/identifiers.py.
expect_file() {
	local conf=$1 src=$2 state
	shift 2
	state=$(sed -n 's/^[[:space:]]*state_dir[[:space:]]*=[[:space:]]*//p' "$conf" | tail -n 1)
	"$PYTHON3" - "$top_srcdir/tests" "$state" "$src" "$T/expected_ids" "$T/expected_rids" "$@" <<'PY' ||
import os, sqlite3, sys
sys.path.insert(0, sys.argv[1])
from identifiers import identifier
from lines_model import rid_lines
state, src, out_ids, out_rids = sys.argv[2:6]
mx = int(os.environ.get("LINE_MAX", "0"))
db = sqlite3.connect("file:%s/spool.db?mode=ro" % state, uri=True, timeout=10)
with open(out_ids, "a") as fi, open(out_rids, "a") as fr:
    for path in sys.argv[6:]:
        st = os.stat(path)
        row = db.execute("SELECT uid FROM files WHERE source = ? AND dev = ? AND ino = ?"
                         " ORDER BY id DESC LIMIT 1", (src, st.st_dev, st.st_ino)).fetchone()
        if row is None:
            sys.exit("no spool record for %s" % path)
        for off, rid in rid_lines(open(path, "rb").read(), mx):
            fi.write(identifier("test", src, row[0], off, "rid_" + src) + "\n")
            fr.write("%d\n" % rid)
PY
		fail "expect_file failed"
}

# expect_from SOURCE UID FILE FROM: appends to the expected sets the identifiers (instance "test",
# rule rid_SOURCE, tests/identifiers.py) and rids of FILE's rid lines read from offset FROM on
# under UID, the file split into lines from there as a reader that starts there splits it (a file
# cut inside a line goes on from the cut).
expect_from() {
	"$PYTHON3" - "$3" "$4" "$T/from_rids" <<'PY' > "$T/from_offsets" || fail "expect_from failed"
import re, sys
data, lo = open(sys.argv[1], "rb").read(), int(sys.argv[2])
pos = lo
with open(sys.argv[3], "w") as rids:
    for line in data[lo:].split(b"\n")[:-1]:
        m = re.search(rb" rid=([0-9]+)$", line)
        if m:
            print(pos)
            rids.write("%d\n" % int(m.group(1)))
        pos += len(line) + 1
PY
	"$PYTHON3" "$top_srcdir/tests/identifiers.py" test "$1" "$2" "rid_$1" < "$T/from_offsets" >> "$T/expected_ids"
	cat "$T/from_rids" >> "$T/expected_rids"
}

# check_accepted: the double accepted exactly the identifiers in $T/expected_ids and the values
# in $T/expected_rids, each once.
check_accepted() {
	sort "$T/expected_ids" > "$T/exp_ids.sorted"
	sort -n "$T/expected_rids" > "$T/exp_rids.sorted"
	[ "$(sort -u "$T/exp_ids.sorted" | wc -l)" = "$(wc -l < "$T/exp_ids.sorted")" ] ||
		fail "test bug: expected identifiers are not distinct"
	[ "$(sort -u "$T/exp_rids.sorted" | wc -l)" = "$(wc -l < "$T/exp_rids.sorted")" ] ||
		fail "test bug: expected rids are not distinct"
	cut -f1 "$T/accepted.tsv" | sort > "$T/acc_ids.sorted"
	cut -f4 "$T/accepted.tsv" | sort -n > "$T/acc_rids.sorted"
	diff -u "$T/exp_rids.sorted" "$T/acc_rids.sorted" > "$T/diff_rids" ||
		fail "accepted values (rids) differ from those written (- lost, + extra or twice): $(grep '^[-+][0-9]' "$T/diff_rids" | head -20 | tr '\n' ' ')"
	diff -u "$T/exp_ids.sorted" "$T/acc_ids.sorted" > "$T/diff_ids" ||
		fail "accepted identifiers differ from the expected set: $(grep '^[-+]lm' "$T/diff_ids" | head -10 | tr '\n' ' ')"
}

# status_tsv CONF: `logmeter status` as TSV, one record a line: path uid state offset size lag
# lines matched unmatched invalid long_lines nul_bytes events resets source inode torn_lines.
status_tsv() {
	"$LOGMETER" status -c "$1" | LC_ALL=C awk '
		/^  \// { path = substr($0, 3); next }
		/^    source / { src = $2; uid = $4; ino = $8; sub(/\)/, "", ino); state = $10; next }
		/^    offset / { off = $2; size = $4; lag = $6; next }
		/^    lines / {
			printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			    path, uid, state, off, size, lag, $2, $4, $6, $8, $11, $14, $16, $19, src, ino, $25
		}'
}

# status_sum CONF COLUMN [AWK-CONDITION]: the sum of a status_tsv column (1-based) over the
# records that satisfy the condition (e.g. '$15 == "live"').
status_sum() {
	status_tsv "$1" | LC_ALL=C awk -F'\t' "${3:-1} { s += \$$2 } END { print s + 0 }"
}

# status_state CONF FILE: the state of the newest record of FILE (by its inode on disk).
status_state() {
	local uid
	uid=$(uid_of "$1" "$2" "$3")
	status_tsv "$1" | awk -F'\t' -v u="$uid" '$2 == u { print $3 }'
}

# open_fds PID: the paths the process has open, one a line.
open_fds() {
	local f
	for f in /proc/"$1"/fd/*; do
		readlink "$f" 2>/dev/null || true
	done
}

# tailing_warning CONF KIND: "COUNT PATH" of a tailing warning in `status --json` (guard.tailing:
# empty_copies, rotated_stopped, sparse_holes, not_rotations, taken_over), PATH "-" if none; the text status must give the
# same count on its "tailing:" line.
tailing_warning() {
	"$LOGMETER" status -c "$1" --json > "$T/tailing_status.json" || true
	"$PYTHON3" -c '
import json, sys
g = json.load(open(sys.argv[1]))["guard"]
w = g["tailing"][sys.argv[2]] if g else {"count": 0, "path": None}
print(w["count"], w["path"] if w["path"] is not None else "-")' "$T/tailing_status.json" "$2"
}

# expect_split FILE AT SRC1 SRC2: appends to $T/expected_ids and $T/expected_rids the identifiers
# and rids of FILE's rid lines before byte AT under SRC1's newest record of the file (in the spool
# of the configuration $conf), from AT on under SRC2's: a file handed from one source to another
# (tests/identifiers.py, the offsets found by python apart from the agent).
expect_split() {
	local u1 u2
	u1=$(uid_of "$conf" "$3" "$1")
	u2=$(uid_of "$conf" "$4" "$1")
	[ -n "$u1" ] || fail "no record of $1 for source $3"
	[ -n "$u2" ] || fail "no record of $1 for source $4"
	"$PYTHON3" - "$1" "$2" >"$T/split" <<'PY' || fail "expect_split failed"
import re, sys
data, at = open(sys.argv[1], "rb").read(), int(sys.argv[2])
pos = 0
for line in data.split(b"\n")[:-1]:
    m = re.search(rb" rid=([0-9]+)$", line)
    if m:
        print("%d\t%d\t%d" % (pos >= at, pos, int(m.group(1))))
    pos += len(line) + 1
PY
	awk -F'\t' '$1 == 0 { print $2 }' "$T/split" |
		"$PYTHON3" "$top_srcdir/tests/identifiers.py" test "$3" "$u1" "rid_$3" >>"$T/expected_ids"
	awk -F'\t' '$1 == 1 { print $2 }' "$T/split" |
		"$PYTHON3" "$top_srcdir/tests/identifiers.py" test "$4" "$u2" "rid_$4" >>"$T/expected_ids"
	cut -f3 "$T/split" >>"$T/expected_rids"
}

# assert_left_to_other CONF FILE: after a start that found FILE beside source live's rotated file
# while another source reads it, FILE was not judged an unread rotation of live (no "never read"
# line, rotated_stopped 0), not noted as matched by live's glob, and status counts one shared
# file (the one both globs match).
assert_left_to_other() {
	! grep -q "rotated from .* while logmeter was stopped, and never read" "$T/agent.log" ||
		fail "${2##*/} judged an unread rotation of live: $(grep 'never read' "$T/agent.log")"
	assert_eq "0 -" "$(tailing_warning "$1" rotated_stopped)" "status --json: files rotated while stopped"
	! grep -qF "$2: matched by the glob of source live" "$T/agent.log" ||
		fail "${2##*/} said matched by live's glob: $(grep -F "$2: matched" "$T/agent.log")"
	"$LOGMETER" status -c "$1" >"$T/status.txt" 2>&1 || true
	grep -qF "shared: 1 files matched by more than one source's glob" "$T/status.txt" ||
		fail "status: $(grep -E '^(shared|health)' "$T/status.txt")"
}

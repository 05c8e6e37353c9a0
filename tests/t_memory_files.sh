#!/usr/bin/env bash
# Memory per watched file: the agent's anonymous resident memory (RssAnon of /proc/PID/status)
# once every line of 1,000 files held open is read, against the same with 10 files, grows by
# at most 2 KiB a file. Each tail held a record with a 4 KiB path field before (about 5 KiB a
# file with the rest); now the record is allocated to fit its path and nothing else per file is
# sized for the worst case (docs/tailing.md; the figures: bench/README.md). Checked without
# sanitizers only, whose redzones and quarantine are memory of their own. The rule matches no
# line, so that nothing is sent and only what the files cost is compared.
. "$(dirname "$0")/lib.sh"
lm_init memory_files
. "$top_srcdir/tests/tail_lib.sh"
if [ -n "${ASAN_OPTIONS:-}${UBSAN_OPTIONS:-}" ] || ldd "$LOGMETER" | grep -q 'libasan\|libubsan'; then
	skip "a sanitizer's own memory would be measured"
fi
double_start

PER_FILE_MAX=2048 # bytes of anonymous memory per watched file
first=1

# anon_kb N: N files of one line each in a directory of their own, watched by an agent whose
# max_open_files keeps them all open; once status shows their N lines read, sets ANON_KB to
# the agent's RssAnon (kB) and stops it. (Not in a subshell: `first` and fail must reach the
# test.)
anon_kb() {
	local n=$1 d=$T/files$1 conf=$T/logmeter$1.conf pid
	mkdir -p "$d"
	lines "$first" "$n" | "$PYTHON3" -c '
import sys
d = sys.argv[1]
for i, line in enumerate(sys.stdin.buffer):
    with open("%s/f%04d.log" % (d, i), "ab") as f:
        f.write(line)' "$d"
	[ "$(ls "$d" | wc -l)" = "$n" ] || fail "test bug: $(ls "$d" | wc -l) files written, not $n"
	write_config "$conf"
	sed -i "s|^state_dir = .*|state_dir = $T/state$n|; s/^\[agent\]$/[agent]\nmax_open_files = $((n + 16))/" "$conf"
	printf '[source many]\npath = %s/*.log\n[rule none]\nsource = many\nevent_name = requests\n' "$d" >> "$conf"
	printf 'pattern = ^NO SUCH LINE (?<c>\\S+) (?<v>\\d+)$\ncustomer = c\nvalue = v\n' >> "$conf"
	first=$((first + n))
	agent_start "$conf"
	pid=$AGENT_PID
	wait_until 120 all_read "$conf" "$n" ||
		fail "$n files: $(status_sum "$conf" 7) lines read of $n"
	[ "$(status_sum "$conf" 8)" = 0 ] || fail "test bug: the rule matched lines"
	ANON_KB=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
	[ "$(ls -l "/proc/$pid/fd" | grep -c -- " -> $d/")" = "$n" ] ||
		fail "$n files: not all of them held open"
	agent_stop || fail "$n files: the agent did not stop cleanly"
}

# all_read CONF N: the N lines of the N files read, every checkpoint at its file's end.
all_read() {
	[ -s "$T/state$2/spool.db" ] && [ "$(status_sum "$1" 7)" = "$2" ] && [ "$(status_sum "$1" 6)" = 0 ]
}

anon_kb 10
small=$ANON_KB
anon_kb 1000
large=$ANON_KB
per=$(((large - small) * 1024 / 990))
note "RssAnon: $small kB with 10 files, $large kB with 1000: $per bytes a file"
[ "$per" -le "$PER_FILE_MAX" ] ||
	fail "$per bytes of anonymous memory per watched file, more than $PER_FILE_MAX ($small kB with 10 files, $large kB with 1000)"
echo "t_memory_files: $per bytes of anonymous memory per watched file ($small kB with 10 files, $large kB with 1000)"

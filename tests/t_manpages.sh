#!/usr/bin/env bash
# The man pages keep up with the binary: every command of `logmeter --help` is described in
# logmeter(8), every option of `logmeter options` in the generated logmeter.conf(5), and man
# renders both without a warning.
. "$(dirname "$0")/lib.sh"
lm_init manpages

man8=$top_srcdir/docs/logmeter.8
man5=$top_builddir/docs/logmeter.conf.5
[ -f "$man8" ] || fail "$man8 is missing"
[ -f "$man5" ] || fail "$man5 was not generated (make all builds it)"

# Commands: the words after "logmeter" in the usage (not options).
cmds=$("$LOGMETER" --help | sed -n 's/^ *\(usage: \)\{0,1\}logmeter \([a-z][a-z-]*\).*/\2/p' | sort -u)
[ "$(wc -w <<<"$cmds")" -ge 5 ] || fail "test bug: commands from --help: $cmds"
for c in $cmds; do
	# In troff a '-' is written '\-'.
	grep -qE "^\.BR? $(sed 's/-/\\\\-/g' <<<"$c")( |\$)" "$man8" || fail "logmeter $c is not described in docs/logmeter.8"
done
note "commands in logmeter(8): $(echo $cmds)"

keys=$("$LOGMETER" options | sed -n 's/^\[[^]]*\] \([a-z_]*\) .*/\1/p' | sort -u)
[ "$(wc -w <<<"$keys")" -ge 20 ] || fail "test bug: options: $keys"
for k in $keys; do
	grep -qxF ".B $k" "$man5" || fail "option $k is not in logmeter.conf(5)"
done
# The generated page is not older than the option table it comes from.
"$LOGMETER" options | awk -f "$top_srcdir/docs/man-options.awk" - "$top_srcdir/docs/logmeter.conf.5.in" |
	diff -u - "$man5" >"$T/diff" || fail "docs/logmeter.conf.5 is stale: $(head -20 "$T/diff")"
note "$(wc -w <<<"$keys") options in logmeter.conf(5)"

if command -v man >/dev/null 2>&1; then
	for m in "$man8" "$man5"; do
		w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null) || fail "man -l $m failed: $w"
		[ -z "$w" ] || fail "man --warnings $m: $w"
	done
	note "man --warnings: clean"
else
	note "man is not installed: rendering not checked here (.ci/package-test checks it)"
fi
echo "t_manpages: logmeter(8) and logmeter.conf(5) match the binary"

#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ with clang (-fsanitize=fuzzer,address,undefined)
# and runs each for a bounded time on a copy of its seed corpus (tests/fuzz/corpus/NAME), JOBS at
# a time. A crash, a leak, undefined behaviour or a timeout fails the run and keeps the input
# that caused it in the work directory (crash-*, leak-*, timeout-*). See tests/fuzz/README.md.
#
#   tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [-w WORKDIR] [NAME...]
#
# SECONDS per harness (default 50), JOBS harnesses at once (default 2), WORKDIR for the build,
# the growing corpora and the artifacts (default: a new temporary directory, removed after a
# clean run; a given one is kept and reused). NAME: config rule lines custmap stripe timestamp
# (default: all).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=50 jobs=2 work=
while getopts t:j:w: o; do
	case $o in
	t) secs=$OPTARG ;;
	j) jobs=$OPTARG ;;
	w) work=$OPTARG ;;
	*) echo "usage: $0 [-t SECONDS] [-j JOBS] [-w WORKDIR] [NAME...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
names=${*:-config rule lines custmap stripe timestamp}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
keep=1
if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-fuzz.XXXXXX")
	keep=0
fi
mkdir -p "$work/obj"

# The code under test, compiled with libFuzzer's coverage (fuzzer-no-link) and the sanitizers:
# every module but main.c, as the unit tests link them.
# The libraries are configure.ac's (every PKG_CHECK_MODULES but cmocka), so that a module that
# brings a new one links here without a change.
PKGS=$(sed -n 's/^PKG_CHECK_MODULES(\[[A-Z0-9_]*\], *\[\([A-Za-z0-9_.+-]*\).*/\1/p' "$top/configure.ac" |
	grep -v '^cmocka$' | tr '\n' ' ')
CFLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8
	-DPACKAGE_VERSION=\"fuzz\" -I$top/src $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lpthread"
export CC CFLAGS top work
(cd "$top/src" && ls */*.c) | xargs -P 2 -I{} sh -c '
	o=$work/obj/$(echo "{}" | tr / _ | sed "s/\.c\$/.o/")
	[ "$o" -nt "$top/src/{}" ] || $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$top/src/{}" -o "$o"'
for n in $names; do
	# shellcheck disable=SC2086
	$CC $CFLAGS -Wall -Wextra -Werror -fsanitize=fuzzer "$here/fuzz_$n.c" "$work"/obj/*.o $LIBS \
		-o "$work/fuzz_$n"
done

# Each harness on a corpus of its own: the seeds are copied, the repository's never written.
run_one() {
	local n=$1 rc=0
	mkdir -p "$work/corpus_$n" "$work/artifacts_$n"
	cp -n "$here/corpus/$n/"* "$work/corpus_$n/" 2>/dev/null || true
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$work/fuzz_$n" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$work/artifacts_$n/" "$work/corpus_$n" \
		>"$work/fuzz_$n.log" 2>&1 || rc=$?
	if [ "$rc" = 0 ]; then
		echo "fuzz: $n: ok, $(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz_$n.log") inputs in $secs s"
	else
		echo "fuzz: $n: FAILED (exit $rc)"
		tail -n 40 "$work/fuzz_$n.log"
		ls "$work/artifacts_$n"
		: >"$work/failed_$n"
	fi
}
export -f run_one
export secs here
rm -f "$work"/failed_*
printf '%s\n' $names | xargs -P "$jobs" -I{} bash -c 'run_one {}'
if ls "$work"/failed_* >/dev/null 2>&1; then
	echo "fuzz: failed: $(cd "$work" && ls failed_* | sed 's/failed_//' | tr '\n' ' '); inputs and logs kept in $work" >&2
	exit 1
fi
[ "$keep" = 1 ] || rm -rf "$work"
echo "fuzz: all passed"

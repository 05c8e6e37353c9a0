#!/usr/bin/env bash
# The peak RSS a process has before it does anything: a program whose main() only reads its own
# VmHWM (/proc/self/status), built three ways: linking nothing more than libc, linking libcurl
# alone, and linking every library logmeter's binary names (readelf -d: NEEDED). What it prints
# is the floor under logmeter's peak RSS that the dynamic loader sets (mapping and relocating the
# libraries and the ones they load), before logmeter's own code runs. Not part of `make check`.
#
# usage: bench/link_floor.sh              from the top of a built tree
#        RUNS=9 LOGMETER=/other/build/src/logmeter bench/link_floor.sh
# Environment: RUNS (5 by default), LOGMETER, CC (cc by default), TMPDIR, KEEP (1: keep the
# directory).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
RUNS=${RUNS:-5}
CC=${CC:-cc}
command -v readelf >/dev/null || { echo "readelf is needed (binutils)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/logmeter-bench-floor.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

cat >"$tmp/floor.c" <<'C'
#include <stdio.h>
#include <string.h>
int main(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL) return 1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0) fputs(line + 6, stdout);
	fclose(f);
	return 0;
}
C
# -l options for every NEEDED entry but libc: libfoo.so.N -> -l:libfoo.so.N
needed=$(readelf -d "$LOGMETER" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v '^libc\.so' |
	sed 's/^/-l:/' | tr '\n' ' ')
"$CC" -O2 -o "$tmp/libc_only" "$tmp/floor.c"
"$CC" -O2 -o "$tmp/libcurl" "$tmp/floor.c" -Wl,--no-as-needed -lcurl
# shellcheck disable=SC2086 # one word per library
"$CC" -O2 -o "$tmp/all" "$tmp/floor.c" -Wl,--no-as-needed $needed

echo "machine: $(uname -m), $(nproc) CPUs; $RUNS runs each; kB, median (range)"
echo "libraries logmeter needs: $(echo "$needed" | sed 's/-l://g')"
echo "libraries loaded with them: $(ldd "$tmp/all" | grep -c '=>')"
for prog in libc_only libcurl all; do
	for _ in $(seq "$RUNS"); do "$tmp/$prog" | tr -dc '0-9\n'; done | sort -n |
		awk -v p="$prog" '{v[NR] = $1} END {printf "%-10s %6d (%d-%d) kB peak RSS\n", p, v[int((NR + 1) / 2)], v[1], v[NR]}'
done
# what the loader is asked to do eagerly: libraries marked to bind every symbol at load
n=0
for lib in $(ldd "$tmp/all" | awk '$2 == "=>" {print $3}'); do
	readelf -d "$lib" 2>/dev/null | grep -q 'BIND_NOW\|Flags:.*NOW' && n=$((n + 1))
done
echo "of them marked BIND_NOW (every relocation resolved at start): $n"
"$LOGMETER" --version >/dev/null
measure "$tmp/version" "$LOGMETER" --version >/dev/null
echo "logmeter --version: $(awk '{print $4}' "$tmp/version") kB peak RSS"

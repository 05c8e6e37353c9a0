#!/usr/bin/env bash
# durability = normal: the sender syncs the WAL before it sends what a load read (docs/durability.md),
# and only when the load holds an event committed since the last sync. A spool filled by
# `run --once --no-send` and then sent by `run --once` under strace: the WAL is synced before the
# first connection to Stripe, and a few times in all, not once per load of a few hundred events
# (one sync per load of 256 before); the double accepts every event once, with awk's identifiers.
. "$(dirname "$0")/lib.sh"
lm_init send_syncs
command -v strace >/dev/null 2>&1 || skip "strace is needed to see the syncs"
strace -f -qq -o /dev/null true 2>/dev/null || skip "strace cannot trace here (ptrace refused)"
double_start

mkdir -p "$T/logs"
cp "$LOGS/elastic_nginx_logs_prefix29480.log" "$T/logs/access.log"
conf=$T/logmeter.conf
write_config "$conf"
sed -i 's/^\[agent\]$/[agent]\ndurability = normal/' "$conf"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 10000/' "$conf"
config_nginx_bytes "$conf" "$T/logs/access.log"
n=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
# One sync per load of 256 would be at least 6 here (30 were seen).
[ "$n" -ge 1536 ] || fail "test bug: only $n expected events"

agent_once "$conf" --no-send || fail "run --once --no-send exited $?"
wal=$T/state/spool.db-wal
# A sanitizer build's leak check cannot run under ptrace (LeakSanitizer's own words): off for
# this run only; the untraced runs around it keep it.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
	strace -f -qq -y -s 40 -e trace=fsync,fdatasync,sendto,write -e signal=none -o "$T/strace.out" \
	timeout 120 "$LOGMETER" run --once -c "$conf" >>"$T/agent.out" 2>>"$T/agent.log" ||
	fail "run --once exited $?: $(tail -n 5 "$T/agent.log")"

# The syncs of the WAL and the requests that carry meter events, in the order the trace saw them.
awk -v wal="$wal" '
	($0 ~ /f(data)?sync\(/ && index($0, "<" wal ">")) { print "sync"; next }
	index($0, "\"POST /v1/billing/meter_events ") { print "event" }
' "$T/strace.out" >"$T/order"
grep -q '^event$' "$T/order" || fail "test bug: no request with meter events in the trace"
syncs=$(grep -c '^sync$' "$T/order" || true)
first=$(head -n 1 "$T/order")
assert_eq sync "$first" "what came first: a sync of the WAL or a meter event sent"
# The first load's, and SQLite's own before its checkpoints (one here, and one at close).
[ "$syncs" -le 4 ] || fail "$syncs syncs of the WAL to send $n events (want at most 4)"

uid=$(file_uid "$conf" "$T/logs/access.log")
nginx_bytes_offsets "$T/logs/access.log" | identifiers_of nginx "$uid" bytes | sort >"$T/expected_ids"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/diff" ||
	fail "accepted identifiers differ from awk's: $(head -n 20 "$T/diff")"
echo "t_send_syncs: $n events sent after $syncs syncs of the WAL, the first before any event was sent"

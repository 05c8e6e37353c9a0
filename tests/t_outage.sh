#!/usr/bin/env bash
# A long Stripe outage: the double first refuses connections (stopped), then comes back answering
# 500s, then slowly, then healthily, while lines keep coming. The spool grows, the agent's memory
# does not (its RSS with 20,000 events pending is within a few MiB of its RSS with 2,000: the
# sender keeps a bounded window), everything drains once Stripe is back, each expected event is
# accepted exactly once, and for each (customer, event_name) in the order the spool holds them.
. "$(dirname "$0")/lib.sh"
lm_init outage
double_start

mkdir -p "$T/logs"
src=$LOGS/elastic_apache_logs.log
lines=$(wc -l < "$src")
: > "$T/logs/access.log"
# Two rules: the bytes of each 2xx answer, and one request per line: about 19,000 events.
write_config "$T/logmeter.conf"
sed -i 's|^state_dir = .*|&\nbatch_lines = 500|' "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$T/logs/access.log"
cat >> "$T/logmeter.conf" <<CONF
[rule hits]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" \d{3}\s
customer = ip
value = 1
CONF
apache_bytes_offsets "$src" > "$T/off_bytes"
LC_ALL=C awk '$9 ~ /^[0-9][0-9][0-9]$/ {print off+0} {off += length($0) + 1}' "$src" > "$T/off_hits"
total=$(( $(wc -l < "$T/off_bytes") + $(wc -l < "$T/off_hits") ))
[ "$total" -gt 18000 ] || fail "test bug: only $total expected events"

pending() {
	"$LOGMETER" status -c "$T/logmeter.conf" | sed -n 's/^events: pending \([0-9]*\),.*/\1/p'
}
pending_at_least() {
	[ "$(pending)" -ge "$1" ]
}
rss_kb() {
	awk '/^VmRSS:/ {print $2}' "/proc/$AGENT_PID/status"
}

# ---- Stripe refuses connections; lines arrive ----------------------------------------------------
double_stop
# Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) and would look like
# growth; without it ASan's allocator reuses memory like malloc does.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0" agent_start "$T/logmeter.conf"
head -n 1100 "$src" >> "$T/logs/access.log"
wait_until 30 pending_at_least 2000 || fail "only $(pending) events pending"
sleep 2 # a few retry rounds
rss1=$(rss_kb)
p1=$(pending)
tail -n +1101 "$src" | head -n $((lines - 1100 - 500)) >> "$T/logs/access.log"
wait_until 60 pending_at_least $((total - 1200)) || fail "only $(pending) events pending"
sleep 2
rss2=$(rss_kb)
p2=$(pending)
agent_running || fail "the agent died during the outage"
note "VmRSS $rss1 kB with $p1 events pending, $rss2 kB with $p2 pending"
# 18,000 more events held in memory would take 30 MiB (1.7 KB each); the spool's page caches
# (2 MiB per connection) may fill meanwhile.
[ $((rss2 - rss1)) -lt 8192 ] || fail "memory grew with the pending events: $rss1 kB -> $rss2 kB ($p1 -> $p2 pending)"
grep -q "Couldn't connect to server" "$T/agent.log" || fail "no connection was refused"

# ---- Stripe answers 500, then slowly, then well; the last lines arrive meanwhile --------------------
double_restart --faults '500*300,slow:300*40'
tail -n 500 "$src" >> "$T/logs/access.log"
wait_until 180 accepted_at_least "$total" || fail "stuck at $(accepted_count) of $total accepted"
assert_eq 300 "$(double_stat faults.500)" "500s answered"
assert_eq 40 "$(double_stat faults.slow)" "slow answers"
# The sender records deliveries in the spool up to a second after Stripe's answers.
all_delivered() {
	st=$("$LOGMETER" status -c "$T/logmeter.conf") &&
		grep -q "^events: pending 0, delivered $total, dead letters 0" <<<"$st"
}
wait_until 30 all_delivered || fail "status: $st"
agent_stop || fail "agent exited $?"

# ---- exactly once, and in order per customer and meter ---------------------------------------------
uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
{
	identifiers_of apache "$uid" bytes < "$T/off_bytes"
	identifiers_of apache "$uid" hits < "$T/off_hits"
} | sort > "$T/expected_ids"
cut -f1 "$T/accepted.tsv" | sort > "$T/accepted_ids"
assert_eq "$total" "$(sort -u "$T/expected_ids" | wc -l)" "expected identifiers are distinct"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/diff" || fail "accepted identifiers differ from the expected set: $(head "$T/diff")"
# The record lists events in the order the double accepted them; the spool gives each its id.
export_tsv "$T/logmeter.conf" > "$T/export.tsv" || fail "spool export exited $?"
"$PYTHON3" - "$T/export.tsv" "$T/accepted.tsv" <<'PY' || fail "events accepted out of order"
import sys
ids = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    ids[f[1]] = int(f[0])
last, bad, keys = {}, 0, set()
for line in open(sys.argv[2]):
    f = line.rstrip("\n").split("\t")
    key = (f[2], f[1])  # customer, event_name
    keys.add(key)
    i = ids[f[0]]
    if i <= last.get(key, 0):
        bad += 1
        if bad <= 5:
            print("out of order for %s: id %d after %d" % (key, i, last[key]))
    last[key] = i
print("%d (customer, event_name) pairs checked" % len(keys))
sys.exit(1 if bad else 0)
PY
assert_eq 0 "$(double_stat concurrency_violations)" "requests in flight at once for one customer and meter"
echo "t_outage: $total events exactly once and in order; VmRSS $rss1 kB at $p1 pending, $rss2 kB at $p2 pending"

#!/usr/bin/env bash
# Restart: the agent is killed with SIGKILL several times while it works through the real nginx log
# (while reading, and while sending), and started again. The identifiers the double accepted are
# exactly the expected set: none lost, none accepted twice.
. "$(dirname "$0")/lib.sh"
lm_init restart
# Some answers get lost after Stripe accepted the event, so that re-sends happen too.
double_start
double_faults_json '{"rate": 0.05, "kinds": ["drop_after", "500"], "seed": 7}'

mkdir -p "$T/logs"
cp "$LOGS/elastic_nginx_logs_prefix29480.log" "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
cat >> "$T/logmeter.conf" <<CONF
[rule downloads]
source = nginx
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET /downloads/product_2 
customer = ip
value = 1
CONF
# Small batches make a kill during reading land between commits.
sed -i 's/^\[agent\]$/[agent]\nbatch_lines = 50/' "$T/logmeter.conf"

LC_ALL=C awk '$7 == "/downloads/product_2" && $6 == "\"GET" {print off+0} {off += length($0) + 1}' "$T/logs/access.log" > "$T/off_downloads"
nginx_bytes_offsets "$T/logs/access.log" > "$T/off_bytes"
total=$(( $(wc -l < "$T/off_downloads") + $(wc -l < "$T/off_bytes") ))

kills=0
# 1: killed almost at once, likely while reading.
agent_start "$T/logmeter.conf"; sleep 0.3; agent_kill9; kills=$((kills + 1))
# 2..4: killed while sending, at growing counts of accepted events.
for at in 1500 5000 10000; do
	agent_start "$T/logmeter.conf"
	wait_until 120 accepted_at_least "$at" || fail "stuck below $at accepted events"
	agent_kill9; kills=$((kills + 1))
done
agent_once "$T/logmeter.conf" || fail "final run --once exited $?"

uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
{
	identifiers_of nginx "$uid" downloads < "$T/off_downloads"
	identifiers_of nginx "$uid" bytes < "$T/off_bytes"
} | sort > "$T/expected_ids"
cut -f1 "$T/accepted.tsv" | sort > "$T/accepted_ids"
assert_eq "$total" "$(sort -u "$T/expected_ids" | wc -l)" "expected identifiers are distinct"
diff -u "$T/expected_ids" "$T/accepted_ids" > "$T/diff" || fail "accepted identifiers differ from the expected set: $(head "$T/diff")"
st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending 0, delivered $total, dead letters 0" <<<"$st" || fail "status: $st"
echo "t_restart: $kills kills, $total events each accepted once; re-sends answered as replays or duplicates: $(( $(double_stat replays) + $(double_stat duplicates) ))"

#!/usr/bin/env bash
# `logmeter spool export` while the agent delivers events (docs/spool.md: "the export is a
# consistent snapshot even while the agent runs"). The export lists the states one after the
# other; the stop point export_state holds it after the pending events, while `run --once`
# delivers every one of them. Resumed, the export must still show each event once, in the state
# it had when the export began (pending), not a second time as delivered.
. "$(dirname "$0")/lib.sh"
lm_init export_snapshot
double_start

CONF=$T/logmeter.conf
mkdir -p "$T/logs"
sed -n 1,300p "$LOGS/elastic_apache_logs.log" >"$T/logs/access.log"
write_config "$CONF"
config_apache_bytes "$CONF" "$T/logs/access.log"
n=$(apache_bytes_count "$T/logs/access.log")

agent_once "$CONF" --no-send || fail "run --once --no-send failed"
assert_eq "$n" "$(export_count "$CONF" pending)" "pending events before the export"

LOGMETER_STOP_AT=export_state:1 "$LOGMETER" spool export -c "$CONF" >"$T/export.jsonl" \
	2>"$T/export.err" &
EXPORT_PID=$!
stopped() {
	grep -q "stop point export_state reached (1)" "$T/export.err" &&
		[ "$(awk '{ print $3 }' /proc/"$EXPORT_PID"/stat 2>/dev/null)" = T ]
}
wait_until 60 stopped || {
	kill "$EXPORT_PID" 2>/dev/null || true
	fail "the export did not stop after the pending events: $(cat "$T/export.err")"
}
agent_once "$CONF" || fail "run --once failed"
assert_eq "$n" "$(accepted_count)" "events the double accepted"
kill -CONT "$EXPORT_PID"
rc=0
wait "$EXPORT_PID" || rc=$?
assert_eq 0 "$rc" "spool export's exit status ($(cat "$T/export.err"))"

# Every event once, pending as when the export began, with the identifiers awk and
# tests/identifiers.py give the log's lines.
"$PYTHON3" -c '
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print(e["identifier"], e["state"])
' "$T/export.jsonl" | sort >"$T/exported"
apache_bytes_ids "$CONF" "$T/logs/access.log" | sed 's/$/ pending/' >"$T/expected"
diff -u "$T/expected" "$T/exported" >"$T/export.diff" ||
	fail "the export is not the spool as it was when it began ($(wc -l <"$T/export.jsonl") lines \
for $n events): $(head -n 20 "$T/export.diff")"
note "ok: $n events exported once each, as pending, while run --once delivered them"

#!/usr/bin/env bash
# run --once --no-send: the real nginx log is read and spooled through the agent's own ingest
# half, nothing is sent and no API key is read; a later run --once delivers exactly those events.
. "$(dirname "$0")/lib.sh"
lm_init no_send
double_start

mkdir -p "$T/logs"
cp "$LOGS/elastic_nginx_logs_prefix29480.log" "$T/logs/access.log"
write_config "$T/logmeter.conf"
config_nginx_bytes "$T/logmeter.conf" "$T/logs/access.log"
n=$(nginx_bytes_offsets "$T/logs/access.log" | wc -l)
[ "$n" -gt 1000 ] || fail "test bug: only $n expected events"

rc=0
"$LOGMETER" run --no-send -c "$T/logmeter.conf" 2>"$T/usage.err" || rc=$?
assert_eq 2 "$rc" "run --no-send without --once"

# No key: --no-send must not need one.
mv "$T/stripe.key" "$T/stripe.key.away"
agent_once "$T/logmeter.conf" --no-send || fail "run --once --no-send exited $?"
assert_eq 0 "$(double_stat requests)" "requests the double saw"
uid=$(file_uid "$T/logmeter.conf" "$T/logs/access.log")
nginx_bytes_offsets "$T/logs/access.log" | identifiers_of nginx "$uid" bytes | sort >"$T/expected_ids"
export_ids "$T/logmeter.conf" pending >"$T/pending_ids"
diff -u "$T/expected_ids" "$T/pending_ids" >"$T/diff" ||
	fail "spooled events differ from awk's: $(head -n 20 "$T/diff")"
st=$("$LOGMETER" status -c "$T/logmeter.conf")
grep -q "pending $n, delivered 0" <<<"$st" || fail "status after --no-send: $st"

# Read again: nothing new, and still nothing sent.
agent_once "$T/logmeter.conf" --no-send || fail "second run --once --no-send exited $?"
assert_eq "$n" "$(export_ids "$T/logmeter.conf" pending | wc -l)" "pending events after a second --no-send"

mv "$T/stripe.key.away" "$T/stripe.key"
agent_once "$T/logmeter.conf" || fail "run --once exited $?"
double_accepted_ids >"$T/accepted_ids"
diff -u "$T/expected_ids" "$T/accepted_ids" >"$T/diff" ||
	fail "accepted identifiers differ from awk's: $(head -n 20 "$T/diff")"
echo "t_no_send: $n events spooled without sending, then delivered once each"

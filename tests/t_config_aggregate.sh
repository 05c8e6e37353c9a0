#!/usr/bin/env bash
# Settings that are valid one by one but likely not what was meant. Refused with file and line
# (exit 2, by `check` and `run` alike): aggregate_grace in a rule that does not aggregate, a
# constant value of 0 in one that does (its windows would bill nothing), and timestamp_format in
# a rule without timestamp (its events would be stamped with the read time). Warned about (`check`
# and `run`): api = v2 with api_base pointed elsewhere but meter_events_base left at Stripe's,
# which would send the events to real Stripe. Warned about by `check`: min_free_bytes above what
# the state directory's file system has free (reading would pause at once).
. "$(dirname "$0")/lib.sh"
lm_init config_aggregate
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
printf '%s cus_A 1\n' "$(date +%s)" > "$log"

# refused CONF KEY: check and run --once exit 2 naming CONF and the line of KEY (grep -n).
refused() {
	local conf=$1 key=$2 line rc out
	line=$(grep -n "^$key = " "$conf" | cut -d: -f1)
	[ -n "$line" ] || fail "test bug: no $key in $conf"
	rc=0; out=$("$LOGMETER" check -c "$conf" 2>&1) || rc=$?
	assert_eq 2 "$rc" "check of $key"
	grep -q "^$conf:$line: key '$key': \[rule usage\]" <<<"$out" || fail "check of $key: $out"
	rc=0; out=$("$LOGMETER" run --once -c "$conf" 2>&1) || rc=$?
	assert_eq 2 "$rc" "run --once of $key"
	grep -q "$conf:$line: key '$key'" <<<"$out" || fail "run --once of $key: $out"
}

write_config "$T/grace.conf"
config_epoch_rule "$T/grace.conf" "$log" "aggregate_grace = 5s"
refused "$T/grace.conf" aggregate_grace
# With aggregate = 0 written out, too.
sed -i 's/^aggregate_grace = 5s$/aggregate = 0\n&/' "$T/grace.conf"
refused "$T/grace.conf" aggregate_grace

write_config "$T/zero.conf"
config_epoch_rule "$T/zero.conf" "$log" "aggregate = 10s"
sed -i 's/^value = v$/value = 0.000/' "$T/zero.conf"
refused "$T/zero.conf" value
# A constant other than zero, and 0 without aggregate, are fine.
sed 's/^value = 0.000$/value = 0.5/' "$T/zero.conf" > "$T/half.conf"
"$LOGMETER" check -c "$T/half.conf" > "$T/half.out" 2>&1 || fail "check of value = 0.5: $(cat "$T/half.out")"
sed '/^aggregate = 10s$/d' "$T/zero.conf" > "$T/plain.conf"
"$LOGMETER" check -c "$T/plain.conf" > "$T/plain.out" 2>&1 || fail "check of value = 0 without aggregate: $(cat "$T/plain.out")"

# timestamp_format in a rule without timestamp: its events would be stamped with the time each
# line is read, the format ignored.
write_config "$T/stamp.conf"
config_epoch_rule "$T/stamp.conf" "$log"
sed -i '/^timestamp = t$/d' "$T/stamp.conf"
refused "$T/stamp.conf" timestamp_format

# min_free_bytes above what the state directory's file system has free (python's os.statvfs):
# check warns that reading would pause at once, or never start; at the default 16M, no warning.
write_config "$T/room.conf"
config_epoch_rule "$T/room.conf" "$log"
free=$("$PYTHON3" -c 'import os, sys; v = os.statvfs(sys.argv[1]); print(v.f_bavail * v.f_frsize)' "$T/state")
if [ "$free" -lt $((1024 << 30)) ]; then
	sed -i 's/^\[agent\]$/[agent]\nmin_free_bytes = 1024G/' "$T/room.conf"
	out=$("$LOGMETER" check -c "$T/room.conf" 2>&1) || fail "check with min_free_bytes = 1024G exited $?: $out"
	grep -q "^warning: \[agent\] min_free_bytes is 1024.0 GiB, more than .* $T/state.*: \`run\` would" <<<"$out" ||
		fail "check did not warn of min_free_bytes: $out"
	sed -i '/^min_free_bytes = /d' "$T/room.conf"
else
	note "the file system has 1 TiB free: min_free_bytes cannot be set above it"
fi
if [ "$free" -gt $((64 << 20)) ]; then
	out=$("$LOGMETER" check -c "$T/room.conf" 2>&1) || fail "check of room.conf exited $?: $out"
	if grep -q "min_free_bytes" <<<"$out"; then fail "a min_free_bytes warning with room: $out"; fi
fi

# api = v2, api_base at the double, meter_events_base left at Stripe's: a warning with the line
# of api_base from check and from run (--no-send: nothing may go to real Stripe here).
write_config "$T/v2.conf"
config_epoch_rule "$T/v2.conf" "$log"
sed -i 's/^max_requests_per_second = .*/&\napi = v2/' "$T/v2.conf"
line=$(grep -n '^api_base = ' "$T/v2.conf" | cut -d: -f1)
warning="warning: $T/v2.conf:$line: api_base is $DOUBLE_URL but meter_events_base is left at Stripe's https://meter-events.stripe.com"
out=$("$LOGMETER" check -c "$T/v2.conf" 2>&1) || fail "check of the v2 configuration exited $?: $out"
grep -qF "$warning" <<<"$out" || fail "check did not warn of meter_events_base: $out"
rc=0
timeout 60 "$LOGMETER" run --once --no-send -c "$T/v2.conf" > "$T/run.out" 2>&1 || rc=$?
assert_eq 0 "$rc" "run --once --no-send"
grep -qF "$warning" "$T/run.out" || fail "run did not warn of meter_events_base: $(cat "$T/run.out")"
# Both at the double (config_v2): no warning.
write_config "$T/v2ok.conf"
config_epoch_rule "$T/v2ok.conf" "$log"
config_v2 "$T/v2ok.conf"
out=$("$LOGMETER" check -c "$T/v2ok.conf" 2>&1) || fail "check of config_v2 exited $?: $out"
if grep -q "meter_events_base is left" <<<"$out"; then fail "a warning with both bases set: $out"; fi

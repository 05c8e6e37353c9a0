#!/usr/bin/env bash
# A rule whose event_name changes (a reload, or a restart with another configuration) while one
# of its aggregation windows is open: the lines read under the new configuration are billed to
# the new meter, as every line read after a reload gets the new rules (docs/architecture.md,
# "Reload"). They went into the open window, which had taken its event name from its first line,
# and were billed to the old meter with it: to a meter the operator had just replaced, a dead
# letter that `replay` sends to the same old meter again.
. "$(dirname "$0")/lib.sh"
lm_init window_reload_meter
DOUBLE_METERS="old_meter new_meter"
double_start

mkdir -p "$T/logs"
log="$T/logs/app.log"
# Ten minutes ago: the window is due as soon as a sender looks at it.
ts=$(($(date +%s) - 600))
printf '%s cus_A %d\n' "$ts" 1 "$ts" 2 "$ts" 3 >"$log"
write_config "$T/base.conf"
rule() {
	cat "$T/base.conf"
	cat <<CONF
[source app]
path = $log
[rule usage]
source = app
event_name = $1
pattern = ^(?<t>\d+) (?<c>cus_\w+) (?<v>\d+)$
customer = c
value = v
timestamp = t
timestamp_format = epoch
aggregate = 60s
CONF
}
rule old_meter >"$T/old.conf"
rule new_meter >"$T/new.conf"
# The first lines into the window, which nothing closes (--no-send runs no sender).
timeout 60 "$LOGMETER" run --once --no-send -c "$T/old.conf" >>"$T/agent.out" 2>>"$T/agent.log" ||
	fail "run --once --no-send exited $?"
assert_eq 1 "$("$LOGMETER" spool export -c "$T/old.conf" --windows | grep -c '"state": *"open"')" \
	"open windows after the first run"
printf '%s cus_A %d\n' "$ts" 10 "$ts" 20 >>"$log"
agent_once "$T/new.conf" || fail "run --once exited $?"

# Each line's value, by the meter its configuration named: from the log and the configurations.
expect_old=$(head -n 3 "$log" | awk '{ s += $3 } END { print s }')
expect_new=$(tail -n 2 "$log" | awk '{ s += $3 } END { print s }')
got() { awk -F'\t' -v m="$1" '$2 == m { s += $4 } END { print s + 0 }' "$T/accepted.tsv"; }
assert_eq "$expect_old" "$(got old_meter)" "usage accepted for old_meter"
assert_eq "$expect_new" "$(got new_meter)" "usage accepted for new_meter"
assert_eq 0 "$(double_stat duplicates)" "events sent twice"
note "old_meter $(got old_meter), new_meter $(got new_meter): each line billed to its own rule's meter"

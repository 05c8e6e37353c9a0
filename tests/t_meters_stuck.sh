#!/usr/bin/env bash
# A list of meters that says there is more and gives no meter to go on from (has_more true, data
# empty, after a first page): following has_more asks the same page again and again, for ever,
# and the agent's sender, which reads the meters before it sends, never sends. `check --stripe`
# must refuse such a list after that page, and the agent must send its events all the same. A
# list whose every page is the first one (a cache that ignores starting_after) is refused too.
# The double ends its hostile list after 200 empty pages, so that a client that follows it ends
# too: how many pages were asked for tells, without a clock, whether it stopped at once.
. "$(dirname "$0")/lib.sh"
lm_init meters_stuck
DOUBLE_METERS="bandwidth_bytes hits:stripe_customer_id:value:count"
stuck=200
double_start --meters-page-max 1 --meters-stuck "$stuck"

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 40 "$LOGS/elastic_apache_logs.log" >"$log"
conf="$T/logmeter.conf"
write_config "$conf"
config_apache_bytes "$conf" "$log"

# check_refused WHAT REASON: check --stripe asks for at most 2 pages of a list that WHAT, exits
# non-zero (the account could not be read) and says REASON (a grep pattern) on stderr.
check_refused() {
	local rc=0 out pages
	out=$("$LOGMETER" check --stripe -c "$conf" 2>"$T/check.err") || rc=$?
	pages=$(double_stat meter_lists)
	[ "$pages" -le 2 ] || fail "check --stripe asked for $pages pages of a list that $1"
	[ "$rc" -ne 0 ] || fail "check --stripe exited 0 on a list that $1: $out"
	grep -q "$2" "$T/check.err" || fail "check --stripe did not say why: $(cat "$T/check.err") $out"
}

# check --stripe: the first page (one meter, has_more), then one empty page with has_more is
# enough to know the list goes nowhere: an error, exit 1 (the account could not be read).
check_refused "gave nothing after the first (the double's $stuck empty pages with has_more)" \
	'has_more without a new meter id'

# The agent at start: the same list; it warns and sends every event, each once.
before=$(double_stat meter_lists)
rc=0
agent_once "$conf" || rc=$?
assert_eq 0 "$rc" "run --once with an account whose meter list cannot be read"
pages=$(($(double_stat meter_lists) - before))
[ "$pages" -le 2 ] || fail "the agent asked for $pages pages of the list at start"
grep -q 'cannot hold the rules against the account.s meters (.*has_more without a new meter id' "$T/agent.log" ||
	fail "the agent did not warn: $(tail -n 20 "$T/agent.log")"
want=$(apache_bytes_count "$log")
[ "$want" -gt 0 ] || fail "no event in the test log"
assert_accepted_once "$conf" "$log"

# A cache that ignores starting_after: every page is the first one again, with has_more. The
# second page ends at the meter it was asked to start after: refused there too.
double_stop
double_start --meters-page-max 1 --meters-stuck "$stuck:first"
write_config "$conf"
config_apache_bytes "$conf" "$log"
check_refused "repeats its first page" \
	'has_more without a new meter id to go on from (the page ends at the meter it was asked to start after)'
note "an empty page with has_more, and a first page repeated: refused at the second page; $want events sent once"

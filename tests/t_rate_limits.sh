#!/usr/bin/env bash
# Rate limits as Stripe sets them (docs/stripe-contract.md): the default rate follows the key
# (live 1000/s, test 25/s, a live key for a connected account 100/s), `check` and `status` say
# which applies and why; 429 and 400 rate_limit are retried, never dead-lettered; a 429 halves the
# agent's whole sending rate, which climbs back while requests succeed; a Retry-After holds every
# request that long. Against a double that limits the account's rate, everything goes through
# exactly once.
. "$(dirname "$0")/lib.sh"
lm_init rate_limits
double_start --faults '429,400rl,429ra:30'

mkdir -p "$T/logs"
log="$T/logs/access.log"
head -n 200 "$LOGS/elastic_apache_logs.log" > "$log"
write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$log"
conf="$T/logmeter.conf"

# The rate that applies, as check says.
rate_line() { "$LOGMETER" check -c "$conf" | grep '^rate: '; }
assert_eq "rate: up to 1000 requests/s (max_requests_per_second)" "$(rate_line)" "configured rate"
sed -i '/^max_requests_per_second = /d' "$conf"
assert_eq "rate: up to 25 requests/s (auto: test key (sk_test_...): Stripe's test-mode limit)" \
	"$(rate_line)" "rate of a test key"
cp "$T/stripe.key" "$T/stripe.key.test"
printf 'sk_live_%s\n' "$(_lm_random)" > "$T/stripe.key"
assert_eq "rate: up to 1000 requests/s (auto: live key (sk_live_...): Stripe's live-mode limit for meter events)" \
	"$(rate_line)" "rate of a live key"
sed -i 's/^\[stripe\]$/[stripe]\naccount = acct_1Tst2/' "$conf"
assert_eq "rate: up to 100 requests/s (auto: live key (sk_live_...) for a connected account: Stripe's Connect limit)" \
	"$(rate_line)" "rate of a live key for a connected account"
! grep -q "$(cut -c9- "$T/stripe.key")" <(rate_line) || fail "check shows the key"
sed -i '/^account = /d' "$conf"
cp "$T/stripe.key.test" "$T/stripe.key"
st=$("$LOGMETER" status -c "$conf" 2>&1 || true)

# The agent at 40/s: the 429 halves the rate, the 400 rate_limit is retried, the Retry-After of
# 30 s holds every request; status shows both while the hold lasts (30 s, so that a status
# slowed by a loaded machine still finds the hold: 10 s did not, once, under the sanitizers).
sed -i 's/^\[stripe\]$/[stripe]\nmax_requests_per_second = 40/' "$conf"
agent_start "$conf"
wait_until 30 eval '[ "$(double_stat faults_pending)" = 0 ]' || fail "the double's faults were not met"
holding() { "$LOGMETER" status -c "$conf" > "$T/status" 2>&1 && grep -q '^sender: waiting until .*as Stripe asked (Retry-After)' "$T/status"; }
wait_until 30 holding || { tr -s " " < "$T/state/agent.state" >&2; fail "status did not show the Retry-After hold: $(cat "$T/status")"; }
grep -q '^rate: up to 40 requests/s (max_requests_per_second); now 20.0/s, lowered after a 429 at ' "$T/status" ||
	fail "status does not show the lowered rate: $(cat "$T/status")"
grep -q 'sending rate lowered to 20.0/s of 40/s' "$T/agent.log" || fail "the log does not say the rate was lowered"
n=$(apache_bytes_count "$log")
wait_until 90 accepted_at_least "$n" || fail "only $(accepted_count) of $n accepted"
agent_stop || fail "agent exited $? on SIGTERM"
st=$("$LOGMETER" status -c "$conf")
grep -q "pending 0, delivered $n, dead letters 0, unsure 0" <<<"$st" || fail "status: $st"

# A double that holds the account to 25 requests a second, an agent allowed 200: the 429s bring
# the agent's rate down; nothing is lost or sent twice.
double_restart --rate-limit 25
head -n 600 "$LOGS/elastic_apache_logs.log" | tail -n 400 >> "$log"
sed -i 's/^max_requests_per_second = .*/max_requests_per_second = 200/' "$conf"
agent_once "$conf" || fail "run --once exited $?"
[ "$(double_stat rate_limited)" -gt 0 ] || fail "the double never rate-limited the agent"
grep -q 'sending rate lowered to' "$T/agent.log" || fail "the rate was not lowered"
assert_accepted_once "$conf" "$log"
st=$("$LOGMETER" status -c "$conf")
grep -q "dead letters 0, unsure 0" <<<"$st" || fail "status: $st"
note "$(apache_bytes_count "$log") events accepted once; $(double_stat rate_limited) requests rate-limited by the double"

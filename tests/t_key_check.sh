#!/usr/bin/env bash
# What `check` says of an unusable API key, and where the key comes from (docs/security.md):
#   - a key `run` refuses makes `check` exit 2 with the error and no "OK" line;
#   - a key Stripe would refuse with a 401 is refused at once: whitespace inside, a publishable
#     key (pk_), a pasted "NAME=sk_...", a key file with a second line, blanks before or after
#     the key on its line, a prefix alone (sk_test_), a character no Stripe key has;
#   - an empty LOGMETER_STRIPE_API_KEY is no key: with a key file it is ignored with a warning,
#     without one `check` and `run` refuse it (exit 2);
#   - a key Stripe refuses (401) is an error even with nothing to send: `run --once` exits 3,
#     status says so and is degraded; the agent pauses, and resumes once the key is fixed;
#   - a key in LOGMETER_STRIPE_API_KEY wins over the key file and the systemd credential (the
#     documented precedence), and `check` and `run` say so, naming the file that is not read.
. "$(dirname "$0")/lib.sh"
lm_init key_check
double_start
write_config "$T/logmeter.conf"
good=$(cat "$T/stripe.key")

# refused NAME PATTERN: check exits 2, prints PATTERN and no OK line.
refused() {
	local rc=0
	"$LOGMETER" check -c "$T/logmeter.conf" > "$T/check.out" 2> "$T/check.err" || rc=$?
	assert_eq 2 "$rc" "$1: check exit status"
	grep -q -- "$2" "$T/check.err" || fail "$1: no '$2' in: $(cat "$T/check.err")"
	! grep -q "OK" "$T/check.out" || fail "$1: check printed OK: $(cat "$T/check.out")"
	! grep -qF "$good" "$T/check.out" "$T/check.err" || fail "$1: the key was printed"
}
key() { printf '%s\n' "$@" > "$T/stripe.key"; }

key 'sk_test_abc def'
refused whitespace "contains whitespace, control or non-ASCII characters"
key pk_test_51AbCdEf
refused publishable "a publishable key (pk_...) cannot send meter events"
key "STRIPE_KEY=$good"
refused "a pasted assignment" "is not a secret (sk_...) or restricted (rk_...) key"
key "$good" "sk_test_the_old_one"
refused "two lines" "has more than one line"
key " $good"
refused "a leading space" "key file $T/stripe.key has blanks before or after the key on its line"
key "sk_test_"
refused "the prefix alone" "key from $T/stripe.key is only the prefix sk_test_ with nothing after it"
key "${good}\""
refused "a pasted quote" "has a character that is not a letter, a digit or _ (at byte $((${#good} + 1)))"

key "$good" ""
"$LOGMETER" check -c "$T/logmeter.conf" > "$T/check.out" 2> "$T/check.err" || fail "check refused a good key: $(cat "$T/check.err")"
grep -q ": OK: " "$T/check.out" || fail "no OK line for a good key"
! grep -q "api_key_file" "$T/check.err" || fail "a shadowing warning without the variable: $(cat "$T/check.err")"

note "the environment wins over the key file, and says so"
key sk_test_rotated_but_shadowed
LOGMETER_STRIPE_API_KEY=$good "$LOGMETER" check -c "$T/logmeter.conf" > "$T/check.out" 2> "$T/check.err" ||
	fail "check with the variable: $(cat "$T/check.err")"
grep -q "warning: the Stripe API key comes from the environment variable LOGMETER_STRIPE_API_KEY, which wins over \[stripe\] api_key_file $T/stripe.key" "$T/check.err" ||
	fail "no warning that the key file is not read: $(cat "$T/check.err")"
LOGMETER_STRIPE_API_KEY=$good agent_once "$T/logmeter.conf" || fail "run --once with the variable exited $?"
grep -q "warning: the Stripe API key comes from the environment variable LOGMETER_STRIPE_API_KEY, which wins over \[stripe\] api_key_file" "$T/agent.log" ||
	fail "run did not warn: $(cat "$T/agent.log")"

note "an empty variable: the key file is read, with a warning; without a key file, refused"
key "$good"
LOGMETER_STRIPE_API_KEY= "$LOGMETER" check -c "$T/logmeter.conf" > "$T/check.out" 2> "$T/check.err" ||
	fail "check with an empty variable and a key file: $(cat "$T/check.err")"
grep -q ": OK: " "$T/check.out" || fail "no OK line with an empty variable and a key file"
grep -q "warning: the environment variable LOGMETER_STRIPE_API_KEY is set but empty: ignored, the Stripe API key is read from \[stripe\] api_key_file $T/stripe.key" "$T/check.err" ||
	fail "no warning of the empty variable: $(cat "$T/check.err")"
: > "$T/agent.log"
LOGMETER_STRIPE_API_KEY= agent_once "$T/logmeter.conf" || fail "run --once with an empty variable exited $?"
grep -q "warning: the environment variable LOGMETER_STRIPE_API_KEY is set but empty: ignored" "$T/agent.log" ||
	fail "run did not warn of the empty variable: $(cat "$T/agent.log")"
mv "$T/stripe.key" "$T/stripe.key.away"
LOGMETER_STRIPE_API_KEY= refused "an empty variable without a key file" \
	"no Stripe API key: the environment variable LOGMETER_STRIPE_API_KEY is set but empty, and there is no key file $T/stripe.key"
rc=0
LOGMETER_STRIPE_API_KEY= agent_once "$T/logmeter.conf" || rc=$?
assert_eq 2 "$rc" "run --once with an empty variable and no key file"
mv "$T/stripe.key.away" "$T/stripe.key"

note "the same over a systemd credential"
mkdir -p "$T/creds"
(umask 077 && printf 'sk_test_credential\n' > "$T/creds/stripe.key")
CREDENTIALS_DIRECTORY=$T/creds LOGMETER_STRIPE_API_KEY=$good "$LOGMETER" check -c "$T/logmeter.conf" > "$T/check.out" 2> "$T/check.err" ||
	fail "check with the credential: $(cat "$T/check.err")"
grep -q "which wins over the systemd credential $T/creds/stripe.key" "$T/check.err" ||
	fail "no warning naming the credential: $(cat "$T/check.err")"

note "a key Stripe refuses (401) with nothing to send: an error, not a warning"
printf 'sk_test_refused_%s\n' "$(_lm_random)" > "$T/stripe.key"
refused_key=$(cat "$T/stripe.key")
: > "$T/agent.log"
rc=0
agent_once "$T/logmeter.conf" || rc=$?
assert_eq 3 "$rc" "run --once with a key Stripe refuses and an empty queue"
grep -q "error: Stripe refused the API key (GET /v1/billing/meters: HTTP 401" "$T/agent.log" ||
	fail "run --once did not say Stripe refused the key: $(cat "$T/agent.log")"
assert_eq 0 "$(grep -cF "$refused_key" "$T/agent.log" || true)" "the refused key in the log"
rc=0
"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status.out" 2>&1 || rc=$?
assert_eq 1 "$rc" "status after run --once stopped by a refused key"
grep -q "^health: degraded: the last run stopped with sending paused since .*: Stripe refused the API key" "$T/status.out" ||
	fail "status does not say the key was refused: $(cat "$T/status.out")"
# The agent: paused, status degraded while the key is refused, and sending again once it is fixed
# (auth_pause is 500 ms here), though nothing is pending.
agent_start "$T/logmeter.conf"
paused() {
	"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status.out" 2>&1
	[ $? = 1 ] && grep -q "^sender: paused since .*: Stripe refused the API key" "$T/status.out" &&
		grep -q "^health: degraded: sending paused since .*: Stripe refused the API key" "$T/status.out"
}
wait_until 30 paused || fail "status of an agent whose key Stripe refuses: $(cat "$T/status.out")"
# The refused key is what the operator must act on: the last error names it while it lasts, in
# the text and in the JSON (docs/status-json.md), not the last event's error (none here). Waited
# for, as the pause: the request that tries the key again every auth_pause is sent unpaused.
refused_named() {
	"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status.out" 2>&1
	grep -q "^sender: paused since .*: Stripe refused the API key" "$T/status.out" &&
		grep -q "^last error: Stripe refused the API key: .*HTTP 401" "$T/status.out" || return 1
	"$LOGMETER" status -c "$T/logmeter.conf" --json > "$T/status.json" 2>/dev/null
	"$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = d["last_error"] or ""
sys.exit(not (d["sender"]["state"] == "paused-auth" and
              t.startswith("Stripe refused the API key: ") and "HTTP 401" in t))' "$T/status.json"
}
wait_until 30 refused_named ||
	fail "status's last error while the key is refused: $(grep '^last error' "$T/status.out"); --json: $(grep '"last_error"' "$T/status.json")"
printf '%s\n' "$good" > "$T/stripe.key"
healthy() {
	"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status.out" 2>&1 &&
		grep -q "^sender: sending" "$T/status.out" && grep -q "^health: ok" "$T/status.out"
}
wait_until 30 healthy || fail "the agent stayed paused after the key was fixed: $(cat "$T/status.out")"
# Sending again: the refusal is over (the agent said so: no request with the old key is in
# flight any more), and the last error is the events' own again (none).
key_works() { grep -q "Stripe takes the API key again" "$T/agent.log"; }
wait_until 30 key_works || fail "the agent did not say the key works again"
"$LOGMETER" status -c "$T/logmeter.conf" > "$T/status.out" 2>&1 || fail "status once the key works exited $?: $(cat "$T/status.out")"
grep -qx "last error: none" "$T/status.out" ||
	fail "status's last error once the key works: $(grep '^last error' "$T/status.out")"
"$LOGMETER" status -c "$T/logmeter.conf" --json > "$T/status.json" || fail "status --json once the key works exited $?"
"$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["last_error"] is None, d["last_error"]' "$T/status.json" || fail "status --json's last_error once the key works"
agent_stop || fail "agent exited $? on SIGTERM"
grep -q "Stripe takes the API key again" "$T/agent.log" || fail "the agent did not say the key works again"
echo "t_key_check: unusable keys refused by check without OK; the variable's precedence warned about; a key Stripe refuses is an error with nothing to send"

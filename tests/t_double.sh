#!/bin/bash
# The Stripe double itself, driven with curl: the other integration tests rely on it behaving like
# Stripe's meter event API as Stripe documents it (docs/stripe-contract.md gives the sources).
set -eu
. "$(dirname "$0")/lib.sh"
lm_init double

double_start

# req NAME [curl args...]: POST a meter event; the status goes to $T/NAME.status, headers to
# $T/NAME.h, body to $T/NAME.b; curl's exit code to $T/NAME.rc.
req() {
	local name=$1 rc=0
	shift
	curl -sS --noproxy '*' --max-time 60 -o "$T/$name.b" -D "$T/$name.h" -w '%{http_code}' \
		"$@" "$DOUBLE_URL/v1/billing/meter_events" >"$T/$name.status" 2>"$T/$name.err" ||
		rc=$?
	echo "$rc" >"$T/$name.rc"
}

# get NAME PATH [curl args]: like req, for a GET of PATH.
get() {
	local name=$1 path=$2 rc=0
	shift 2
	curl -sS --noproxy '*' --max-time 60 -o "$T/$name.b" -D "$T/$name.h" -w '%{http_code}' \
		"$@" "$DOUBLE_URL$path" >"$T/$name.status" 2>"$T/$name.err" || rc=$?
	echo "$rc" >"$T/$name.rc"
}

status() { cat "$T/$1.status"; }

# header NAME H: the value of header H (case-insensitive) in response NAME, or empty.
header() {
	tr -d '\r' <"$T/$1.h" | awk -v h="$2" 'BEGIN { h = tolower(h) ":" }
		tolower(substr($0, 1, length(h))) == h { sub(/^[^:]*:[ \t]*/, ""); print; exit }'
}

# field NAME PATH: a field of the JSON body of response NAME (dotted path).
field() {
	"$PYTHON3" -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)' "$T/$1.b" "$2"
}

now=$(date +%s)
auth=(-H "Authorization: Bearer $API_KEY")
ev() { # ev IDENTIFIER [VALUE]: the form parameters of a valid event
	echo "event_name=bandwidth_bytes&identifier=$1&timestamp=$now&payload%5Bstripe_customer_id%5D=cus_A&payload[value]=${2:-42}"
}

# A wrong key: 401, and only the last 4 characters of the given key in the message.
req bad_key -H "Authorization: Bearer sk_test_wrongkey1234" --data "$(ev id-bad-key)"
assert_eq 401 "$(status bad_key)" "wrong key status"
assert_eq invalid_request_error "$(field bad_key error.type)" "wrong key error type"
msg=$(field bad_key error.message)
case $msg in
"Invalid API Key provided: "*1234) ;;
*) fail "wrong key message: $msg" ;;
esac
case $msg in *wrongkey*) fail "the 401 message leaks the key: $msg" ;; esac
req no_key --data "$(ev id-no-key)"
assert_eq 401 "$(status no_key)" "missing key status"

# A valid event: 200 with the billing.meter_event, and one record line.
req ok1 "${auth[@]}" -H 'Idempotency-Key: key-1' --data "$(ev id-1 42)"
assert_eq 200 "$(status ok1)" "valid event status"
assert_eq billing.meter_event "$(field ok1 object)" "object"
assert_eq id-1 "$(field ok1 identifier)" "identifier"
assert_eq bandwidth_bytes "$(field ok1 event_name)" "event_name"
assert_eq "$now" "$(field ok1 timestamp)" "timestamp"
assert_eq false "$(field ok1 livemode)" "livemode"
assert_eq '{"stripe_customer_id": "cus_A", "value": "42"}' "$(field ok1 payload)" "payload"
[ -n "$(header ok1 Request-Id)" ] || fail "no Request-Id header"
[ -n "$(header ok1 Content-Length)" ] || fail "no Content-Length header"
assert_eq 1 "$(wc -l <"$T/accepted.tsv")" "record lines after one event"
expected=$(printf 'id-1\tbandwidth_bytes\tcus_A\t42\t%s\tkey-1' "$now")
assert_eq "$expected" "$(cut -f1-6 "$T/accepted.tsv")" "record line"

# The same identifier again (another key): 400 "already exists", Stripe-Should-Retry: false.
req dup "${auth[@]}" -H 'Idempotency-Key: key-dup' --data "$(ev id-1 42)"
assert_eq 400 "$(status dup)" "duplicate status"
assert_eq "An event already exists with identifier id-1." "$(field dup error.message)" \
	"duplicate message"
assert_eq invalid_request_error "$(field dup error.type)" "duplicate type"
assert_eq false "$(header dup Stripe-Should-Retry)" "duplicate Stripe-Should-Retry"

# The first key again with the same parameters: the stored 200, replayed, not recorded again.
req replay "${auth[@]}" -H 'Idempotency-Key: key-1' --data "$(ev id-1 42)"
assert_eq 200 "$(status replay)" "replay status"
assert_eq true "$(header replay Idempotent-Replayed)" "Idempotent-Replayed"
assert_eq "$(header ok1 Request-Id)" "$(header replay Request-Id)" "replayed Request-Id"
assert_eq id-1 "$(field replay identifier)" "replayed identifier"
assert_eq 1 "$(wc -l <"$T/accepted.tsv")" "record lines after the replay"

# The same key with other parameters: 400 idempotency_error.
req mismatch "${auth[@]}" -H 'Idempotency-Key: key-1' --data "$(ev id-1 43)"
assert_eq 400 "$(status mismatch)" "idempotency mismatch status"
assert_eq idempotency_error "$(field mismatch error.type)" "idempotency mismatch type"

# Parameter order does not matter for a replay.
req replay2 "${auth[@]}" -H 'Idempotency-Key: key-1' \
	--data "payload[value]=42&payload[stripe_customer_id]=cus_A&timestamp=$now&identifier=id-1&event_name=bandwidth_bytes"
assert_eq 200 "$(status replay2)" "reordered replay status"

# Unknown meter.
req nometer "${auth[@]}" --data "event_name=nope&identifier=id-x&payload[stripe_customer_id]=cus_A&payload[value]=1"
assert_eq 400 "$(status nometer)" "unknown meter status"
assert_eq 'No active meter found for event name "nope".' "$(field nometer error.message)" \
	"unknown meter message"

# A timestamp older than 35 days, and one too far in the future.
old=$((now - 36 * 86400))
req old "${auth[@]}" --data "event_name=bandwidth_bytes&identifier=id-old&timestamp=$old&payload[stripe_customer_id]=cus_A&payload[value]=1"
assert_eq 400 "$(status old)" "old timestamp status"
case $(field old error.message) in
"The event timestamp cannot be more than 35 days in past."*) ;;
*) fail "old timestamp message: $(field old error.message)" ;;
esac
assert_eq timestamp "$(field old error.param)" "old timestamp param"
future=$((now + 3600))
req future "${auth[@]}" --data "event_name=bandwidth_bytes&identifier=id-future&timestamp=$future&payload[stripe_customer_id]=cus_A&payload[value]=1"
assert_eq 400 "$(status future)" "future timestamp status"

# An unknown parameter.
req unknown "${auth[@]}" --data "$(ev id-u)&colour=blue"
assert_eq 400 "$(status unknown)" "unknown parameter status"
assert_eq "Received unknown parameter: colour" "$(field unknown error.message)" \
	"unknown parameter message"
assert_eq colour "$(field unknown error.param)" "unknown parameter param"

# Missing customer key, a bad value, too many significant digits.
req nocust "${auth[@]}" --data "event_name=requests&identifier=id-nc&payload[value]=1"
assert_eq 400 "$(status nocust)" "missing customer status"
assert_eq "payload[stripe_customer_id]" "$(field nocust error.param)" "missing customer param"
req badval "${auth[@]}" --data "$(ev id-bv 1e5)"
assert_eq 400 "$(status badval)" "bad value status"
req bigval "${auth[@]}" --data "$(ev id-big 1234567890123456)"
assert_eq 400 "$(status bigval)" "16 significant digits status"
req decval "${auth[@]}" --data "$(ev id-dec -0.25)"
assert_eq 200 "$(status decval)" "negative decimal value status"

# Fault 500: the endpoint began executing and failed, nothing recorded. As at Stripe, the 500 is
# saved under the Idempotency-Key and replayed to every retry with that key (the same answer, and
# "Idempotent-Replayed: true"); the other parameters under that key are still a mismatch.
assert_eq 2 "$(wc -l <"$T/accepted.tsv")" "record lines before the faults"
double_faults '500'
req f500 "${auth[@]}" -H 'Idempotency-Key: key-f' --data "$(ev id-f 7)"
assert_eq 500 "$(status f500)" "injected 500"
assert_eq api_error "$(field f500 error.type)" "injected 500 type"
assert_eq false "$(header f500 Stripe-Should-Retry)" "500 Stripe-Should-Retry"
assert_eq 2 "$(wc -l <"$T/accepted.tsv")" "record lines after the 500"
req f500rep "${auth[@]}" -H 'Idempotency-Key: key-f' --data "$(ev id-f 7)"
assert_eq 500 "$(status f500rep)" "retry under the key of a saved 500"
assert_eq true "$(header f500rep Idempotent-Replayed)" "saved 500 replayed"
assert_eq "$(header f500 Request-Id)" "$(header f500rep Request-Id)" "replayed 500 Request-Id"
assert_eq "$(cat "$T/f500.b")" "$(cat "$T/f500rep.b")" "replayed 500 body"
assert_eq false "$(header f500rep Stripe-Should-Retry)" "replayed 500 Stripe-Should-Retry"
assert_eq 2 "$(wc -l <"$T/accepted.tsv")" "record lines after the replayed 500"
req f500mis "${auth[@]}" -H 'Idempotency-Key: key-f' --data "$(ev id-f 8)"
assert_eq 400 "$(status f500mis)" "other parameters under the key of a saved 500"
assert_eq idempotency_error "$(field f500mis error.type)" "mismatch type after a saved 500"
# The identifier was never recorded: a new key with the same identifier is accepted.
req f500new "${auth[@]}" -H 'Idempotency-Key: key-f2' --data "$(ev id-f 7)"
assert_eq 200 "$(status f500new)" "new key after a saved 500"
assert_eq "" "$(header f500new Idempotent-Replayed)" "new key after a saved 500 not replayed"
assert_eq 3 "$(wc -l <"$T/accepted.tsv")" "record lines after the new key"
assert_eq id-f "$(tail -n 1 "$T/accepted.tsv" | cut -f1)" "identifier accepted under the new key"

# drop_after: accepted, but never answered (curl: empty reply, 52).
double_faults 'drop_after'
req fdrop "${auth[@]}" -H 'Idempotency-Key: key-h' --data "$(ev id-h 7)"
assert_eq 52 "$(cat "$T/fdrop.rc")" "curl exit code for the dropped answer"
assert_eq 4 "$(wc -l <"$T/accepted.tsv")" "record lines after drop_after"
assert_eq id-h "$(tail -n 1 "$T/accepted.tsv" | cut -f1)" "identifier accepted by drop_after"
# A re-send under a new key: already exists; under the same key: the stored 200.
req fresend "${auth[@]}" --data "$(ev id-h 7)"
assert_eq 400 "$(status fresend)" "re-send after drop_after"
assert_eq "An event already exists with identifier id-h." "$(field fresend error.message)" \
	"re-send message"
req fretry "${auth[@]}" -H 'Idempotency-Key: key-h' --data "$(ev id-h 7)"
assert_eq 200 "$(status fretry)" "retry with the same key after drop_after"
assert_eq true "$(header fretry Idempotent-Replayed)" "retry replayed"
assert_eq 4 "$(wc -l <"$T/accepted.tsv")" "record lines after the re-sends"

# A plain drop: nothing accepted.
double_faults 'drop'
req fdrop2 "${auth[@]}" --data "$(ev id-g 7)"
assert_eq 52 "$(cat "$T/fdrop2.rc")" "curl exit code for a drop"
assert_eq 4 "$(wc -l <"$T/accepted.tsv")" "record lines after a drop"

# 429 kinds carry their headers.
double_faults '429,429lock'
req f429 "${auth[@]}" --data "$(ev id-g 7)"
assert_eq 429 "$(status f429)" "injected 429"
assert_eq global-rate "$(header f429 Stripe-Rate-Limited-Reason)" "429 reason"
req f429l "${auth[@]}" --data "$(ev id-g 7)"
assert_eq 429 "$(status f429l)" "injected 429lock"
assert_eq true "$(header f429l Stripe-Should-Retry)" "429lock Stripe-Should-Retry"

# A key still in progress (slow request) gets 409. The slow request is held 15 s so that the second
# one (a new curl started on a loaded machine) surely arrives while it is held.
double_faults 'slow:15000'
req slow "${auth[@]}" -H 'Idempotency-Key: key-s' --data "$(ev id-s 1)" &
slow_pid=$!
in_flight() { [ "$(double_stat in_flight)" = 1 ]; }
wait_until 60 in_flight || fail "the slow request never arrived"
sleep 0.2
req busy "${auth[@]}" -H 'Idempotency-Key: key-s' --data "$(ev id-s 1)"
wait "$slow_pid"
assert_eq 409 "$(status busy)" "same key while in progress"
assert_eq 200 "$(status slow)" "slow request"

# Stats agree with what happened.
# requests: bad_key no_key ok1 dup replay mismatch replay2 nometer old future unknown nocust
# badval bigval decval f500 f500rep f500mis f500new fdrop fresend fretry fdrop2 f429 f429l slow
# busy = 27
assert_eq 27 "$(double_stat requests)" "stats requests"
assert_eq 5 "$(double_stat accepted)" "stats accepted (id-1 id-dec id-f id-h id-s)"
assert_eq 2 "$(double_stat duplicates)" "stats duplicates"
assert_eq 4 "$(double_stat replays)" "stats replays (replay replay2 f500rep fretry)"
assert_eq 1 "$(double_stat saved_errors)" "stats saved_errors"
assert_eq 1 "$(double_stat error_replays)" "stats error_replays"
assert_eq 2 "$(double_stat unauthorized)" "stats unauthorized"
assert_eq 9 "$(double_stat rejected)" "stats rejected (2 mismatches and 7 invalid)"
assert_eq 1 "$(double_stat faults.500)" "stats faults.500"
assert_eq 1 "$(double_stat faults.drop_after)" "stats faults.drop_after"
assert_eq 1 "$(double_stat faults.drop)" "stats faults.drop"
assert_eq 2 "$(double_stat by_status.dropped)" "stats dropped"
assert_eq 2 "$(double_stat by_status.500)" "stats 500s (f500 f500rep)"
assert_eq 7 "$(double_stat by_status.200)" \
	"stats 200s (ok1 replay replay2 decval f500new fretry slow)"
assert_eq 0 "$(double_stat fault_queue)" "fault queue drained"
assert_eq 1 "$(double_stat concurrency_violations)" "stats concurrency violations (busy)"
assert_eq 3 "$(double_stat idempotency_errors)" \
	"stats idempotency errors (mismatch, f500mis, busy)"
assert_eq 5 "$(double_events | "$PYTHON3" -c 'import json,sys; print(len(json.load(sys.stdin)))')" \
	"events listed"

# A restarted double still knows the accepted identifiers (from the record file).
double_restart
req after "${auth[@]}" --data "$(ev id-1 42)"
assert_eq 400 "$(status after)" "duplicate after restart"
assert_eq 5 "$(double_stat preloaded)" "identifiers loaded from the record"

# Keep-alive: two requests on one connection, both answered.
curl -sS --noproxy '*' -v "${auth[@]}" --data "$(ev id-k1)" -o "$T/k1.b" \
	"$DOUBLE_URL/v1/billing/meter_events" --next "${auth[@]}" --data "$(ev id-k2)" \
	-o "$T/k2.b" "$DOUBLE_URL/v1/billing/meter_events" 2>"$T/keepalive.err" ||
	fail "keep-alive requests: $(cat "$T/keepalive.err")"
grep -q 'Re-using existing connection' "$T/keepalive.err" || fail "the connection was not kept alive"
assert_eq id-k2 "$(field k2 identifier)" "second request on a kept-alive connection"

# cut_after: accepted, then the answer breaks off mid-body (curl: 18, partial file).
double_faults 'cut_after'
req cut "${auth[@]}" --data "$(ev id-cut)"
assert_eq 18 "$(cat "$T/cut.rc")" "curl exit code for a cut answer"
assert_eq id-cut "$(tail -n 1 "$T/accepted.tsv" | cut -f1)" "identifier accepted by cut_after"


# ---- the endpoint's own faults: 500rec; a 500 without a key ------------------------------------
# 500rec: the event is processed (accepted, or found a duplicate), then a 500 is answered and saved
# under the key. A retry with the key gets the saved 500; one with a new key, "already exists".
double_reset
double_faults '500rec'
req r500 "${auth[@]}" -H 'Idempotency-Key: key-r' --data "$(ev id-r 5)"
assert_eq 500 "$(status r500)" "500rec status"
assert_eq false "$(header r500 Stripe-Should-Retry)" "500rec Stripe-Should-Retry"
assert_eq id-r "$(tail -n 1 "$T/accepted.tsv" | cut -f1)" "identifier recorded by 500rec"
req r500rep "${auth[@]}" -H 'Idempotency-Key: key-r' --data "$(ev id-r 5)"
assert_eq 500 "$(status r500rep)" "retry under the key of a 500rec"
assert_eq true "$(header r500rep Idempotent-Replayed)" "500rec replayed"
req r500new "${auth[@]}" -H 'Idempotency-Key: key-r2' --data "$(ev id-r 5)"
assert_eq 400 "$(status r500new)" "new key after a 500rec"
assert_eq "An event already exists with identifier id-r." "$(field r500new error.message)" \
	"new key after a 500rec: message"
assert_eq 1 "$(grep -c '^id-r	' "$T/accepted.tsv")" "500rec recorded the event once"
# Without an Idempotency-Key nothing can be saved: the next attempt is processed afresh.
double_faults '500'
req nk500 "${auth[@]}" --data "$(ev id-nk 5)"
assert_eq 500 "$(status nk500)" "500 without a key"
req nk200 "${auth[@]}" --data "$(ev id-nk 5)"
assert_eq 200 "$(status nk200)" "after a 500 without a key"
assert_eq 2 "$(double_stat accepted)" "accepted (id-r id-nk)"
assert_eq 1 "$(double_stat duplicates)" "duplicates (r500new)"
assert_eq 1 "$(double_stat saved_errors)" "saved 500s (the 500rec)"
assert_eq 1 "$(double_stat error_replays)" "replayed 500s (r500rep)"
assert_eq 1 "$(double_stat faults.500rec)" "stats faults.500rec"

# ---- edge faults: answered before the endpoint, never processed, never saved --------------------
double_reset
n0=$(wc -l <"$T/accepted.tsv")
double_faults '400rl,429ra:7,302,200html'
req e400rl "${auth[@]}" -H 'Idempotency-Key: key-e' --data "$(ev id-e 9)"
assert_eq 400 "$(status e400rl)" "400rl status"
assert_eq rate_limit "$(field e400rl error.code)" "400rl code"
assert_eq invalid_request_error "$(field e400rl error.type)" "400rl type"
req e429ra "${auth[@]}" -H 'Idempotency-Key: key-e' --data "$(ev id-e 9)"
assert_eq 429 "$(status e429ra)" "429ra status"
assert_eq 7 "$(header e429ra Retry-After)" "429ra Retry-After"
assert_eq global-rate "$(header e429ra Stripe-Rate-Limited-Reason)" "429ra reason"
assert_eq rate_limit "$(field e429ra error.code)" "429ra code"
req e302 "${auth[@]}" -H 'Idempotency-Key: key-e' --data "$(ev id-e 9)"
assert_eq 302 "$(status e302)" "302 status"
assert_eq https://portal.invalid/login "$(header e302 Location)" "302 Location"
req e200html "${auth[@]}" -H 'Idempotency-Key: key-e' --data "$(ev id-e 9)"
assert_eq 200 "$(status e200html)" "200html status"
case $(header e200html Content-Type) in
text/html*) ;;
*) fail "200html Content-Type: $(header e200html Content-Type)" ;;
esac
grep -q '<html>' "$T/e200html.b" || fail "200html body: $(head -c 200 "$T/e200html.b")"
assert_eq "$n0" "$(wc -l <"$T/accepted.tsv")" "record lines after the edge faults"
# None of them saved anything under the key, nor recorded the identifier.
req eok "${auth[@]}" -H 'Idempotency-Key: key-e' --data "$(ev id-e 9)"
assert_eq 200 "$(status eok)" "the key after the edge faults"
assert_eq "" "$(header eok Idempotent-Replayed)" "the key after the edge faults: not a replay"
assert_eq 1 "$(double_stat accepted)" "accepted after the edge faults"
assert_eq 0 "$(double_stat rejected)" "edge faults are not rejections"
assert_eq 1 "$(double_stat faults.429ra)" "stats faults.429ra"

# reset: the connection is closed with a TCP RST before the endpoint (nothing recorded);
# reset_after: after it (recorded, and the 200 saved under the key).
double_faults 'reset,reset_after'
req rst "${auth[@]}" -H 'Idempotency-Key: key-x' --data "$(ev id-x 3)"
assert_eq 56 "$(cat "$T/rst.rc")" "curl exit code for a reset"
grep -qi 'reset' "$T/rst.err" || fail "reset: curl said $(cat "$T/rst.err")"
assert_eq "$((n0 + 1))" "$(wc -l <"$T/accepted.tsv")" "record lines after a reset"
req rst2 "${auth[@]}" -H 'Idempotency-Key: key-x' --data "$(ev id-x 3)"
assert_eq 56 "$(cat "$T/rst2.rc")" "curl exit code for reset_after"
grep -qi 'reset' "$T/rst2.err" || fail "reset_after: curl said $(cat "$T/rst2.err")"
assert_eq id-x "$(tail -n 1 "$T/accepted.tsv" | cut -f1)" "identifier accepted by reset_after"
req rst3 "${auth[@]}" -H 'Idempotency-Key: key-x' --data "$(ev id-x 3)"
assert_eq 200 "$(status rst3)" "retry after reset_after"
assert_eq true "$(header rst3 Idempotent-Replayed)" "retry after reset_after replayed"
assert_eq 2 "$(double_stat by_status.reset)" "stats resets"

# ---- time: Idempotency-Keys and identifiers are forgotten after their TTLs ----------------------
# POST /_double/clock moves the double's clock (for the TTLs only), so nothing sleeps.
clock() {
	curl -sS --noproxy '*' --max-time 60 -f -X POST -H 'Content-Type: application/json' \
		--data "{\"advance\": $1}" "$DOUBLE_URL/_double/clock" >/dev/null ||
		fail "POST /_double/clock failed"
}
double_restart --idempotency-ttl 100 --identifier-ttl 1000
req t1 "${auth[@]}" -H 'Idempotency-Key: key-t' --data "$(ev id-t 4)"
assert_eq 200 "$(status t1)" "TTL: first request"
clock 50
req t2 "${auth[@]}" -H 'Idempotency-Key: key-t' --data "$(ev id-t 4)"
assert_eq true "$(header t2 Idempotent-Replayed)" "TTL: the key still remembered"
clock 60
# The key is forgotten: the request is processed afresh, and the identifier still protects it.
req t3 "${auth[@]}" -H 'Idempotency-Key: key-t' --data "$(ev id-t 4)"
assert_eq 400 "$(status t3)" "TTL: a forgotten key, processed afresh"
assert_eq "" "$(header t3 Idempotent-Replayed)" "TTL: a forgotten key is not replayed"
assert_eq "An event already exists with identifier id-t." "$(field t3 error.message)" \
	"TTL: the identifier outlives the key"
assert_eq 1 "$(double_stat forgotten_keys)" "stats forgotten_keys"
# A saved 500 lasts as long as its key, then the event goes through.
double_faults '500'
req t500 "${auth[@]}" -H 'Idempotency-Key: key-t500' --data "$(ev id-t500 4)"
assert_eq 500 "$(status t500)" "TTL: a saved 500"
clock 50
req t500b "${auth[@]}" -H 'Idempotency-Key: key-t500' --data "$(ev id-t500 4)"
assert_eq 500 "$(status t500b)" "TTL: the saved 500 within the key's TTL"
clock 60
req t500c "${auth[@]}" -H 'Idempotency-Key: key-t500' --data "$(ev id-t500 4)"
assert_eq 200 "$(status t500c)" "TTL: the key of the 500 forgotten"
# Once the identifier is forgotten too, a re-send is accepted AGAIN: billed twice.
clock 1000
req t4 "${auth[@]}" -H 'Idempotency-Key: key-t4' --data "$(ev id-t 4)"
assert_eq 200 "$(status t4)" "TTL: a forgotten identifier is accepted again"
assert_eq 2 "$(grep -c '^id-t	' "$T/accepted.tsv")" "TTL: the identifier recorded twice"
assert_eq 1 "$(double_stat forgotten_identifiers)" "stats forgotten_identifiers"
assert_eq 1220 "$(curl -sS --noproxy '*' -f "$DOUBLE_URL/_double/clock" | "$PYTHON3" -c \
	'import json, sys; print(int(json.load(sys.stdin)["offset"]))')" "GET /_double/clock"
# At start, record lines older than the identifier TTL (by their accepted time) are not loaded.
printf 'id-ancient\tbandwidth_bytes\tcus_A\t1\t%s\t\t%s.000\n' "$now" "$((now - 2000))" \
	>>"$T/accepted.tsv"
double_restart --identifier-ttl 1000
assert_eq 1 "$(double_stat preload_expired)" "record lines past the TTL at start"
req anc "${auth[@]}" --data "$(ev id-ancient 1)"
assert_eq 200 "$(status anc)" "an identifier past its TTL in the record"

# ---- customers: an unknown one is accepted, and reported asynchronously -------------------------
echo cus_B >"$T/customers.txt"
double_restart --customer cus_A --customers-file "$T/customers.txt"
evc() { # evc IDENTIFIER CUSTOMER
	echo "event_name=bandwidth_bytes&identifier=$1&timestamp=$now&payload[stripe_customer_id]=$2&payload[value]=1"
}
req cz "${auth[@]}" --data "$(evc id-cz cus_Z)"
assert_eq 200 "$(status cz)" "unknown customer: accepted"
assert_eq id-cz "$(tail -n 1 "$T/accepted.tsv" | cut -f1)" "unknown customer: recorded"
req cb "${auth[@]}" --data "$(evc id-cb cus_B)"
assert_eq 200 "$(status cb)" "customer from the file"
req ca "${auth[@]}" --data "$(evc id-ca cus_A)"
assert_eq 200 "$(status ca)" "customer from --customer"
assert_eq 1 "$(double_stat error_reports)" "stats error_reports"
curl -sS --noproxy '*' -f -o "$T/reports.b" "$DOUBLE_URL/_double/error_reports" ||
	fail "GET /_double/error_reports failed"
assert_eq "meter_event_customer_not_found id-cz cus_Z bandwidth_bytes" "$("$PYTHON3" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(len(r) == 1 and " ".join((r[0]["code"], r[0]["identifier"], r[0]["customer"],
                                r[0]["event_name"])))' "$T/reports.b")" "the error report"

# The same report as Stripe's thin event, through GET /v2/core/events.
get v2ev /v2/core/events "${auth[@]}"
assert_eq 200 "$(status v2ev)" "GET /v2/core/events"
assert_eq "v1.billing.meter.error_report_triggered meter_event_customer_not_found id-cz billing.meter" \
	"$("$PYTHON3" -c '
import json, sys
e = json.load(open(sys.argv[1]))["data"][0]
t = e["data"]["reason"]["error_types"][0]
print(e["type"], t["code"], t["sample_errors"][0]["request"]["identifier"],
      e["related_object"]["type"])' "$T/v2ev.b")" "the v2 event"
get v2noauth /v2/core/events
assert_eq 401 "$(status v2noauth)" "GET /v2/core/events without a key"
assert_eq invalid_api_key "$(field v2noauth error.code)" "a v2 endpoint's 401 in the v2 shape"

# ---- meters: GET /v1/billing/meters, paginated; an inactive meter takes no events ---------------
double_restart --meter old_meter:customer_id:units:count:inactive --meter gauge::level:last \
	--meters-page-max 2
get mnoauth /v1/billing/meters
assert_eq 401 "$(status mnoauth)" "GET /v1/billing/meters without a key"
# meters NAME: "has_more event_name..." of a list answer.
meters() {
	"$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["object"] == "list" and d["url"] == "/v1/billing/meters", d
print(str(d["has_more"]).lower(), *[m["event_name"] for m in d["data"]])' "$T/$1.b"
}
get m1 /v1/billing/meters "${auth[@]}"
assert_eq 200 "$(status m1)" "GET /v1/billing/meters"
assert_eq "true bandwidth_bytes requests" "$(meters m1)" "first page (capped at 2)"
last=$("$PYTHON3" -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"][-1]["id"])' \
	"$T/m1.b")
get m2 "/v1/billing/meters?starting_after=$last" "${auth[@]}"
assert_eq "false old_meter gauge" "$(meters m2)" "second page"
get minact "/v1/billing/meters?status=inactive" "${auth[@]}"
assert_eq "false old_meter" "$(meters minact)" "status=inactive"
get mact "/v1/billing/meters?status=active&limit=1" "${auth[@]}"
assert_eq "true bandwidth_bytes" "$(meters mact)" "status=active&limit=1"
get mact2 "/v1/billing/meters?status=active&starting_after=$last" "${auth[@]}"
assert_eq "false gauge" "$(meters mact2)" "status=active after requests"
get mbefore "/v1/billing/meters?ending_before=$last" "${auth[@]}"
assert_eq "false bandwidth_bytes" "$(meters mbefore)" "ending_before"
get mlimit "/v1/billing/meters?limit=101" "${auth[@]}"
assert_eq 400 "$(status mlimit)" "limit=101"
assert_eq limit "$(field mlimit error.param)" "limit=101 param"
# The billing.meter object, as in Stripe's OpenAPI spec; ids are stable ("mtr_test_" and 32 hex
# digits of the event name's SHA-256 with a test key).
assert_eq ok "$("$PYTHON3" -c '
import hashlib, json, sys
m = json.load(open(sys.argv[1]))["data"][0]
want = {"object": "billing.meter", "customer_mapping": {"event_payload_key": "customer_id",
        "type": "by_id"}, "default_aggregation": {"formula": "count"}, "display_name": "old_meter",
        "event_name": "old_meter", "event_time_window": None, "livemode": False,
        "status": "inactive", "value_settings": {"event_payload_key": "units"},
        "id": "mtr_test_" + hashlib.sha256(b"old_meter").hexdigest()[:32]}
bad = {k: m.get(k) for k in want if m.get(k) != want[k]}
keys = sorted(m) == sorted(["id", "object", "created", "customer_mapping", "default_aggregation",
                            "display_name", "event_name", "event_time_window", "livemode",
                            "status", "status_transitions", "updated", "value_settings"])
ok = not bad and keys and isinstance(m["status_transitions"]["deactivated_at"], int)
print("ok" if ok else "%s %s" % (bad, sorted(m)))' "$T/minact.b")" "the billing.meter object"
req inact "${auth[@]}" --data "event_name=old_meter&identifier=id-old&payload[customer_id]=cus_A&payload[units]=1"
assert_eq 400 "$(status inact)" "event for an inactive meter"
assert_eq 'No active meter found for event name "old_meter".' "$(field inact error.message)" \
	"event for an inactive meter: message"
req gauge "${auth[@]}" --data "event_name=gauge&identifier=id-gauge&payload[stripe_customer_id]=cus_A&payload[level]=7"
assert_eq 200 "$(status gauge)" "event for a meter with its own value key"

# ---- rate limits -------------------------------------------------------------------------------
# --rate-limit N: a token bucket of max(1, N) tokens, N a second. At 0.001 a second the second
# request is refused for the next 1,000 s: no timing assumption.
double_restart --rate-limit 0.001
req rl1 "${auth[@]}" -H 'Idempotency-Key: key-rl' --data "$(ev id-rl 1)"
assert_eq 200 "$(status rl1)" "within the rate limit"
req rl2 "${auth[@]}" -H 'Idempotency-Key: key-rl2' --data "$(ev id-rl2 1)"
assert_eq 429 "$(status rl2)" "over the rate limit"
assert_eq rate_limit "$(field rl2 error.code)" "rate limit code"
assert_eq global-rate "$(header rl2 Stripe-Rate-Limited-Reason)" "rate limit reason (test key)"
req rl3 "${auth[@]}" -H 'Idempotency-Key: key-rl' --data "$(ev id-rl 1)"
assert_eq 429 "$(status rl3)" "the limiter comes before the idempotency layer"
assert_eq 2 "$(double_stat rate_limited)" "stats rate_limited"
assert_eq 0 "$(grep -c '^id-rl2	' "$T/accepted.tsv")" "a rate-limited event is not recorded"
req rlkey "${auth[@]}" -H 'Idempotency-Key: key-rl2' --data "$(ev id-rl2 1)"
assert_eq 429 "$(status rlkey)" "still limited"
# auto: what Stripe documents for the meter events endpoint, by the key's mode.
double_restart --rate-limit auto
assert_eq 25 "$(double_stat rate_limit)" "auto rate limit with a test key"
double_stop
double_start_key "sk_live_double_$(_lm_random)" --rate-limit auto
assert_eq 1000 "$(double_stat rate_limit)" "auto rate limit with a live key"
req live -H "Authorization: Bearer $API_KEY" --data "$(ev id-live 1)"
assert_eq true "$(field live livemode)" "livemode with a live key"
get mlive /v1/billing/meters -H "Authorization: Bearer $API_KEY"
assert_eq "mtr_$("$PYTHON3" -c 'import hashlib; print(hashlib.sha256(b"bandwidth_bytes").hexdigest()[:32])')" \
	"$("$PYTHON3" -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' "$T/mlive.b")" \
	"live meter id"
double_stop
double_start_key "rk_live_double_$(_lm_random)" --rate-limit auto
assert_eq 1000 "$(double_stat rate_limit)" "auto rate limit with a live restricted key"

# API v2 (docs/stripe-contract.md, section 14): a session with the secret key, the stream with
# its token; the shapes of Stripe's answers.
# The session lives 10 minutes here, so that no check but the last depends on how fast the
# machine is; the last one restarts the double with sessions of 1 s.
double_stop
double_start --session-ttl 600
post() { # post NAME PATH [curl args...]: like get, for a POST
	local name=$1 path=$2 rc=0
	shift 2
	curl -sS --noproxy '*' --max-time 60 -o "$T/$name.b" -D "$T/$name.h" -w '%{http_code}' \
		-X POST "$@" "$DOUBLE_URL$path" >"$T/$name.status" 2>"$T/$name.err" || rc=$?
	echo "$rc" >"$T/$name.rc"
}
post nosess /v2/billing/meter_event_session -H "Authorization: Bearer sk_test_wrongkey5678"
assert_eq 401 "$(status nosess)" "a session needs the secret key"
# A v2 operation's errors are v2.error (code and message required): not v1's error without a
# code, and no type the SDKs map to another error than a refused key.
assert_eq "invalid_request_error invalid_api_key" \
	"$(field nosess error.type) $(field nosess error.code)" "the session's 401 in the v2 shape"
msg=$(field nosess error.message)
case $msg in
"Invalid API Key provided: sk_test_****5678") ;;
*) fail "the session's 401 message: $msg" ;;
esac
assert_eq 1 "$(double_stat session_unauthorized)" "stats session_unauthorized"
post sess /v2/billing/meter_event_session -H "Authorization: Bearer $API_KEY"
assert_eq 200 "$(status sess)" "session status"
assert_eq v2.billing.meter_event_session "$(field sess object)" "session object"
token=$(field sess authentication_token)
created=$(field sess created)
expires=$(field sess expires_at)
assert_eq 600 "$("$PYTHON3" -c 'import sys, datetime as d
f = lambda s: d.datetime.fromisoformat(s.replace("Z", "+00:00"))
print(int((f(sys.argv[2]) - f(sys.argv[1])).total_seconds()))' "$created" "$expires")" "session life"
iso=$(date -u -d "@$now" +%Y-%m-%dT%H:%M:%S.000Z)
sev() { # sev IDENTIFIER: one stream event
	printf '{"event_name":"bandwidth_bytes","identifier":"%s","timestamp":"%s","payload":{"stripe_customer_id":"cus_A","value":"7"}}' "$1" "$iso"
}
post s1 /v2/billing/meter_event_stream -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' --data "{\"events\":[$(sev v2-a),$(sev v2-b),$(sev v2-a)]}"
assert_eq 200 "$(status s1)" "stream status"
assert_eq '{}' "$(tr -d ' \n' < "$T/s1.b")" "stream answer"
assert_eq 1 "$(grep -c '^v2-a	' "$T/accepted.tsv")" "a duplicate identifier is taken once"
assert_eq "$now" "$(grep '^v2-b	' "$T/accepted.tsv" | cut -f5)" "the RFC 3339 timestamp, recorded in seconds"
post s2 /v2/billing/meter_event_stream -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' --data "{\"events\":[$(sev v2-c)],\"extra\":1}"
assert_eq 400 "$(status s2)" "unknown field"
assert_eq invalid_fields "$(field s2 error.code)" "v2 validation code"
assert_eq 0 "$(grep -c '^v2-c	' "$T/accepted.tsv")" "nothing of a refused request is taken"
many=$(for i in $(seq 101); do sev "m$i"; done | paste -sd, -)
post s3 /v2/billing/meter_event_stream -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' --data "{\"events\":[$many]}"
assert_eq 400 "$(status s3)" "more than 100 events"
post s4 /v2/billing/meter_event_stream -H "Authorization: Bearer $API_KEY" \
	-H 'Content-Type: application/json' --data "{\"events\":[$(sev v2-d)]}"
assert_eq 401 "$(status s4)" "the stream takes a session token, not the key"
double_restart --session-ttl 1
post sess /v2/billing/meter_event_session -H "Authorization: Bearer $API_KEY"
token=$(field sess authentication_token)
expires=$(field sess expires_at)
wait_until 30 "$PYTHON3" -c 'import sys, time, datetime as d
sys.exit(time.time() < d.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp())' "$expires" ||
	fail "the session did not expire"
post s5 /v2/billing/meter_event_stream -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' --data "{\"events\":[$(sev v2-e)]}"
assert_eq 401 "$(status s5)" "an expired session"
assert_eq temporary_session_expired "$(field s5 error.type)" "expired session type"
assert_eq billing_meter_event_session_expired "$(field s5 error.code)" "expired session code"
assert_eq 1 "$(double_stat sessions_expired)" "stats sessions_expired"

# --help explains every option the docstring's usage names: the option with a text after its
# argument (argparse puts it on the option's line or the lines below).
"$PYTHON3" "$DOUBLE_PY" --help > "$T/help.txt" || fail "--help exited $?"
opts=$(sed -n '/^Usage:/,/^$/p' "$DOUBLE_PY" | grep -o -- '--[a-z-]*' | sort -u)
[ "$(wc -w <<<"$opts")" -ge 14 ] || fail "test bug: options of the usage: $opts"
for o in $opts; do
	words=$(awk -v o="$o" '$1 == o || $1 == o"," { on = 1; $1 = ""; $2 = ""; print; next }
		on && /^  -/ { exit } on { print }' "$T/help.txt" | wc -w)
	[ "$words" -ge 4 ] || fail "--help says nothing of $o: $(grep -A2 -- "^  $o" "$T/help.txt")"
done

note "ok"

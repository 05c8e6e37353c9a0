#!/usr/bin/env bash
# `logmeter check` accepts a good configuration and refuses broken ones with the right file:line.
. "$(dirname "$0")/lib.sh"
lm_init check
# A good configuration needs a key: `check` refuses what `run` refuses (t_state_dir.sh).
export LOGMETER_STRIPE_API_KEY=sk_test_check

mkdir -p "$T/etc/conf.d"
cat > "$T/etc/logmeter.conf" <<CONF
[agent]
state_dir = $T/state
instance = check-test

[stripe]
api_base = http://127.0.0.1:9

[source web]
path = $T/logs/*.log
CONF
cat > "$T/etc/conf.d/10-bytes.conf" <<'CONF'
; bill response bytes
[rule bytes]
source = web
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
timestamp = time
CONF
cp "$T/etc/conf.d/10-bytes.conf" "$T/etc/conf.d/99-later.conf.example"

out=$("$LOGMETER" check -c "$T/etc/logmeter.conf" 2>&1) || fail "a good configuration was refused: $out"
case $out in *"1 source, 1 rule"*) ;; *) fail "check said: $out" ;; esac
"$LOGMETER" -n -c "$T/etc/logmeter.conf" >/dev/null 2>&1 || fail "-n refused a good configuration"

# expect_error FILE PATTERN: check must fail, and name FILE:LINE where LINE is the first line of FILE
# that matches PATTERN (found with grep, not by logmeter).
expect_error() {
	local file=$1 pat=$2 line out rc=0
	line=$(grep -n -m1 -e "$pat" "$file" | cut -d: -f1)
	[ -n "$line" ] || fail "test bug: '$pat' not in $file"
	out=$("$LOGMETER" check -c "$T/etc/logmeter.conf" 2>&1) || rc=$?
	[ "$rc" = 2 ] || fail "check exited $rc (expected 2) for $pat: $out"
	grep -qF -- "$file:$line:" <<<"$out" || fail "expected an error at $file:$line ($pat), got: $out"
	echo "ok: $file:$line refused: $(grep -F -- "$file:$line:" <<<"$out" | head -1)"
}

drop="$T/etc/conf.d/20-broken.conf"

# An unknown key in a drop-in.
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+)\ncustomer = ip\nvalue = 1\ncolour = blue\n' > "$drop"
expect_error "$drop" '^colour'

# A pattern that does not compile: PCRE2's message and offset.
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+\ncustomer = ip\nvalue = 1\n' > "$drop"
expect_error "$drop" '^pattern'
out=$("$LOGMETER" check -c "$T/etc/logmeter.conf" 2>&1 || true)
grep -q 'offset' <<<"$out" || fail "no PCRE2 offset in: $out"

# A rule naming a source that does not exist.
printf '[rule extra]\nsource = nope\nevent_name = requests\npattern = ^(?<ip>\\S+)\ncustomer = ip\nvalue = 1\n' > "$drop"
expect_error "$drop" '^source'

# A value naming a group the pattern does not have.
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+)\ncustomer = ip\nvalue = bytes\n' > "$drop"
expect_error "$drop" '^value'

# A constant value Stripe refuses (16 significant digits) is called that, not "not a number".
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+)\ncustomer = ip\nvalue = 1234567890123456\n' > "$drop"
expect_error "$drop" '^value'
out=$("$LOGMETER" check -c "$T/etc/logmeter.conf" 2>&1 || true)
grep -q "value '1234567890123456' has more than 15 significant digits" <<<"$out" || fail "16 digits: $out"

# A duplicate key, an unknown section, a bad number.
printf '[rule extra]\nsource = web\nevent_name = requests\nevent_name = again\npattern = ^(?<ip>\\S+)\ncustomer = ip\nvalue = 1\n' > "$drop"
expect_error "$drop" '^event_name = again'
printf '[rules extra]\nsource = web\n' > "$drop"
expect_error "$drop" '^\[rules'
printf '[agent]\nbatch_lines = many\n' > "$drop"
expect_error "$drop" '^batch_lines'

# A customer map with a bad line: the map's own file and line.
printf 'a,cus_1\nno-comma-here\n' > "$T/etc/customers.csv"
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+)\ncustomer = ip\ncustomer_map = %s\nvalue = 1\n' "$T/etc/customers.csv" > "$drop"
expect_error "$T/etc/customers.csv" 'no-comma'

# A line longer than libinih's 199 bytes is refused clearly...
long=$(printf 'x%.0s' $(seq 1 250))
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+) %s\ncustomer = ip\nvalue = 1\n' "$long" > "$drop"
expect_error "$drop" '^pattern'

# ... and the same pattern written on continuation lines is accepted, and so is a pattern with " ;"
# kept in a pattern file.
printf '[rule extra]\nsource = web\nevent_name = requests\npattern = ^(?<ip>\\S+)\n  [ ]%s\n  %s\ncustomer = ip\nvalue = 1\n' "${long:0:125}" "${long:125}" > "$drop"
printf '^(?<ip>\\S+) a ;b\n' > "$T/etc/conf.d/semi.re"
printf '[rule semi]\nsource = web\nevent_name = requests\npattern_file = semi.re\ncustomer = ip\nvalue = 1\n' >> "$drop"
out=$("$LOGMETER" check -c "$T/etc/logmeter.conf" 2>&1) || fail "continuation / pattern_file refused: $out"
printf '1.2.3.4 a ;b\n1.2.3.4 %s\n' "$long" > "$T/in.txt"
out=$("$LOGMETER" test-rule -c "$T/etc/logmeter.conf" "$T/in.txt")
grep -q '^1: semi: event event_name=requests customer=1.2.3.4 value=1' <<<"$out" || fail "pattern with ' ;' did not match: $out"
grep -q '^2: extra: event event_name=requests customer=1.2.3.4 value=1' <<<"$out" || fail "long pattern did not match: $out"
rm -f "$drop"

# A missing main file.
rc=0; out=$("$LOGMETER" check -c "$T/nope.conf" 2>&1) || rc=$?
[ "$rc" = 2 ] && grep -q "$T/nope.conf" <<<"$out" || fail "missing file: rc $rc: $out"
echo "t_check: all error cases passed"

# The option documentation is generated from the same table that parses the configuration.
"$LOGMETER" options --markdown | diff -u "$top_srcdir/docs/configuration.md" - > "$T/docs.diff" ||
	fail "docs/configuration.md is stale: run 'make docs' ($(head -5 "$T/docs.diff"))"
echo "t_check: docs/configuration.md matches the option table"

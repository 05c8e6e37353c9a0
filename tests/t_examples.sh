#!/usr/bin/env bash
# The example rules shipped in conf.d/*.conf.example (installed in /etc/logmeter/conf.d/) and the
# default logmeter.conf: inactive as shipped, valid once renamed, and on the real logs they make
# exactly the events (line, customer, value, time) that an independent parser (Python's split,
# json and strptime, not PCRE2) finds.
. "$(dirname "$0")/lib.sh"
lm_init examples

ETC=$T/etc
mkdir -p "$ETC/conf.d"
# The shipped files, with /etc/logmeter and /var/lib/logmeter moved into $T.
sed -e "s#/var/lib/logmeter#$T/state#" -e "s#/etc/logmeter/#$ETC/#" "$top_srcdir/logmeter.conf" >"$ETC/logmeter.conf"
grep -q "^state_dir = $T/state\$" "$ETC/logmeter.conf" || fail "logmeter.conf has no state_dir line to move"
for f in "$top_srcdir"/conf.d/*.conf.example; do
	sed -e "s#/etc/logmeter/#$ETC/#" "$f" >"$ETC/conf.d/$(basename "$f")"
done
cp "$top_srcdir/customers.csv" "$ETC/customers.csv" # comments only: valid, maps nothing
n_examples=$(ls "$ETC"/conf.d/*.conf.example | wc -l)
[ "$n_examples" = 4 ] || fail "expected 4 examples, found $n_examples"

# The default configuration: valid, nothing enabled; without the key it names `run` refuses to
# start (exit 2, as run, and no OK), with it check passes.
rc=0
out=$("$LOGMETER" check -c "$ETC/logmeter.conf" 2>&1) || rc=$?
! grep -q ": OK: " <<<"$out" || fail "check said OK without the key: $out"
[ "$rc" = 2 ] && grep -q "^error: cannot read the Stripe API key file $ETC/stripe.key" <<<"$out" ||
	fail "check without the key: exit $rc: $out"
(umask 077 && echo sk_test_examples >"$ETC/stripe.key")
out=$("$LOGMETER" check -c "$ETC/logmeter.conf" 2>&1) || fail "the default logmeter.conf was refused: $out"
grep -q ": OK: 1 file read, 0 sources, 0 rules$" <<<"$out" || fail "check of the defaults: $out"
note "defaults: $(grep OK <<<"$out")"

# expected KIND LOG: "line<TAB>key<TAB>value<TAB>epoch" of every event KIND's rule must make, from
# Python's own parsing of the log.
expected() {
	"$PYTHON3" - "$1" "$2" <<'PY'
import calendar, json, re, sys, time
kind, path = sys.argv[1], sys.argv[2]

def utc(text, fmt):  # the tests run with TZ=UTC: local time is UTC
    return calendar.timegm(time.strptime(text, fmt))

def combined(line):
    # host ident user [time] "request" status bytes ...
    ip = line.split(" ", 1)[0]
    t = line[line.index("[") + 1:line.index("]")]
    q = line.index('"')
    end = q + 1
    while line[end] != '"' or line[end - 1] == "\\":
        end += 1
    status, size = line[end + 1:].split()[:2]
    stamp, zone = t.split(" ")
    sign = 1 if zone[0] == "+" else -1
    off = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
    return ip, status, size, utc(stamp, "%d/%b/%Y:%H:%M:%S") - off

with open(path, encoding="utf-8", errors="surrogateescape") as f:
    for n, line in enumerate(f, 1):
        line = line.rstrip("\n")
        if kind == "nginx-bytes":
            ip, status, size, ts = combined(line)
            if status.startswith("2") and size.isdigit():
                print(n, ip, size, ts, sep="\t")
        elif kind == "apache-requests":
            ip, status, size, ts = combined(line)
            if status[0] in "23" and len(status) == 3:
                print(n, ip, 1, ts, sep="\t")
        elif kind == "haproxy-bytes":
            f = line.split()
            if len(f) > 12 and re.fullmatch(r"haproxy\[\d+\]:", f[4]) and f[6].startswith("[") \
                    and f[10].startswith("2") and f[11].isdigit():
                ip = f[5].rsplit(":", 1)[0]
                ts = utc(f[6][1:-1].split(".")[0], "%d/%b/%Y:%H:%M:%S")
                print(n, f[8].split("/")[0], f[11], ts, sep="\t")
        elif kind in ("caddy-requests", "caddy-bytes"):
            if "{" not in line:
                continue
            rec = json.loads(line[line.index("{"):])
            if not rec.get("logger", "").startswith("http.log.access"):
                continue
            host = rec["request"]["host"]
            if kind == "caddy-requests":
                print(n, host, 1, int(rec["ts"]), sep="\t")
            elif 200 <= rec["status"] < 300:
                print(n, host, rec["size"], int(rec["ts"]), sep="\t")
PY
}

# check_example FILE LOG RULE...: renames FILE.conf.example to FILE.conf, checks it, and compares
# test-rule's events for each RULE on the real LOG with the independent parse.
check_example() {
	local name=$1 logname=$2 log=$LOGS/$2 rule n
	shift 2
	mv "$ETC/conf.d/$name.conf.example" "$ETC/conf.d/$name.conf"
	out=$("$LOGMETER" check -c "$ETC/logmeter.conf" 2>&1) || fail "$name.conf refused: $out"
	grep -q ": OK: 2 files read, 1 source, $# rule$([ $# = 1 ] || echo s)$" <<<"$out" || fail "$name.conf: $out"
	for rule in "$@"; do
		expected "$rule" "$log" >"$T/$rule.expected" || fail "test bug: parsing $log"
		n=$(wc -l <"$T/$rule.expected")
		[ "$n" -gt 0 ] || fail "test bug: no $rule events expected in $log"
	done
	# Every key the events need, mapped to a customer id (so they are events, not dead letters).
	cut -f2 "$T"/*.expected | sort -u | awk '{printf "%s,cus_test%05d\n", $1, NR}' >"$ETC/customers.csv"
	for rule in "$@"; do
		out=$("$LOGMETER" test-rule -c "$ETC/logmeter.conf" --rule "$rule" "$log") ||
			fail "test-rule $rule failed"
		grep -v ": no match$" <<<"$out" | grep -v ": event " && fail "$rule: lines that are neither events nor misses (above)"
		sed -n "s/^\([0-9]*\): $rule: event event_name=[^ ]* customer=\([^ ]*\) (key \([^)]*\)) value=\([^ ]*\) timestamp=\([0-9]*\) .*/\1\t\3\t\4\t\5\t\2/p" \
			<<<"$out" >"$T/$rule.got"
		# The customer ids are the map's, for the key the event shows.
		awk -F'\t' 'NR == FNR { split($0, a, ","); id[a[1]] = a[2]; next }
			id[$2] != $5 { print "line " $1 ": key " $2 " gave " $5; bad = 1 } END { exit bad }' \
			"$ETC/customers.csv" "$T/$rule.got" || fail "$rule: wrong customer ids"
		cut -f1-4 "$T/$rule.got" | diff -u "$T/$rule.expected" - >"$T/diff" ||
			fail "$rule on $logname: events differ from the independent parse: $(head -20 "$T/diff")"
		[ "$(grep -c ": event " <<<"$out")" = "$(wc -l <"$T/$rule.got")" ] || fail "$rule: unparsed event lines"
		note "$name.conf: $rule: $(wc -l <"$T/$rule.got") events on $logname, as expected"
	done
	rm -f "$T"/*.expected
	mv "$ETC/conf.d/$name.conf" "$ETC/conf.d/$name.conf.example"
}

check_example nginx elastic_nginx_logs_prefix29480.log nginx-bytes
check_example apache elastic_apache_logs.log apache-requests
check_example haproxy lnav_haproxy_httplog.log haproxy-bytes
check_example json-app lnav_caddy_json_docker.log caddy-requests caddy-bytes

# All four at once: their source and rule names do not clash.
for f in "$ETC"/conf.d/*.conf.example; do
	mv "$f" "${f%.example}"
done
out=$("$LOGMETER" check -c "$ETC/logmeter.conf" 2>&1) || fail "all examples together refused: $out"
grep -q ": OK: 5 files read, 4 sources, 5 rules$" <<<"$out" || fail "all examples: $out"
echo "t_examples: 4 examples valid once renamed, events as an independent parser finds them"

#!/usr/bin/env bash
# logmeter backfill without --source, with two sources: an archive is billed by the source whose
# glob's directory holds it, also when PATH is relative (docs/backfill.md), through the real binary
# against the Stripe double (counts from awk and grep -cP over zcat):
#   1. a bare name, from the directory of one source's logs: that source's rule bills it;
#   2. a relative path with a directory and "..", from above: the other source's rule bills it;
#   3. an archive in a directory no source reads, relative: refused (exit 2), naming --source.
. "$(dirname "$0")/lib.sh"
lm_init backfill_source_dir
double_start

APACHE=$LOGS/elastic_apache_logs.log
NGINX=$LOGS/elastic_nginx_logs_prefix29480.log
NGINX_PATTERN='^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" \d{3} '
mkdir -p "$T/logs/apache" "$T/logs/nginx" "$T/logs/old"
conf=$T/logmeter.conf
write_config "$conf"
config_apache_bytes "$conf" "$T/logs/apache/*.log"
cat >>"$conf" <<CONF
[source nginx]
path = $T/logs/nginx/access*.log
[rule reqs]
source = nginx
event_name = requests
pattern = $NGINX_PATTERN
customer = ip
value = 1
CONF
"$LOGMETER" check -c "$conf" >/dev/null 2>>"$T/agent.log" || fail "check exited $?"

bf() { # bf DIR OUT ARGS...: backfill run from DIR, stdout to OUT, stderr to agent.log; its status
	local dir=$1 out=$2
	shift 2
	(cd "$dir" && timeout 120 "$LOGMETER" backfill -c "$conf" "$@" >"$out" 2>>"$T/agent.log")
}
accepted_of() { # accepted_of EVENT_NAME: events of that name the double accepted
	if [ -f "$T/accepted.tsv" ]; then
		awk -F'\t' -v n="$1" '$2 == n' "$T/accepted.tsv" | wc -l
	else
		echo 0
	fi
}

# --- 1. a bare name, from the nginx directory -----------------------------------------------------
sed -n '1,300p' "$NGINX" | gzip >"$T/logs/nginx/access.log-20261101.gz"
want_reqs=$(zcat "$T/logs/nginx/access.log-20261101.gz" | grep -cP "$NGINX_PATTERN" || true)
[ "$want_reqs" -gt 0 ] || fail "no nginx line matches the pattern"
bf "$T/logs/nginx" "$T/bf1.out" --stamp-now access.log-20261101.gz ||
	fail "backfill of a bare name exited $?: $(tail -n 2 "$T/agent.log")"
assert_eq "$want_reqs" "$(accepted_of requests)" "requests events of the nginx archive"
assert_eq 0 "$(accepted_of bandwidth_bytes)" "bandwidth_bytes events after the nginx archive"
"$LOGMETER" status -c "$conf" | grep -qx "  $T/logs/nginx/access.log-20261101.gz" ||
	fail "the nginx archive's record is not under its absolute path"
note "a bare name billed by the source that reads its directory"

# --- 2. a relative path with a directory and "..", from above -----------------------------------
sed -n '1,400p' "$APACHE" | gzip >"$T/logs/apache/access.log.2.gz"
zcat "$T/logs/apache/access.log.2.gz" >"$T/apache.plain"
want_bytes=$(apache_bytes_count "$T/apache.plain")
[ "$want_bytes" -gt 0 ] || fail "no 2xx line in the apache archive"
bf "$T" "$T/bf2.out" --stamp-now logs/nginx/../apache/access.log.2.gz ||
	fail "backfill of logs/nginx/../apache/access.log.2.gz exited $?: $(tail -n 2 "$T/agent.log")"
assert_eq "$want_bytes" "$(accepted_of bandwidth_bytes)" "bandwidth_bytes events of the apache archive"
assert_eq "$want_reqs" "$(accepted_of requests)" "requests events after the apache archive"
"$LOGMETER" status -c "$conf" | grep -qx "  $T/logs/apache/access.log.2.gz" ||
	fail "the apache archive's record is not under its absolute path"
note "a relative path with '..' billed by the source that reads its directory"

# --- 3. a directory no source reads --------------------------------------------------------------
sed -n '401,500p' "$APACHE" | gzip >"$T/logs/old/access.log.3.gz"
rc=0
bf "$T/logs/old" "$T/bf3.out" --stamp-now access.log.3.gz || rc=$?
assert_eq 2 "$rc" "exit status of a backfill no source's directory holds"
tail -n 1 "$T/agent.log" |
	grep -qF 'access.log.3.gz: no source reads its directory: say which source'"'"'s rules bill it with --source NAME' ||
	fail "the refusal does not ask for --source: $(tail -n 1 "$T/agent.log")"
assert_eq $((want_reqs + want_bytes)) "$(accepted_count)" "events after the refused backfill"
[ -z "$(double_accepted_ids | uniq -d)" ] || fail "an identifier accepted twice"
note "an archive in a directory no source reads refused"

#!/usr/bin/env bash
# How the dumps beside this script were made; not run by `make check`. Run it on the tree of an
# older logmeter (git archive COMMIT | tar -x -C DIR; cd DIR && ./autogen.sh && ./configure &&
# make -C src), with that tree's own tests/lib.sh and Stripe double:
#
#     tests/spools/make-dump.sh DIR OUT.sql
#
# It reads the first lines of the real Apache log (LOGMETER_LOGS) with three rules (five where the
# older logmeter has aggregation windows): delivered events, dead letters of an unmapped customer
# and of a meter the double lacks, events retried after 500s, pending events (the double
# stopped), and dead letters replayed to pending; then dumps the spool the agent left (sqlite3
# .dump).
set -eu
OLD=$(cd "$1" && pwd)
OUT=$2
export top_srcdir=$OLD top_builddir=$OLD LOGMETER=$OLD/src/logmeter
. "$OLD/tests/lib.sh"
lm_init make_dump
DOUBLE_METERS="bandwidth_bytes requests" double_start
mkdir -p "$T/logs"
head -n 60 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
log=$T/logs/access.log
LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {print $1}' "$log" | sort -u > "$T/ips"
awk 'NR > 1 {printf "%s,cus_%06d\n", $1, NR}' "$T/ips" > "$T/customers.csv" # the first IP unmapped
write_config "$T/logmeter.conf"
cat >> "$T/logmeter.conf" <<CONF
[source apache]
path = $log
[rule bytes]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
customer_map = $T/customers.csv
[rule favicon]
source = apache
event_name = downloads
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET /favicon.ico
customer = ip
value = 1
[rule hits]
source = apache
event_name = requests
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "GET [^"]*\.png
customer = ip
value = 1
CONF
# A logmeter with aggregation windows (schema 4 and later) also sums the bytes of 2xx lines per
# customer: in 1-second windows that close while it runs, and in day-long ones still open.
if grep -q '"aggregate"' "$OLD/src/config/config.c"; then
	cat >> "$T/logmeter.conf" <<CONF
[rule bytes_1s]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
customer_map = $T/customers.csv
aggregate = 1s
aggregate_grace = 0s
[rule bytes_day]
source = apache
event_name = bandwidth_bytes
pattern = ^(?<ip>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 2\d\d (?<bytes>\d+)
customer = ip
value = bytes
customer_map = $T/customers.csv
aggregate = 1d
CONF
fi
conf=$T/logmeter.conf
agent_once "$conf" || true
# Answers lost for a few: retried (in schema 2 and later under a new key generation).
head -n 80 "$LOGS/elastic_apache_logs.log" | tail -n 20 >> "$log"
double_faults '500*3' || true
agent_once "$conf" || true
# Stripe down: the next lines stay pending.
double_stop
head -n 100 "$LOGS/elastic_apache_logs.log" | tail -n 20 >> "$log"
agent_start "$conf"
sleep 3
agent_stop || true
# A replay: the dead letters of the unknown meter go back to pending at the queue's end.
"$LOGMETER" replay -c "$conf" --dead --rule favicon >&2 || true
{
	sqlite3 "$T/state/spool.db" .dump
	echo "-- The schema version, which sqlite3's .dump leaves out."
	echo "PRAGMA user_version = $(sqlite3 "$T/state/spool.db" "PRAGMA user_version");"
} > "$OUT"

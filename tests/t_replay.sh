#!/usr/bin/env bash
# Replay: dead letters of a meter that did not exist yet go back to pending once the meter exists
# and are delivered with the identifiers they were dead-lettered with; dead letters of unmapped
# customers are delivered with the right cus_ ids once the customer map has them; --rule,
# --reason and --since select; a running agent picks replayed events up. `replay --delivered`
# re-sends delivered events (Stripe's dedupe answers them, nothing is billed twice) and refuses
# events delivered more than 24 hours ago unless --force; with none selected it warns of nothing
# and says so; --rule of a name that is no rule (a typo) is refused, exit 2. `spool export` is
# checked field by field against what awk and tests/identifiers.py make of the log.
. "$(dirname "$0")/lib.sh"
lm_init replay
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 CLI is needed"
double_start

mkdir -p "$T/logs"
head -n 300 "$LOGS/elastic_apache_logs.log" > "$T/logs/access.log"
log="$T/logs/access.log"
# The customer map lacks two of the IPs that made 2xx requests with a byte count.
LC_ALL=C awk '$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {print $1}' "$log" | sort | uniq -c | sort -rn | awk '{print $2}' > "$T/ips"
missing1=$(sed -n 2p "$T/ips")
missing2=$(sed -n 3p "$T/ips")
awk '{printf "%s,cus_%06d\n", $1, NR}' "$T/ips" > "$T/full.csv"
grep -v -e "^$missing1," -e "^$missing2," "$T/full.csv" > "$T/customers.csv"

write_config "$T/logmeter.conf"
config_apache_bytes "$T/logmeter.conf" "$log" "$T/customers.csv"
cat >> "$T/logmeter.conf" <<CONF
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
conf="$T/logmeter.conf"
db="$T/state/spool.db"
q() { sqlite3 -cmd '.timeout 10000' "$db" "$@"; }
# ids STATE RULE: the ids of the events of RULE in STATE, comma-separated (for SQL).
ids() { export_tsv "$conf" "$1" | awk -F'\t' -v r="$2" '$3 == r {print $1}' | paste -sd,; }

# Expected counts, from the log itself.
n_fav=$(grep -c '"GET /favicon.ico' "$log")
n_bytes=$(apache_bytes_count "$log")
n_unmapped=$(LC_ALL=C awk -v a="$missing1" -v b="$missing2" '($1 == a || $1 == b) && $9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/' "$log" | wc -l)
n_hits=$(grep -cP '^\S+ \S+ \S+ \[[^\]]+\] "GET [^"]*\.png' "$log")
[ "$n_fav" -ge 4 ] && [ "$n_unmapped" -ge 2 ] && [ "$n_hits" -ge 10 ] || fail "test bug: sample lacks cases ($n_fav $n_unmapped $n_hits)"

# The run made dead letters: it exits 1 and counts them last.
rc=0
agent_once "$conf" || rc=$?
assert_eq 1 "$rc" "run --once's exit status with dead letters"
tail -n 1 "$T/agent.log" | grep -q "run --once: during this run $((n_fav + n_unmapped)) events became dead letters: " ||
	fail "run --once's last log line: $(tail -n 1 "$T/agent.log")"
assert_eq "$n_fav" "$(export_count "$conf" dead favicon 'No active meter')" "favicon dead letters (no meter yet)"
assert_eq "$n_unmapped" "$(export_tsv "$conf" dead | awk -F'\t' '$3 == "bytes" && $6 == "" && index($11, "not in customer map")' | wc -l)" "unmapped dead letters"
assert_eq "$((n_bytes - n_unmapped))" "$(export_count "$conf" delivered bytes)" "mapped bytes delivered"
assert_eq "$n_hits" "$(export_count "$conf" delivered hits)" "hits delivered"

# ---- replay --rule: a name that is no rule is refused (exit 2), naming the rules there are ----
rc=0
"$LOGMETER" replay -c "$conf" --dead --rule favicn >"$T/nosuch.out" 2>"$T/nosuch.err" || rc=$?
assert_eq 2 "$rc" "replay --rule of no rule: exit status"
grep -qx "logmeter replay: --rule favicn: no rule of that name, in the configuration or in the spool; the rules: bytes, favicon, hits" "$T/nosuch.err" ||
	fail "replay --rule of no rule: $(cat "$T/nosuch.err")"
[ ! -s "$T/nosuch.out" ] || fail "replay --rule of no rule answered: $(cat "$T/nosuch.out")"
assert_eq "$n_fav" "$(export_count "$conf" dead favicon)" "favicon dead letters after a refused replay"
# A rule removed from the configuration whose events the spool still has: a warning, not an error.
sed '/^\[rule favicon\]$/,/^value = 1$/d' "$conf" >"$T/nofav.conf"
grep -q '^\[rule favicon\]' "$T/nofav.conf" && fail "test bug: rule favicon still in nofav.conf"
out=$("$LOGMETER" replay -c "$T/nofav.conf" --dead --rule favicon --dry-run 2>"$T/nofav.err") ||
	fail "replay --rule of a removed rule exited $?: $(cat "$T/nofav.err")"
grep -q "warning: the configuration has no rule 'favicon' now" "$T/nofav.err" || fail "no warning: $(cat "$T/nofav.err")"
grep -q "rule favicon: $n_fav would move to pending" <<<"$out" || fail "replay --rule of a removed rule: $out"

# ---- spool export: JSON lines, every field, against awk and identifiers.py over the log ----
t_end=$(date +%s)
"$LOGMETER" spool export -c "$conf" > "$T/export_before.jsonl" || fail "spool export exited $?"
uid=$(file_uid "$conf" "$log")
# Every line that a rule makes an event of: offset, rule, event_name, client IP, value.
LC_ALL=C awk '{ip = $1}
	$9 ~ /^2[0-9][0-9]$/ && $10 ~ /^[0-9]+$/ {print off+0 "\tbytes\tbandwidth_bytes\t" ip "\t" $10}
	$6 == "\"GET" && $7 == "/favicon.ico" {print off+0 "\tfavicon\tdownloads\t" ip "\t1"}
	$6 == "\"GET" && $7 ~ /\.png$/ {print off+0 "\thits\trequests\t" ip "\t1"}
	{off += length($0) + 1}' "$log" > "$T/expected.tsv"
for r in bytes favicon hits; do
	awk -F'\t' -v r="$r" '$2 == r {print $1}' "$T/expected.tsv" | identifiers_of apache "$uid" "$r" > "$T/ids.$r"
	paste "$T/ids.$r" <(awk -F'\t' -v r="$r" '$2 == r' "$T/expected.tsv") >> "$T/expected_ids.tsv"
done
"$PYTHON3" - "$T/export_before.jsonl" "$T/expected_ids.tsv" "$T/customers.csv" "$log" "$t_end" <<'PY' || fail "spool export differs from the log"
import json, sys
rows = {o["identifier"]: o for o in map(json.loads, open(sys.argv[1], encoding="utf-8"))}
cmap = dict(l.strip().split(",") for l in open(sys.argv[3]))
want = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
assert len(want) == len(rows), (len(want), len(rows))
for ident, off, rule, name, ip, value in want:
    o = rows[ident]
    unmapped = rule == "bytes" and ip not in cmap
    cust = "" if unmapped else cmap[ip] if rule == "bytes" else ip
    state = "dead" if unmapped or rule == "favicon" else "delivered"
    exp = {"event_name": name, "payload": {"stripe_customer_id": cust, "value": value},
           "customer_key": ip, "state": state, "attempts": 0 if unmapped else 1,
           "key_generation": 0, "first_unknown": None, "rule": rule, "file": sys.argv[4],
           "line_offset": int(off)}
    for k, v in exp.items():
        assert o[k] == v, (ident, k, o[k], v)
    # Read, then sent: the read time is the timestamp, and the spool's times follow it.
    assert o["created"] >= o["timestamp"] and o["created"] <= int(sys.argv[5]), o
    if state == "delivered":
        assert o["last_error"] is None and o["timestamp"] <= o["delivered_at"] <= int(sys.argv[5]), o
    else:
        assert o["delivered_at"] is None and o["last_error"], o
assert len({o["id"] for o in rows.values()}) == len(rows)
print("export matches %d events" % len(rows))
PY
"$LOGMETER" spool export -c "$conf" --state dead > "$T/export_dead.jsonl" || fail "export --state dead"
assert_eq "$((n_fav + n_unmapped))" "$(wc -l < "$T/export_dead.jsonl")" "export --state dead lines"
"$PYTHON3" -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]; assert all(json.loads(l)["state"] == "dead" for l in open(sys.argv[1]))' "$T/export_dead.jsonl" || fail "export --state dead has other states"
"$LOGMETER" spool export -c "$conf" --state bogus >/dev/null 2>&1 && fail "export --state bogus accepted"

# Identifiers of the dead letters before any replay: the reference.
"$PYTHON3" -c '
import json, sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o["state"] == "dead" and o["rule"] == sys.argv[2]:
        print(o["identifier"])' "$T/export_before.jsonl" favicon | sort > "$T/fav_ids"
assert_eq "$n_fav" "$(wc -l < "$T/fav_ids")" "favicon identifiers in the export"

# ---- filters that select nothing move nothing ----
out=$("$LOGMETER" replay -c "$conf" --dead --rule favicon --reason 'no such reason text') || fail "replay --reason exited $?"
grep -q "replay: 0 events moved" <<<"$out" || fail "--reason matched: $out"
out=$("$LOGMETER" replay -c "$conf" --dead --since "@$(( $(date +%s) + 3600 ))") || fail "replay --since future exited $?"
grep -q "replay: 0 events moved" <<<"$out" || fail "--since in the future matched: $out"
out=$("$LOGMETER" replay -c "$conf" --dead --rule favicon --dry-run) || fail "dry run exited $?"
grep -q "rule favicon: $n_fav would move to pending" <<<"$out" || fail "dry run: $out"
assert_eq "$n_fav" "$(export_count "$conf" dead favicon)" "dry run moved nothing"
"$LOGMETER" replay -c "$conf" --dead --since yesterday >/dev/null 2>&1 && fail "--since yesterday accepted"
"$LOGMETER" replay -c "$conf" --dead --delivered >/dev/null 2>&1 && fail "--dead --delivered accepted"

# ---- the meter now exists: --since takes the recently dead half, --reason the rest ----
DOUBLE_METERS="bandwidth_bytes requests downloads" double_restart
half=$((n_fav / 2))
# Dead letters have rows of outcomes (docs/spool.md): age the first half by two days.
q "UPDATE outcomes SET updated = updated - 2 * 86400 WHERE id IN ($(ids dead favicon | cut -d, -f1-$half))"
out=$("$LOGMETER" replay -c "$conf" --dead --rule favicon --since 1d) || fail "replay --since 1d exited $?"
grep -q "rule favicon: $((n_fav - half)) moved to pending" <<<"$out" || fail "replay --since 1d: $out"
assert_eq "$half" "$(export_count "$conf" dead favicon)" "older dead letters stayed"
agent_once "$conf" || fail "run --once after replay exited $?"
assert_eq "$((n_fav - half))" "$(grep -c $'\tdownloads\t' "$T/accepted.tsv")" "replayed favicon events delivered by run --once"

# A running agent picks up what a replay moves behind its cursor.
agent_start "$conf"
wait_until 60 grep -q "started" "$T/agent.log" || fail "agent did not start"
out=$("$LOGMETER" replay -c "$conf" --dead --reason 'No active meter found') || fail "replay --reason exited $?"
grep -q "rule favicon: $half moved to pending" <<<"$out" || fail "replay --reason: $out"
wait_until 30 eval '[ "$(grep -c $'"'"'\tdownloads\t'"'"' "$T/accepted.tsv")" -ge '"$n_fav"' ]' || fail "the running agent did not send the replayed events"
grep $'\tdownloads\t' "$T/accepted.tsv" | cut -f1 | sort > "$T/fav_accepted"
diff -u "$T/fav_ids" "$T/fav_accepted" > "$T/diff" || fail "replayed events were sent with other identifiers: $(head "$T/diff")"

# ---- unmapped customers: still unmapped stay dead; once in the map, delivered with the cus_ id ----
out=$("$LOGMETER" replay -c "$conf" --dead --rule bytes) || fail "replay (unmapped) exited $?"
grep -q "rule bytes: 0 moved to pending; $n_unmapped kept: customer key still not in the customer map" <<<"$out" || fail "replay before the map is fixed: $out"
export_tsv "$conf" dead | awk -F'\t' '$3 == "bytes" {print $2}' | sort > "$T/unmapped_ids"
cp "$T/full.csv" "$T/customers.csv"
out=$("$LOGMETER" replay -c "$conf" --dead --rule bytes) || fail "replay (mapped) exited $?"
grep -q "rule bytes: $n_unmapped moved to pending ($n_unmapped with their customer now mapped)" <<<"$out" || fail "replay after the map is fixed: $out"
wait_until 30 eval '[ "$(export_count "$conf" delivered bytes)" -eq '"$n_bytes"' ]' || fail "re-mapped events not delivered"
# Each was accepted once, with its identifier from before and the customer the map gives its IP.
export_tsv "$conf" | awk -F'\t' 'NR == FNR {want[$1] = 1; next} ($2 in want) {print $2 "\t" $5}' "$T/unmapped_ids" - | sort > "$T/remapped"
assert_eq "$n_unmapped" "$(wc -l < "$T/remapped")" "re-mapped events"
while IFS=$'\t' read -r id ip; do
	want=$(grep "^$ip," "$T/full.csv" | cut -d, -f2)
	got=$(awk -F'\t' -v id="$id" '$1 == id {print $3}' "$T/accepted.tsv")
	assert_eq "$want" "$got" "customer of re-mapped event $id ($ip)"
done < "$T/remapped"

# ---- replay --delivered within 24 hours: re-sent, deduped by Stripe, not billed twice ----
before=$(accepted_count)
cp "$T/accepted.tsv" "$T/accepted_before.tsv"
dups_before=$(( $(double_stat duplicates) + $(double_stat replays) ))
out=$("$LOGMETER" replay -c "$conf" --delivered --since 1h --rule hits 2>"$T/warn") || fail "replay --delivered exited $?"
grep -q "Stripe dedupes event identifiers for 24 hours only" "$T/warn" || fail "no dedupe warning: $(cat "$T/warn")"
grep -q "rule hits: $n_hits moved to pending" <<<"$out" || fail "replay --delivered: $out"
wait_until 30 eval '[ "$(export_count "$conf" delivered hits)" -eq '"$n_hits"' ]' || fail "re-sent delivered events not marked delivered again"
wait_until 60 eval '[ $(( $(double_stat duplicates) + $(double_stat replays) )) -ge $(( dups_before + n_hits )) ]' || fail "the double did not see $n_hits re-sends"
assert_eq "$before" "$(accepted_count)" "events accepted (billed) after the re-send"
cmp -s "$T/accepted_before.tsv" "$T/accepted.tsv" || fail "the accepted record changed"
# None delivered since tomorrow: nothing selected, so no warning, nothing moved, exit 0.
tomorrow=$(($(date +%s) + 86400))
"$LOGMETER" replay -c "$conf" --delivered --since "@$tomorrow" --rule hits > "$T/replay_none.out" 2> "$T/replay_none.err" ||
	fail "replay --delivered --since tomorrow exited $?: $(cat "$T/replay_none.err")"
grep -qx "replay: nothing delivered: no event is delivered of rule hits since $(date -u -d "@$tomorrow" +%Y-%m-%dT%H:%M:%SZ)" "$T/replay_none.out" ||
	fail "replay --delivered --since tomorrow: $(cat "$T/replay_none.out")"
[ ! -s "$T/replay_none.err" ] || fail "replay --delivered --since tomorrow warned: $(cat "$T/replay_none.err")"
assert_eq "$n_hits" "$(export_count "$conf" delivered hits)" "delivered after a replay that selected none"
agent_stop || fail "agent exited $? on SIGTERM"

# ---- delivered more than 24 hours ago: refused without --force ----
old=$(( $(date +%s) - 2 * 86400 ))
# Replayed and delivered again, they have rows of outcomes with their delivery time.
q "UPDATE outcomes SET delivered_at = $old, updated = $old WHERE id IN ($(ids delivered hits | cut -d, -f1-3))"
rc=0
out=$("$LOGMETER" replay -c "$conf" --delivered --since 3d --rule hits 2>"$T/warn") || rc=$?
assert_eq 1 "$rc" "exit code of a refused replay --delivered"
grep -q "3 of the selected events were delivered more than 24 hours ago" "$T/warn" || fail "refusal message: $(cat "$T/warn")"
assert_eq "$n_hits" "$(export_count "$conf" delivered hits)" "a refused replay moved nothing"
out=$("$LOGMETER" replay -c "$conf" --delivered --since 3d --rule hits --force 2>"$T/warn") || fail "replay --force exited $?"
grep -q "rule hits: $n_hits moved to pending" <<<"$out" || fail "replay --force: $out"
assert_eq "$n_hits" "$(export_count "$conf" pending hits)" "forced replay moved all"
# Replayed events keep identifier and payload; their queue positions come after every other
# event's: those of the batches, and of the other rows of outcomes.
hits=$(ids pending hits)
assert_eq "$n_hits" "$(q "SELECT count(*) FROM outcomes WHERE id IN ($hits) AND state = 0 AND queue_seq > max((SELECT max(queue_seq + n - 1) FROM batches), (SELECT coalesce(max(queue_seq), 0) FROM outcomes WHERE id NOT IN ($hits)))")" "replayed events are after the others"
agent_once "$conf" || fail "run --once after the forced replay exited $?"
assert_eq "$n_hits" "$(export_count "$conf" delivered hits)" "forced replay delivered"
# Identifiers unchanged from the first export.
"$LOGMETER" spool export -c "$conf" > "$T/export_after.jsonl" || fail "export after"
"$PYTHON3" - "$T/export_before.jsonl" "$T/export_after.jsonl" <<'PY' || fail "identifiers or payloads changed"
import json, sys
def load(p):
    return {(o["file_id"], o["line_offset"], o["rule"]): o for o in map(json.loads, open(p))}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
for k in a:
    assert a[k]["id"] == b[k]["id"], k  # ids never change, replays included
    assert a[k]["identifier"] == b[k]["identifier"], k
    assert a[k]["timestamp"] == b[k]["timestamp"], k
    if a[k]["payload"] != b[k]["payload"]:
        assert a[k]["rule"] == "bytes" and a[k]["state"] == "dead", k  # only re-mapped ones
PY
echo "t_replay: $n_fav favicon and $n_unmapped unmapped dead letters replayed and delivered once; $n_hits delivered events re-sent without a second billing"

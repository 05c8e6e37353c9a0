#!/usr/bin/env bash
# Two rename rotations while logmeter is stopped, with logrotate's `extension .log`, which keeps
# the extension at the end of a rotated file's name (logrotate(8): app.log -> app.1.log, and
# with dateext app-20261207.log). Three sources, each reading only its app.log:
#   num: numbered (app.log -> app.1.log -> app.2.log); lines written to app.log after the
#        checkpoint before the first rotation. The record's file is found by inode as app.2.log
#        and read on; app.1.log, the file that came after it and was never seen, is found beside
#        it by its name and read to its end. app-2.log beside them is another log (not a name
#        extension and a number of logrotate's give): it changed too, but is not read.
#   date: dateext with `dateformat -%Y-%m-%d-%s` (app-2026-12-06-1765065600.log, then
#        app-2026-12-07-1765152000.log): the same with dates.
#   dz: numbered with compress and delaycompress: the second rotation compresses the record's
#        file (app.2.log.gz, excluded), which is gone; app.1.log is still found by its name.
# Before, a rotation named with the extension kept at the end was never looked for: app.1.log
# and app-2026-12-07-1765152000.log were lost without a word. Every rid written is accepted once
# (rids and offsets by awk and python over the files, identifiers by tests/identifiers.py).
. "$(dirname "$0")/lib.sh"
lm_init rotation_stopped_extension
. "$top_srcdir/tests/tail_lib.sh"
double_start

conf=$T/logmeter.conf
write_config "$conf"
for s in num date dz; do
	mkdir -p "$T/$s"
	rule_conf "$s" "$T/$s/app.log" >> "$conf"
done
N=$T/num/app.log D=$T/date/app.log Z=$T/dz/app.log
writer_init

for f in "$N" "$D" "$Z"; do put_rids "$f" 10; done
agent_start "$conf"
wait_until 60 delivered || fail "first lines not delivered: $(accepted_count) of $written"
agent_stop || fail "agent did not stop cleanly"

# num: lines after the checkpoint, rotation 1, a new app.log, rotation 2, a third app.log.
put_rids "$N" 10
mv "$N" "$T/num/app.1.log"
put_rids "$N" 10
mv "$T/num/app.1.log" "$T/num/app.2.log"
mv "$N" "$T/num/app.1.log"
put_rids "$N" 10
# Another log of the directory, written meanwhile: rids far above the writer's, never expected.
lines 900001 5 >> "$T/num/app-2.log"

# date: the same with dateext and a dateformat with %s.
put_rids "$D" 10
mv "$D" "$T/date/app-2026-12-06-1765065600.log"
put_rids "$D" 10
mv "$D" "$T/date/app-2026-12-07-1765152000.log"
put_rids "$D" 10

# dz: rotation 1 (delaycompress: not compressed yet), then rotation 2 in logrotate's order:
# rename, create the new log, compress the file logmeter read.
mv "$Z" "$T/dz/app.1.log"
put_rids "$Z" 10
mv "$T/dz/app.1.log" "$T/dz/app.2.log"
mv "$Z" "$T/dz/app.1.log"
put_rids "$Z" 10
gzip "$T/dz/app.2.log"

agent_start "$conf"
wait_until 60 delivered || fail "after two rotations while stopped: $(accepted_count) of $written accepted"
wait_until 60 caught_up "$conf" || fail "the agent did not catch up"
agent_stop || fail "agent did not stop cleanly"

# The rids on disk, by awk (the compressed file through zcat): every one written, once.
assert_eq "$(seq 1 "$written" | tr '\n' ' ')" \
	"$( (cat "$T"/num/app*.log "$T"/date/app*.log "$T"/dz/app*.log; zcat "$T/dz/app.2.log.gz") |
		LC_ALL=C awk '{ sub(/.* rid=/, ""); if ($0 + 0 < 900001) print }' | sort -n | tr '\n' ' ')" \
	"test bug: rids on disk"
: > "$T/expected_ids"
: > "$T/expected_rids"
expect_file "$conf" num "$N" "$T/num/app.1.log" "$T/num/app.2.log"
expect_file "$conf" date "$D" "$T/date/app-2026-12-06-1765065600.log" "$T/date/app-2026-12-07-1765152000.log"
expect_file "$conf" dz "$Z" "$T/dz/app.1.log"
# dz's first file is compressed now: its rids by awk, its identifiers those accepted for them.
zcat "$T/dz/app.2.log.gz" | LC_ALL=C awk '{ sub(/.* rid=/, ""); print }' > "$T/gz_rids"
assert_eq 10 "$(wc -l < "$T/gz_rids")" "rids in app.2.log.gz"
cat "$T/gz_rids" >> "$T/expected_rids"
LC_ALL=C awk -F'\t' 'NR == FNR { r[$1] = 1; next } ($4 in r) { print $1 }' "$T/gz_rids" \
	"$T/accepted.tsv" >> "$T/expected_ids"
check_accepted

for f in "$T/num/app.1.log" "$T/date/app-2026-12-07-1765152000.log" "$T/dz/app.1.log"; do
	assert_eq 1 "$(grep -cF "$f: rotated from ${f%/*}/app.log while logmeter was stopped, and never read" "$T/agent.log")" \
		"$f announced as a rotation never read"
done
assert_eq 3 "$(tailing_warning "$conf" rotated_stopped | cut -d' ' -f1)" "status --json: files rotated while stopped"
grep -qF "app-2.log" "$T/agent.log" && fail "app-2.log, another log, was looked at: $(grep -F app-2.log "$T/agent.log")"
echo "t_rotation_stopped_extension: $written rids each accepted once through rotations named with extension .log"

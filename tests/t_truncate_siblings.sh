#!/usr/bin/env bash
# Several files of one directory, matched by one glob, read by `run --once`; then, while logmeter
# is stopped, each is truncated and written again in place with other, shorter content (or deleted
# and created again); then `run --once` twice. Each file's checkpoint is stale at the next start,
# so each gets a new record that reads it from the start, and each tail, looking for a copy of its
# file among the others, finds the others' new records, which have read nothing yet. Those records
# were deleted as if their files had only been seen empty, and SQLite gave the deleted id to the
# next file's new record: two tails read under one record, one file's lines were committed as the
# other's (and counted as read, so lost) and the other was read again at the next start (billed
# twice). Every line written must be billed once: the values are the lines' rids, the expected ones
# computed from the files' versions (tail_lib.sh's rids_of).
. "$(dirname "$0")/lib.sh"
lm_init truncate_siblings
. "$top_srcdir/tests/tail_lib.sh"
double_start

rid=1
# scenario NAME K MODE: K files in their own directory, with their own spool; MODE "truncate"
# (`: > f` then `> f`) or "recreate" (rm, then written).
scenario() {
	local name=$1 k=$2 mode=$3 dir=$T/$1 conf=$T/$1.conf i f before bad
	note "$name: $k files, $mode while stopped"
	mkdir -p "$dir"
	mkdir -m 700 "$T/state_$name"
	write_config "$conf"
	sed -i "s|^state_dir = .*|state_dir = $T/state_$name|" "$conf"
	rule_conf "$name" "$dir/*.log" >> "$conf"
	: > "$T/$name.want"
	before=$(accepted_count)
	for i in $(seq -w 1 "$k"); do
		f=$dir/f$i.log
		lines "$rid" 100 > "$f"
		rid=$((rid + 100))
		rids_of "$f" >> "$T/$name.want"
	done
	agent_once "$conf" || fail "$name: the first run failed (agent.log)"
	for i in $(seq -w 1 "$k"); do
		f=$dir/f$i.log
		if [ "$mode" = truncate ]; then
			: > "$f"
		else
			rm "$f"
		fi
		lines "$rid" 50 > "$f"
		rid=$((rid + 50))
		rids_of "$f" >> "$T/$name.want"
	done
	agent_once "$conf" || fail "$name: the second run failed (agent.log)"
	agent_once "$conf" || fail "$name: the third run failed (agent.log)"
	sort -n "$T/$name.want" > "$T/$name.want.sorted"
	tail -n +$((before + 1)) "$T/accepted.tsv" | cut -f4 | sort -n > "$T/$name.got"
	diff -u "$T/$name.want.sorted" "$T/$name.got" > "$T/$name.diff" ||
		fail "$name: accepted values differ from the lines written (- lost, + twice): $(grep -c '^-[0-9]' "$T/$name.diff") lost, $(grep -c '^+[0-9]' "$T/$name.diff") twice"
	# No record holds lines past its file's end: a batch read from another file would.
	bad=$(spool_sql "$conf" "SELECT count(*) FROM batches b JOIN files f ON f.id = b.file_id
	                         WHERE b.end_offset > f.size")
	assert_eq 0 "$bad" "$name: batches past their record's file size"
}

# copy_held: two files read; while logmeter is stopped, the first is truncated and written again
# with the first lines of the second (a copy of them), and the second is truncated and written
# again. At the start the first file's tail, its checkpoint stale, takes a new record, which reads
# nothing yet; then the second file's tail, its checkpoint stale too, finds the first file a copy
# of lines it read: the first file's new record is deleted, and the copy's record (read to its end)
# gets its id. The first file's tail must take that record, and not read the copy under the id.
copy_held() {
	local dir=$T/held conf=$T/held.conf before
	note "held: a file rewritten with a copy of its sibling's first lines while stopped"
	mkdir -p "$dir"
	mkdir -m 700 "$T/state_held"
	write_config "$conf"
	sed -i "s|^state_dir = .*|state_dir = $T/state_held|" "$conf"
	rule_conf held "$dir/*.log" >> "$conf"
	before=$(accepted_count)
	lines "$rid" 100 > "$dir/a.log"
	lines $((rid + 100)) 100 > "$dir/b.log"
	rid=$((rid + 200))
	rids_of "$dir/a.log" "$dir/b.log" > "$T/held.want"
	agent_once "$conf" || fail "held: the first run failed (agent.log)"
	: > "$dir/a.log"
	head -n 30 "$dir/b.log" > "$dir/a.log"
	: > "$dir/b.log"
	lines "$rid" 50 > "$dir/b.log"
	rid=$((rid + 50))
	rids_of "$dir/b.log" >> "$T/held.want"
	agent_once "$conf" || fail "held: the second run failed (agent.log)"
	agent_once "$conf" || fail "held: the third run failed (agent.log)"
	sort -n "$T/held.want" > "$T/held.want.sorted"
	tail -n +$((before + 1)) "$T/accepted.tsv" | cut -f4 | sort -n > "$T/held.got"
	diff -u "$T/held.want.sorted" "$T/held.got" > "$T/held.diff" ||
		fail "held: accepted values differ from the lines written (- lost, + twice): $(grep -c '^-[0-9]' "$T/held.diff") lost, $(grep -c '^+[0-9]' "$T/held.diff") twice"
}

scenario two 2 truncate
scenario three 3 truncate
scenario ten 10 truncate
scenario two_new 2 recreate
scenario ten_new 10 recreate
copy_held
echo "t_truncate_siblings: every line billed once across files of one directory truncated or recreated while stopped"

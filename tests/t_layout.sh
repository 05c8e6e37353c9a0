#!/usr/bin/env bash
# The folders of src/ show the data flow, and the includes keep to it (docs/architecture.md,
# "Layout"): a folder includes only itself and the folders listed for it below. In particular
# ingest/ and send/ never include each other: the two halves meet only in the spool (store/).
. "$(dirname "$0")/lib.sh"
lm_init layout

# folder: the folders it may include besides itself
declare -A allowed=(
	[util]=""
	[config]="util"
	[core]="util config"
	[store]="util config core"
	[ingest]="util config core store"
	[send]="util config core store"
	[report]="util config core store ingest send"
	[cli]="util config core store ingest send report"
)
src=$top_srcdir/src
bad=0
for f in "$src"/*/*.[ch] "$src"/main.c; do
	rel=${f#"$src"/}
	dir=${rel%%/*}
	[ "$dir" = main.c ] && dir=main
	while IFS= read -r inc; do
		to=${inc%%/*}
		if [ "$to" = "$inc" ]; then
			echo "$rel: #include \"$inc\" names no folder" >&2
			bad=1
			continue
		fi
		[ -d "$src/$to" ] || { echo "$rel: #include \"$inc\": no folder src/$to" >&2; bad=1; continue; }
		[ "$to" = "$dir" ] && continue
		if [ "$dir" = main ]; then
			case $to in cli | config | util) continue ;; esac
		elif [[ " ${allowed[$dir]-MISSING} " == *" $to "* ]]; then
			continue
		fi
		[ -n "${allowed[$dir]+set}" ] || [ "$dir" = main ] || { echo "$rel: src/$dir is not a known folder (add it to tests/t_layout.sh and docs/architecture.md)" >&2; bad=1; continue; }
		echo "$rel: $dir/ may not include $inc" >&2
		bad=1
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done
ls "$src"/*.c | grep -qvx "$src/main.c" && { echo "sources directly in src/ besides main.c: $(ls "$src"/*.c)" >&2; bad=1; }
[ "$bad" = 0 ] || fail "includes break the layout (see above)"
note "every include keeps to the layout of docs/architecture.md"

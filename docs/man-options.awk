# Builds logmeter.conf(5): reads `logmeter options` (first input: "[section] key (type; default
# D; bounds)" lines, each followed by a tab-indented description), then the template (second
# input), and prints the template with the line "@OPTIONS@" replaced by one .SS per section and
# one .TP per option.
function esc(s) {
	gsub(/\\/, "\\e", s)
	gsub(/-/, "\\-", s)
	return s
}
FNR == NR {
	if ($0 ~ /^\[/) {
		sec = $0
		sub(/\].*/, "]", sec)
		rest = substr($0, length(sec) + 2)
		key = rest
		sub(/ .*/, "", key)
		meta = substr(rest, length(key) + 2)
		if (sec != last) {
			opts = opts ".SS " esc(sec) "\n"
			last = sec
		}
		opts = opts ".TP\n.B " esc(key) "\n" esc(meta) "\n"
		n++
	} else if ($0 ~ /^\t/) {
		d = $0
		sub(/^\t/, "", d)
		d = esc(d)
		# A line of troff must not start with a control character.
		if (d ~ /^[.']/)
			d = "\\&" d
		opts = opts ".br\n" d "\n"
	}
	next
}
$0 == "@OPTIONS@" {
	if (n == 0) {
		print "man-options.awk: no options read" > "/dev/stderr"
		exit 1
	}
	printf "%s", opts
	next
}
{ print }

#!/bin/sh
# SPDX-License-Identifier: MIT
# Control characters in names never reach the terminal raw: a tensor name
# with ESC [31m and BEL, a file name with ESC and a newline, and (from a
# hostile catalog) a model name with an OSC sequence are shown as \xHH by
# ls, info, verify (DAMAGED lines too), eval and in error lines, while the
# JSON outputs carry the exact names.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
EVIL=$(printf 'evil\033[31mred\007bell')
st_py "$T/b.safetensors" '{"evil\x1b[31mred\x07bell":
	np.linspace(-1, 1, 1 << 19).reshape(512, 1024), "ok": np.ones(8)}'
st_py "$T/f.safetensors" '{"evil\x1b[31mred\x07bell":
	np.linspace(-1, 1, 1 << 19).reshape(512, 1024) * 1.01, "ok": np.ones(8)}'
st_py "$T/other.safetensors" '{"ok": np.ones(8)}'
mkdir "$T/dir"
cp "$T/f.safetensors" "$T/dir/model.safetensors"
echo '{}' >"$T/dir/$(printf 'con\033[2Jfig\nx.json')"
must "add-base" "$UC" add-base -q "$S" base "$T/b.safetensors"
must "add ft" "$UC" add -q "$S" --base base --lossless ft="$T/f.safetensors"
must "add lo" "$UC" add -q "$S" --base base --sparsity 0.5 \
	lo="$T/f.safetensors"
# The file name with a newline: stored and shown escaped, or refused in
# one escaped line.
run "$UC" add -q "$S" --base base --lossless dir="$T/dir"
cat "$T/out" "$T/err" >"$T/all"
if [ "$rc" -ne 0 ]; then
	[ "$(wc -l <"$T/err")" -eq 1 ] ||
		fail "add of a control-character file name: $(cat "$T/err")"
fi
# A hostile catalog: a model name with an OSC (window title) sequence.
sqlite3 "$S/catalog.db" \
	"UPDATE models SET name = 'm' || char(27) || ']0;owned' || char(7) WHERE name = 'lo'"
M=$(printf 'm\033]0;owned\007')

# cmds: every command whose output may show one of the names.
{
	echo "ls $S"
	echo "info $S ft"
	echo "info $S lo-renamed"
	echo "verify $S"
	echo "eval $S ft --against $T/f.safetensors"
	echo "eval $S ft --against $T/other.safetensors"
	echo "info $S dir"
	echo "export $S dir $T/exp"
} >"$T/cmds"
check_output() { # DESC: $T/out and $T/err hold no raw ESC, BEL or CR
	n=$(cat "$T/out" "$T/err" | tr -d -c '\033\007\015' | wc -c)
	[ "$n" -eq 0 ] || fail "$1: $n raw control bytes in the output"
}
while read -r c; do
	# shellcheck disable=SC2086 # the command line splits on purpose
	set -- $c
	[ "${3:-}" = lo-renamed ] && set -- "$1" "$2" "$M"
	run "$UDFS" "$@"
	check_output "udfs $c"
	cat "$T/out" "$T/err" >>"$T/all"
done <"$T/cmds"
grep -q -F 'evil\x1b[31mred\x07bell' "$T/all" ||
	fail "the tensor name is not shown escaped: $(grep evil "$T/all" | head -n 2)"
grep -q -F 'm\x1b]0;owned\x07' "$T/all" ||
	fail "the model name is not shown escaped"

# Error lines: one line, escaped.
one_line_error "info of a missing name" udfs "$UDFS" info "$S" "$EVIL"
check_output "info of a missing name"
one_line_error "eval against a file without the tensor" udfs \
	"$UDFS" eval "$S" ft --against "$T/other.safetensors"
check_output "eval error"

# JSON keeps the exact names.
ok "info --json" "$UDFS" info --json "$S" ft
cp "$T/out" "$T/i.json"
json_check "$T/i.json" \
	'"evil\x1b[31mred\x07bell" in [t["name"] for t in j["files"][0]["tensors"]]' ||
	fail "info --json lost the tensor name"
ok "ls --json" "$UDFS" ls --json "$S"
cp "$T/out" "$T/l.json"
json_check "$T/l.json" '"m\x1b]0;owned\x07" in [m["name"] for m in j]' ||
	fail "ls --json lost the model name"

# A damaged chunk of the evil tensor: the DAMAGED line is escaped too.
damage_pack "$S" ft || die "damage ft"
run "$UDFS" verify "$S" ft
[ "$rc" -eq 1 ] || fail "verify of a damaged model: exit $rc"
grep -q -F 'DAMAGED model ft: file f.safetensors: tensor "evil\x1b[31mred\x07bell"' \
	"$T/out" || fail "verify: no escaped DAMAGED line: $(cat "$T/out")"
check_output "verify of damage"
finish

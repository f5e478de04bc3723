#!/bin/sh
# SPDX-License-Identifier: MIT
# Bad input of every kind: malformed safetensors sources, missing base,
# name clashes, invalid model names, missing sources, malformed NAME=SRC,
# unknown options, out-of-range numbers, --lossless with lossy options, an
# unwritable or full store, an export target that exists. Each must exit
# non-zero with exactly one line on stderr that starts with the program
# name, and leave the store exactly as it was (catalog dump and file
# hashes compared before and after).
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 1 --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add ft" "$UC" add -q "$S" --base base --lossless ft="$T/ft.safetensors"

# usage DESC STORE PROG CMD...: a usage error: bad (one line, store
# unchanged), and exit status 2 (udfs(1), udfs-compress(1) EXIT STATUS).
usage() {
	bad "$@"
	[ "$rc" -eq 2 ] || fail "$1: exit $rc, expected 2 (usage error)"
}

# le64 N: N as 8 little-endian bytes.
le64() {
	_n=$1 _i=0
	while [ $_i -lt 8 ]; do
		printf "\\$(printf %03o $((_n % 256)))"
		_n=$((_n / 256))
		_i=$((_i + 1))
	done
}

# st FILE HEADER DATA-BYTES: a safetensors file with that JSON header
# followed by DATA-BYTES zero bytes.
st() {
	{
		le64 ${#2}
		printf '%s' "$2"
		head -c "$3" /dev/zero
	} >"$1"
}

B=$T/bad
mkdir "$B"
# A good tiny file, to be sure the helpers write valid files.
st "$B/good.safetensors" '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8
must "tiny good file" "$UC" add -q "$S" --base base --lossless \
	tiny="$B/good.safetensors"
must "rm tiny" "$UDFS" rm "$S" tiny

size=$(wc -c <"$T/ft.safetensors")
head -c $((size - 100)) "$T/ft.safetensors" >"$B/truncated.safetensors"
head -c 5 "$T/ft.safetensors" >"$B/tiny.safetensors"
: >"$B/empty.safetensors"
{
	le64 912
	printf '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
	head -c 8 /dev/zero
} >"$B/hdrpast.safetensors"
st "$B/notjson.safetensors" 'this is not JSON at all!' 8
st "$B/notobject.safetensors" '[1,2,3]' 0
st "$B/dtype.safetensors" '{"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}' 8
st "$B/hole.safetensors" \
	'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}' 20
st "$B/overlap.safetensors" \
	'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' 12
st "$B/shape.safetensors" '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}' 8
st "$B/short.safetensors" '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
cat "$B/good.safetensors" >"$B/trailing.safetensors"
printf 'xyz' >>"$B/trailing.safetensors"
st "$B/dup.safetensors" \
	'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8
st "$B/negshape.safetensors" '{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}' 8
# A model directory whose second shard is broken: nothing may be written.
gen shard "$T/ft.safetensors" "$B/shards" --shards 2
s2=$(ls "$B/shards"/*-00002-of-00002.safetensors)
head -c 1000 "$s2" >"$s2.cut" && mv "$s2.cut" "$s2"

for f in truncated tiny empty hdrpast notjson notobject dtype hole overlap \
	shape short trailing dup negshape; do
	bad "$f source (add)" "$S" udfs-compress \
		"$UC" add -q "$S" --base base --lossless "x=$B/$f.safetensors"
	bad "$f source (add-base)" "$S" udfs-compress \
		"$UC" add-base -q "$S" x "$B/$f.safetensors"
done
bad "broken shard in a directory" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless x="$B/shards"
bad "broken second source of a group" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless x="$T/ft.safetensors" \
	y="$B/hole.safetensors"
bad "broken source, lossy" "$S" udfs-compress \
	"$UC" add -q "$S" --base base x="$B/truncated.safetensors"
bad "not a safetensors file" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless x="$UDFS_TOP/Makefile"
mkdir "$B/emptydir"
bad "empty directory" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless x="$B/emptydir"

# Base, names, sources.
bad "missing base" "$S" udfs-compress \
	"$UC" add -q "$S" --base nobase --lossless x="$T/ft.safetensors"
bad "delta as base" "$S" udfs-compress \
	"$UC" add -q "$S" --base ft --lossless x="$T/ft.safetensors"
usage "no --base" "$S" udfs-compress \
	"$UC" add -q "$S" --lossless x="$T/ft.safetensors"
bad "name clash (add)" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless ft="$T/ft.safetensors"
bad "name clash with a base" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless base="$T/ft.safetensors"
bad "name clash (add-base)" "$S" udfs-compress \
	"$UC" add-base -q "$S" ft "$T/base.safetensors"
bad "name twice in a group" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless x="$T/ft.safetensors" \
	x="$T/ft.safetensors"
tab=$(printf 'a\tb')
nl=$(printf 'a\nb')
for name in a/b .x -x "" "$tab" "$nl" 'a\b'; do
	bad "invalid name '$name' (add)" "$S" udfs-compress \
		"$UC" add -q "$S" --base base --lossless -- \
		"$name=$T/ft.safetensors"
	bad "invalid name '$name' (add-base)" "$S" udfs-compress \
		"$UC" add-base -q -- "$S" "$name" "$T/base.safetensors"
done
long=$(head -c 300 /dev/zero | tr '\0' n)
bad "name too long" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless "$long=$T/ft.safetensors"
bad "missing source" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless x="$T/nonexistent"
bad "missing source (add-base)" "$S" udfs-compress \
	"$UC" add-base -q "$S" x "$T/nonexistent"
usage "NAME=SRC without =" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless "$T/ft.safetensors"
usage "NAME= without SRC" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless "x="
usage "no NAME=SRC at all" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless

# Options and numbers.
usage "unknown option" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --frobnicate x="$T/ft.safetensors"
usage "unknown short option" "$S" udfs-compress \
	"$UC" add -Z "$S" --base base x="$T/ft.safetensors"
usage "missing option argument" "$S" udfs-compress \
	"$UC" add -q "$S" x="$T/ft.safetensors" --base
for o in "--bits 9" "--bits 0" "--bits x" "--sparsity 2" "--sparsity -0.1" \
	"--sparsity abc" "--sparsity nan" "--step 1" "--ratio 0.5" \
	"--mask none" "--method zip" "--method xor" "--min-elems 0" \
	"--seed -1" "--seed 1x" "--jobs 0" "--jobs 1000" "--level 0" \
	"--level 23" "--bits 99999999999999999999999"; do
	# shellcheck disable=SC2086 # the option and its value split on purpose
	usage "bad number $o" "$S" udfs-compress \
		"$UC" add -q "$S" --base base $o x="$T/ft.safetensors"
done
usage "--lossless with --sparsity" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless --sparsity 0.9 \
	x="$T/ft.safetensors"
usage "--lossless with --bits" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --bits 2 --lossless x="$T/ft.safetensors"
usage "unknown command" "$S" udfs-compress "$UC" frob "$S"
bad "init of an existing store" "$S" udfs-compress "$UC" init "$S"
usage "add-base with extra argument" "$S" udfs-compress \
	"$UC" add-base -q "$S" x "$T/base.safetensors" extra
one_line_error "no command" udfs-compress "$UC"
[ "$rc" -eq 2 ] || fail "udfs-compress without a command: exit $rc, not 2"
# Options a verb of udfs-compress does not take, before or after the verb.
for c in "init --link" "init --base base" "init --lossless" \
	"add-base --lossless" "add-base --base base" "add-base --bits 2" \
	"add-base --exact x" "add --link"; do
	set -- $c
	v=$1
	shift
	case $v in
	init) args="$T/newstore" ;;
	add-base) args="$S x $T/base.safetensors" ;;
	add) args="$S --base base x=$T/ft.safetensors" ;;
	esac
	# shellcheck disable=SC2086 # the operands split on purpose
	usage "udfs-compress $c" "$S" udfs-compress "$UC" "$v" -q "$@" $args
	# shellcheck disable=SC2086
	usage "udfs-compress $* $v" "$S" udfs-compress "$UC" "$@" "$v" -q $args
	[ -e "$T/newstore" ] && fail "udfs-compress $c created the store"
done
one_line_error "not a store" udfs-compress \
	"$UC" add -q "$T/bad" --base base --lossless x="$T/ft.safetensors"
one_line_error "store missing" udfs-compress \
	"$UC" add-base -q "$T/nostore" x "$T/base.safetensors"
[ -e "$T/nostore" ] && fail "add-base created a missing store directory"

# The udfs verbs.
usage "udfs unknown command" "$S" udfs "$UDFS" frob "$S"
usage "udfs ls unknown option" "$S" udfs "$UDFS" ls --frob "$S"
usage "udfs info unknown option" "$S" udfs "$UDFS" info -Z "$S" ft
bad "udfs info missing model" "$S" udfs "$UDFS" info "$S" nope
bad "udfs info --json missing model" "$S" udfs "$UDFS" info --json "$S" nope
bad "udfs verify missing model" "$S" udfs "$UDFS" verify "$S" nope
bad "udfs export missing model" "$S" udfs "$UDFS" export "$S" nope "$T/e0"
[ -e "$T/e0" ] && fail "export of a missing model created its directory"
bad "udfs rm missing model" "$S" udfs "$UDFS" rm "$S" nope
bad "udfs rm of a used base" "$S" udfs "$UDFS" rm "$S" base
usage "udfs ls extra argument" "$S" udfs "$UDFS" ls "$S" extra
usage "udfs eval without --against" "$S" udfs "$UDFS" eval "$S" ft
bad "udfs eval of a base" "$S" udfs "$UDFS" eval "$S" base \
	--against "$T/base.safetensors"
bad "udfs eval against a broken file" "$S" udfs "$UDFS" eval "$S" ft \
	--against "$B/hole.safetensors"
# Every verb against every option it does not take, from one table: verb,
# its operands, the options it takes. Each other option is a usage error
# (exit 2, one line, store unchanged); so are a missing and an extra
# operand and an unknown option.
E=$T/eout
while read -r verb operands takes; do
	[ -n "$verb" ] || continue
	ops=$(echo "$operands" | sed "s|S|$S|; s|E|$E|; s|,| |g")
	req=""
	[ "$verb" = eval ] && req="--against $T/ft.safetensors"
	for opt in --json --dry-run --against; do
		case ",$takes," in *",$opt,"*) continue ;; esac
		arg=""
		[ "$opt" = --against ] && arg=$T/ft.safetensors
		# shellcheck disable=SC2086 # operands split on purpose
		usage "udfs $verb $opt (not taken)" "$S" udfs \
			"$UDFS" "$verb" $ops $req $opt $arg
	done
	# shellcheck disable=SC2086
	usage "udfs $verb missing operand" "$S" udfs "$UDFS" "$verb" $req
	# shellcheck disable=SC2086
	usage "udfs $verb extra operand" "$S" udfs \
		"$UDFS" "$verb" $ops extra1 extra2 $req
	# shellcheck disable=SC2086
	usage "udfs $verb unknown option" "$S" udfs \
		"$UDFS" "$verb" $ops --frobnicate $req
	# shellcheck disable=SC2086
	usage "udfs $verb option without its argument" "$S" udfs \
		"$UDFS" "$verb" $ops --against
	[ -e "$E" ] && fail "udfs $verb: a usage error created $E"
done <<EOF
ls	S	--json
info	S,ft	--json
verify	S,ft	--json
export	S,ft,E	-
eval	S,ft	--json,--against
rm	S,ft	-
gc	S	--dry-run
EOF
usage "udfs without a command" "$S" udfs "$UDFS"
usage "udfs mount with an unknown option" "$S" udfs \
	"$UDFS" mount "$S" "$T" --frobnicate
one_line_error "udfs ls not a store" udfs "$UDFS" ls "$T/bad"
one_line_error "udfs gc not a store" udfs "$UDFS" gc "$T/bad"

# Export into a directory where a file of the model already exists: the
# existing file is kept as it was and nothing else is written.
mkdir "$T/exp"
echo precious >"$T/exp/ft.safetensors"
bad "export over an existing file" "$S" udfs \
	"$UDFS" export "$S" ft "$T/exp"
[ "$(cat "$T/exp/ft.safetensors")" = precious ] ||
	fail "export overwrote an existing file"
[ "$(ls -A "$T/exp" | wc -l)" -eq 1 ] ||
	fail "export left files behind: $(ls -A "$T/exp")"
echo x >"$T/exp-file"
bad "export into a regular file" "$S" udfs "$UDFS" export "$S" ft "$T/exp-file"

# A read-only store (a read-only bind mount: root ignores mode bits) and a
# full store (a tiny tmpfs). Skipped where mounting is not allowed.
RO=$T/ro
mkdir "$RO"
# A writer closes last, as on a store copied to a read-only share: no
# catalog.db-wal or -shm is left for readers.
must "gc before read-only" "$UDFS" gc -q "$S"
if mount --bind "$S" "$RO" 2>/dev/null; then
	on_exit "umount '$RO'"
	if mount -o remount,ro,bind "$RO" 2>/dev/null; then
		bad "read-only store (add)" "$S" udfs-compress \
			"$UC" add -q "$RO" --base base --lossless \
			x="$T/ft.safetensors"
		bad "read-only store (add-base)" "$S" udfs-compress \
			"$UC" add-base -q "$RO" x "$T/base.safetensors"
		bad "read-only store (rm)" "$S" udfs "$UDFS" rm "$RO" ft
		# Reading a read-only store works.
		ok "ls of a read-only store" "$UDFS" ls "$RO"
		ok "verify of a read-only store" "$UDFS" verify "$RO"
	else
		echo "note: cannot remount read-only; read-only store skipped"
	fi
	umount "$RO"
else
	echo "note: cannot bind-mount; read-only store skipped"
fi

FULL=$T/full
mkdir "$FULL"
if mount -t tmpfs -o size=1600k tmpfs "$FULL" 2>/dev/null; then
	on_exit "umount '$FULL'"
	FS=$FULL/store
	new_store "$FS"
	must "add-base on tmpfs" "$UC" add-base -q "$FS" base \
		"$T/base.safetensors"
	gen model "$T/big.safetensors" --mb 4 --seed 3
	gen finetune "$T/big.safetensors" "$T/bigft.safetensors" --seed 4
	bad "full store (add)" "$FS" udfs-compress \
		"$UC" add -q "$FS" --base base --lossless x="$T/bigft.safetensors"
	bad "full store (add-base)" "$FS" udfs-compress \
		"$UC" add-base -q "$FS" big "$T/big.safetensors"
	ok "verify after ENOSPC" "$UDFS" verify "$FS"
	[ -z "$(ls -A "$FS/tmp")" ] ||
		fail "full store: tmp/ not empty: $(ls -A "$FS/tmp")"
	umount "$FULL"
else
	echo "note: cannot mount tmpfs; full store skipped"
fi

[ -n "${SHOW_ERRORS:-}" ] && cat "$T/errors.log"
ok "verify at the end" "$UDFS" verify "$S"
finish

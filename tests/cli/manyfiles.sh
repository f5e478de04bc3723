#!/bin/sh
# SPDX-License-Identifier: MIT
# A source of 1,100 files under the usual descriptor limit of 1024, which
# failed with "Too many open files": added as a base and as a fine-tune
# (a) with soft limit 1024 and a higher hard limit, where udfs-compress
# and udfs raise the soft limit, and (b) with both limits at 1024, where
# only holding no descriptor per source file makes it work.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/small.safetensors" --mb 1 --seed 1
gen finetune "$T/small.safetensors" "$T/smallft.safetensors" --seed 2
must "add-base small" "$UC" add-base -q "$S" small "$T/small.safetensors"

# A model directory of 1,100 files: the weights and 1,099 small files.
M=$T/many
mkdir -p "$M"
cp "$T/smallft.safetensors" "$M/model.safetensors"
i=0
while [ $i -lt 1099 ]; do
	echo "file $i" >"$M/f$i.txt"
	i=$((i + 1))
done
n=$(find "$M" -type f | wc -l)
[ "$n" -eq 1100 ] || die "fixture has $n files"

# limited SOFT HARD CMD...: run CMD with those descriptor limits.
limited() {
	_s=$1 _h=$2
	shift 2
	(ulimit -Sn "$_s" && ulimit -Hn "$_h" && exec "$@")
}

# (a) soft 1024, hard 4096 (raised first when we may: we are root in CI).
if limited 1024 4096 true 2>/dev/null; then
	ok "add-base, soft limit 1024" limited 1024 4096 \
		"$UC" add-base -q "$S" many-base "$M"
	ok "verify the base, soft limit 1024" limited 1024 4096 \
		"$UDFS" verify "$S" many-base
	ok "add, soft limit 1024" limited 1024 4096 \
		"$UC" add -q "$S" --base small --lossless "many-a=$M"
	ok "verify, soft limit 1024" limited 1024 4096 \
		"$UDFS" verify "$S" many-a
else
	echo "note: hard descriptor limit below 4096 and not raisable; (a) skipped"
fi

# (b) soft and hard 1024: no raising possible.
ok "add-base, hard limit 1024" limited 1024 1024 \
	"$UC" add-base -q "$S" many-base2 "$M"
ok "add, hard limit 1024" limited 1024 1024 \
	"$UC" add -q "$S" --base small --lossless "many-b=$M"
ok "verify, hard limit 1024" limited 1024 1024 "$UDFS" verify "$S" many-b
if ok "info many-b" "$UDFS" info --json "$S" many-b; then
	cp "$T/out" "$T/info.json"
	json_check "$T/info.json" "len(j['files']) == 1100" ||
		fail "many-b does not have 1100 files"
fi

finish

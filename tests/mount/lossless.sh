#!/bin/sh
# SPDX-License-Identifier: MIT
# Lossless models through a real mount are byte-identical to their sources:
# generated BF16, F16 and F32 models, a sharded fine-tune of a differently
# sharded base (Hugging Face layout with index, config and tokenizer), and
# the real stories260K pairs when $UDFS_SHARED is set. Checks sha256sum and
# cmp of every file, `cp -r` of a model directory, and dd of odd ranges
# across chunk and tensor boundaries.
. "$(dirname "$0")/lib.sh"

S=$T/S M=$T/mnt
mkdir -p "$T/src"
"$UDFS_COMPRESS" init "$S" >/dev/null || fail "init"

# name:source pairs checked below.
PAIRS=""
for dt in bf16 f16 f32; do
	"$GEN" model "$T/src/base-$dt.safetensors" --dtype $dt --mb 3 \
		--seed 1 >/dev/null 2>&1 || fail "gen_model $dt"
	"$GEN" finetune "$T/src/base-$dt.safetensors" \
		"$T/src/ft-$dt.safetensors" --seed 2 >/dev/null 2>&1 ||
		fail "gen_model finetune $dt"
	"$UDFS_COMPRESS" add-base -q "$S" "base-$dt" \
		"$T/src/base-$dt.safetensors" >/dev/null || fail "add-base $dt"
	"$UDFS_COMPRESS" add -q "$S" --base "base-$dt" --lossless \
		"ft-$dt=$T/src/ft-$dt.safetensors" >/dev/null || fail "add $dt"
	PAIRS="$PAIRS base-$dt:$T/src/base-$dt.safetensors"
	PAIRS="$PAIRS ft-$dt:$T/src/ft-$dt.safetensors"
done

# Sharded: base in 2 shards, fine-tune in 3 (tensors move between files).
"$GEN" model "$T/src/big.safetensors" --dtype bf16 --mb 6 --seed 3 \
	>/dev/null 2>&1 || fail "gen_model big"
"$GEN" finetune "$T/src/big.safetensors" "$T/src/bigft.safetensors" \
	--seed 4 >/dev/null 2>&1 || fail "gen_model finetune big"
"$GEN" shard "$T/src/big.safetensors" "$T/src/shbase" --shards 2 \
	>/dev/null 2>&1 || fail "gen_model shard base"
"$GEN" shard "$T/src/bigft.safetensors" "$T/src/shft" --shards 3 \
	>/dev/null 2>&1 || fail "gen_model shard ft"
"$UDFS_COMPRESS" add-base -q "$S" shbase "$T/src/shbase" >/dev/null ||
	fail "add-base shbase"
"$UDFS_COMPRESS" add -q "$S" --base shbase --lossless "shft=$T/src/shft" \
	>/dev/null || fail "add shft"
PAIRS="$PAIRS shbase:$T/src/shbase shft:$T/src/shft"

if [ -n "$UDFS_SHARED" ] && [ -d "$UDFS_SHARED/data/stories260K" ]; then
	D=$UDFS_SHARED/data/stories260K
	for dt in bf16 f32; do
		"$UDFS_COMPRESS" add-base -q "$S" "s-base-$dt" "$D/base-$dt" \
			>/dev/null || fail "add-base stories $dt"
		"$UDFS_COMPRESS" add -q "$S" --base "s-base-$dt" --lossless \
			"s-lives-$dt=$D/ft-lives-$dt" "s-pi-$dt=$D/ft-pi-$dt" \
			>/dev/null || fail "add stories $dt"
		PAIRS="$PAIRS s-base-$dt:$D/base-$dt"
		PAIRS="$PAIRS s-lives-$dt:$D/ft-lives-$dt s-pi-$dt:$D/ft-pi-$dt"
	done
else
	log "UDFS_SHARED unset: stories260K part skipped"
fi

mount_udfs "$S" "$M" -o cache=16M
PID=$DAEMON_PID

# Every file of every model equals its source (sha256 and cmp).
n=0
for p in $PAIRS; do
	name=${p%%:*} src=${p#*:}
	[ -d "$M/$name" ] || fail "model dir $name missing"
	if [ -d "$src" ]; then
		files=$(cd "$src" && ls)
		[ "$(ls "$M/$name")" = "$files" ] ||
			fail "$name: listing differs: $(ls "$M/$name" | tr '\n' ' ')"
		for f in $files; do
			cmp "$M/$name/$f" "$src/$f" || fail "$name/$f differs"
			a=$(sha256sum <"$M/$name/$f") b=$(sha256sum <"$src/$f")
			[ "$a" = "$b" ] || fail "$name/$f: sha256 differs"
			n=$((n + 1))
		done
	else
		f=$(basename "$src")
		[ "$(ls "$M/$name")" = "$f" ] || fail "$name: listing"
		cmp "$M/$name/$f" "$src" || fail "$name/$f differs"
		a=$(sha256sum <"$M/$name/$f") b=$(sha256sum <"$src")
		[ "$a" = "$b" ] || fail "$name/$f: sha256 differs"
		n=$((n + 1))
	fi
done
log "$n files byte-identical"

# Sizes in stat agree with the sources.
[ "$(stat -c %s "$M/ft-bf16/ft-bf16.safetensors")" = \
  "$(stat -c %s "$T/src/ft-bf16.safetensors")" ] || fail "stat size"

# cp -r of a sharded model directory.
cp -r "$M/shft" "$T/copy" || fail "cp -r"
diff -r "$T/copy" "$T/src/shft" >/dev/null || fail "cp -r copy differs"
log "cp -r ok"

# dd of odd ranges across chunk (1 MiB) and tensor boundaries, and past
# the end of the file (short read).
for p in ft-bf16:ft-bf16.safetensors ft-f32:ft-f32.safetensors \
	 shft:model-00002-of-00003.safetensors; do
	name=${p%%:*} f=${p#*:}
	if [ -d "$T/src/$name" ]; then ref=$T/src/$name/$f
	else ref=$T/src/$f; fi
	size=$(stat -c %s "$ref")
	for r in 0:1 1:7 7:9 8:4093 1048573:7 1048575:3 2097147:1048583 \
		 1000003:2000007 3:2999999 $((size - 5)):5 $((size - 3)):100 \
		 $((size / 2 - 1)):1 $((size / 3)):65537; do
		cmp_range "$M/$name/$f" "$ref" "${r%%:*}" "${r#*:}"
	done
done
log "dd ranges ok"

umount_udfs "$M" "$PID"
log "ok"

#!/bin/sh
# SPDX-License-Identifier: MIT
# Hugging Face cache snapshots, the layout on most users' disks:
# hub/models--ORG--NAME/snapshots/REV/ holds relative symlinks to
# ../../blobs/HASH (../../../blobs/HASH in original/). A snapshot is
# added as a base (copied, and --link-ed: the store must hold the blob,
# never the symlink, which dangled in bases/ and failed verify), a single
# symlinked shard is add-base --link-ed, a fine-tune snapshot is added
# losslessly; all verify, and export byte for byte. A symlink leading out
# of the snapshot and its repo's blobs/ is refused with one line that says
# to copy with cp -rL, the store unchanged.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
HUB=$T/hub

if shared_data; then
	D=$UDFS_SHARED/data/stories260K
	cp "$D/base-bf16/model.safetensors" "$T/base.safetensors"
	cp "$D/ft-pi-bf16/model.safetensors" "$T/ft.safetensors"
else
	gen model "$T/base.safetensors" --mb 2 --seed 1
	gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
fi

# snapshot IN.safetensors REPO REV: the hub cache entry REPO at REV, as
# huggingface_hub writes it: blobs named by their sha256, snapshot files
# as relative symlinks to them, refs/main naming REV.
snapshot() {
	_r=$HUB/$2 _snap=$HUB/$2/snapshots/$3
	gen shard "$1" "$T/flat-$2" --shards 2
	mkdir -p "$T/flat-$2/original" "$_r/blobs" "$_r/refs" "$_snap/original"
	printf '{"dim": 64}\n' >"$T/flat-$2/original/params.json"
	printf '*.safetensors filter=lfs\n' >"$T/flat-$2/.gitattributes"
	printf '%s' "$3" >"$_r/refs/main"
	(cd "$T/flat-$2" && find . -type f | sed 's|^\./||') |
		while read -r p; do
			h=$(sha256sum <"$T/flat-$2/$p" | cut -d' ' -f1)
			cp "$T/flat-$2/$p" "$_r/blobs/$h"
			case $p in
			*/*) ln -s "../../../blobs/$h" "$_snap/$p" ;;
			*) ln -s "../../blobs/$h" "$_snap/$p" ;;
			esac
		done
}
snapshot "$T/base.safetensors" models--org--base 1a2b3c
snapshot "$T/ft.safetensors" models--org--ft 4d5e6f
BSNAP=$HUB/models--org--base/snapshots/1a2b3c
FSNAP=$HUB/models--org--ft/snapshots/4d5e6f
[ -L "$BSNAP/model-00001-of-00002.safetensors" ] || die "no symlinks"

# stored NAME: the directory of base NAME in the store.
stored() {
	echo "$S/$(sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='$1'")"
}

# same_export NAME FLAT: the export of NAME is FLAT byte for byte.
same_export() {
	if ok "export $1" "$UDFS" export "$S" "$1" "$T/exp-$1"; then
		same_tree "$2" "$T/exp-$1" || fail "export $1 differs from $2"
	fi
	rm -rf "$T/exp-$1"
}


ok "add-base snapshot" "$UC" add-base -q "$S" base "$BSNAP"
ok "verify base" "$UDFS" verify "$S" base
ok "add-base --link snapshot" "$UC" add-base -q --link "$S" base-link "$BSNAP"
ok "verify base-link" "$UDFS" verify "$S" base-link
dir=$(stored base-link)
for p in model-00001-of-00002.safetensors original/params.json; do
	if [ -L "$dir/$p" ] || [ ! -f "$dir/$p" ]; then
		fail "--link: $p is not a regular file in the store"
	elif ! [ "$dir/$p" -ef "$BSNAP/$p" ]; then
		fail "--link: $p is not a hard link of its blob"
	fi
done
# A single symlinked file, the case that stored a dangling link.
ok "add-base --link one symlinked shard" "$UC" add-base -q --link "$S" \
	shard1 "$BSNAP/model-00001-of-00002.safetensors"
f=$(stored shard1)/model-00001-of-00002.safetensors
[ -f "$f" ] && ! [ -L "$f" ] || fail "--link of a symlink stored a symlink"
ok "verify shard1" "$UDFS" verify "$S" shard1

ok "add fine-tune snapshot" "$UC" add -q "$S" --base base --lossless \
	"ft=$FSNAP"
ok "verify ft" "$UDFS" verify "$S" ft
ok "add lossy fine-tune snapshot" "$UC" add -q "$S" --base base-link \
	"ftlossy=$FSNAP"
ok "verify ftlossy" "$UDFS" verify "$S" ftlossy
if ok "info ft" "$UDFS" info --json "$S" ft; then
	cp "$T/out" "$T/info.json"
	json_check "$T/info.json" \
		"sorted(f['path'] for f in j['files']) == sorted(['.gitattributes', 'config.json', 'tokenizer.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'original/params.json'])" ||
		fail "info ft: not the snapshot's files"
fi
same_export base "$T/flat-models--org--base"
same_export base-link "$T/flat-models--org--base"
same_export ft "$T/flat-models--org--ft"

# Symlinks out of the snapshot and its blobs stay refused, with the fix.
ln -s /etc/hostname "$FSNAP/evil.txt"
bad "symlink out of a snapshot" "$S" udfs-compress \
	"$UC" add -q "$S" --base base --lossless "x=$FSNAP"
grep -q 'cp -rL' "$T/err" || fail "no cp -rL hint: $(cat "$T/err")"
rm "$FSNAP/evil.txt"
# Another repo's blobs are outside too.
h=$(ls "$HUB/models--org--base/blobs" | head -n 1)
ln -s "../../../models--org--base/blobs/$h" "$FSNAP/other.json"
bad "symlink into another repo's blobs" "$S" udfs-compress \
	"$UC" add-base -q "$S" y "$FSNAP"
rm "$FSNAP/other.json"

finish

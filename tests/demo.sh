#!/bin/sh
# SPDX-License-Identifier: MIT
# The main job end to end: build a store from a base and two fine-tunes
# (the real stories260K checkpoints when ../shared is present, generated
# ones otherwise), mount it, and read every model through the mount with
# ordinary tools. Run by `make demo`.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:=$top/build}"
PATH="$BUILD:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/udfs-demo.XXXXXX")
mnt="$work/mnt"
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		fusermount3 -u "$mnt" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

shared="$top/../shared/data/stories260K"
if [ -d "$shared/base-bf16" ]; then
	echo "== using the real stories260K checkpoints from ../shared"
	base="$shared/base-bf16" ft1="$shared/ft-lives-bf16" ft2="$shared/ft-pi-bf16"
else
	echo "== generating a 64 MiB BF16 base and two fine-tunes"
	"$BUILD/tests/gen_model" model "$work/base.safetensors" --mb 64
	"$BUILD/tests/gen_model" finetune "$work/base.safetensors" \
		"$work/ft1.safetensors" --seed 1
	"$BUILD/tests/gen_model" finetune "$work/base.safetensors" \
		"$work/ft2.safetensors" --seed 2
	base="$work/base.safetensors" ft1="$work/ft1.safetensors"
	ft2="$work/ft2.safetensors"
fi

store="$work/store"
echo "== udfs-compress: one base, one lossless delta, one UltraDelta delta"
udfs-compress init "$store"
udfs-compress add-base "$store" base "$base"
udfs-compress add "$store" --base base exact="$ft1" --lossless
udfs-compress add "$store" --base base lossy="$ft2" --sparsity 0.9
udfs ls "$store"

echo "== udfs mount"
mkdir "$mnt"
udfs mount "$store" "$mnt" -f &
pid=$!
i=0
until [ -d "$mnt/base" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "mount did not come up" >&2; exit 1; }
	kill -0 "$pid" 2>/dev/null || { echo "udfs mount exited" >&2; exit 1; }
	sleep 0.1
done
ls -l "$mnt" "$mnt/exact"

echo "== the lossless model reads back byte-identical (sha256sum)"
if [ -d "$ft1" ]; then src1="$ft1"; else src1=$(dirname "$ft1"); fi
for f in "$mnt"/exact/*; do
	name=$(basename "$f")
	a=$(sha256sum <"$f" | cut -d' ' -f1)
	b=$(sha256sum <"$src1/$name" | cut -d' ' -f1)
	echo "$name $a"
	[ "$a" = "$b" ] || { echo "MISMATCH $name" >&2; exit 1; }
done
echo "== the lossy model is an ordinary safetensors file"
cp -r "$mnt/lossy" "$work/copy"
ls -l "$work/copy"
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	/usr/bin/python3 - "$mnt/lossy" <<'PY'
import json, struct, sys, os, numpy as np
d = sys.argv[1]
f = [x for x in os.listdir(d) if x.endswith(".safetensors")][0]
with open(os.path.join(d, f), "rb") as fh:
    n = struct.unpack("<Q", fh.read(8))[0]
    hdr = json.loads(fh.read(n))
names = [k for k in hdr if k != "__metadata__"]
m = np.memmap(os.path.join(d, f), dtype=np.uint8, mode="r", offset=8 + n)
t = hdr[names[0]]
a, b = t["data_offsets"]
print(f"numpy memmap of {names[0]} {t['dtype']} {t['shape']}: {b - a} bytes,"
      f" first bytes {bytes(m[a:a + 8]).hex()}")
PY
fi
getfattr -d "$mnt/lossy"/*.safetensors 2>/dev/null || true
fusermount3 -u "$mnt"
wait "$pid"
pid=""
echo "== demo done: store $(du -sh "$store" | cut -f1), daemon exited 0"

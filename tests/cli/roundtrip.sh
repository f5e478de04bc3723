#!/bin/sh
# SPDX-License-Identifier: MIT
# Lossless round trip: `udfs-compress add --lossless` then `udfs export`
# gives sha256-identical files, for F32, F16 and BF16 models, for sharded
# Hugging Face directories (index, config.json, tokenizer), for a fine-tune
# sharded differently from its base (both ways), for a file holding every
# safetensors dtype against a base that lacks some tensors and has one of a
# different shape (raw encoding), and for the real checkpoints of
# $UDFS_SHARED/data when present. `udfs verify` passes and the JSON of
# `udfs info` and `udfs ls` has the documented keys.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"

# export_same NAME SRC: export NAME and compare with SRC (file or dir).
export_same() {
	_out=$T/export-$1
	if ok "export $1" "$UDFS" export "$S" "$1" "$_out"; then
		if [ -f "$2" ]; then
			if ! same_tree "$2" "$_out/$(basename "$2")"; then
				fail "export $1: $(basename "$2") differs from $2"
			fi
			if [ "$(ls "$_out" | wc -l)" -ne 1 ]; then
				fail "export $1: extra files: $(ls "$_out")"
			fi
		elif ! same_tree "$2" "$_out"; then
			fail "export $1: tree differs from $2"
			diff "$T/tree.a" "$T/tree.b" | head -n 8 | sed 's/^/    /'
		fi
	fi
	rm -rf "$_out"
}

# lossless BASE NAME SRC: add NAME losslessly against BASE and check it.
lossless() {
	if ok "add $2" "$UC" add -q "$S" --base "$1" --lossless "$2=$3"; then
		export_same "$2" "$3"
		ok "verify $2" "$UDFS" verify "$S" "$2"
	fi
}

# --- generated models, one per float dtype ----------------------------
for dt in f32 f16 bf16; do
	gen model "$T/base-$dt.safetensors" --dtype $dt --mb 2 --seed 1
	gen finetune "$T/base-$dt.safetensors" "$T/ft-$dt.safetensors" --seed 2
	must "add-base $dt" "$UC" add-base -q "$S" "base-$dt" \
		"$T/base-$dt.safetensors"
	export_same "base-$dt" "$T/base-$dt.safetensors"
	lossless "base-$dt" "ft-$dt" "$T/ft-$dt.safetensors"
done

# A fine-tune identical to its base stores (almost) nothing.
lossless base-bf16 copy-bf16 "$T/base-bf16.safetensors"
"$UDFS" info --json "$S" copy-bf16 >"$T/copy.json" 2>"$T/err"
json_check "$T/copy.json" \
	'all(t["encoding"] == "same" for f in j["files"] for t in f["tensors"])' ||
	fail "an unchanged model is not all \"same\""

# --- sharded directories ----------------------------------------------
gen model "$T/big.safetensors" --mb 6 --seed 3
gen finetune "$T/big.safetensors" "$T/bigft.safetensors" --seed 4
gen shard "$T/bigft.safetensors" "$T/bigft3" --shards 3
gen shard "$T/big.safetensors" "$T/big2" --shards 2
gen shard "$T/bigft.safetensors" "$T/bigft1" --shards 1
[ -f "$T/bigft3/model.safetensors.index.json" ] ||
	die "gen_model shard wrote no index"
[ -f "$T/bigft3/config.json" ] || die "gen_model shard wrote no config.json"

# Base as one file, fine-tune as 3 shards.
must "add-base big" "$UC" add-base -q "$S" big "$T/big.safetensors"
lossless big bigft-3shards "$T/bigft3"
# Base as 2 shards (directory), fine-tune as one file and as 3 shards.
must "add-base big2" "$UC" add-base -q "$S" big2 "$T/big2"
export_same big2 "$T/big2"
lossless big2 bigft-1file "$T/bigft.safetensors"
lossless big2 bigft-3of2 "$T/bigft3"
lossless big2 bigft-dir1 "$T/bigft1"
# Several NAME=SRC in one add.
if ok "group add" "$UC" add -q "$S" --base big --lossless g1="$T/bigft3" \
	g2="$T/bigft.safetensors"; then
	export_same g1 "$T/bigft3"
	export_same g2 "$T/bigft.safetensors"
fi
# Options after the positionals (GNU order), and --level.
if ok "options last" "$UC" add "$S" late="$T/bigft.safetensors" --base big \
	--lossless --level 9 -q; then
	export_same late "$T/bigft.safetensors"
fi

# --- every dtype, against a base missing tensors and with a reshaped one --
gen dtypes "$T/dtypes.safetensors" --seed 5
gen dtypes "$T/dtypes-other.safetensors" --seed 6
"$PY" - "$T/dtypes.safetensors" "$T/dtypes-other.safetensors" \
	"$T/dtypes-base.safetensors" <<'EOF' || die "cannot write dtypes base"
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, b[8 + n:]
ft, ftdata = load(sys.argv[1])
other, odata = load(sys.argv[2])
out, data = {"__metadata__": {"format": "pt"}}, b""
for k in sorted(k for k in ft if k != "__metadata__"):
    if k in ("t.i64", "t.c64", "t.u8"):
        continue                       # missing in the base: raw
    v = dict(ft[k])
    b, e = v["data_offsets"]
    if k == "t.bf16":
        blob = ftdata[b:e]             # identical: same
    elif k == "t.f32":
        v["shape"] = [3, 2]            # same bytes, other shape: raw
        blob = ftdata[b:e]
    elif k == "t.i32":
        v["shape"] = [2, 4]            # other size: raw
        blob = odata[other[k]["data_offsets"][0]:][:32]
    else:
        ob, oe = other[k]["data_offsets"]
        blob = odata[ob:oe]            # other values: xor
    v["data_offsets"] = [len(data), len(data) + len(blob)]
    data += blob
    out[k] = v
out["t.extra"] = {"dtype": "F32", "shape": [4],
                  "data_offsets": [len(data), len(data) + 16]}
data += b"\0" * 16
h = json.dumps(out, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF
must "add-base dtypes" "$UC" add-base -q "$S" dtbase "$T/dtypes-base.safetensors"
export_same dtbase "$T/dtypes-base.safetensors"
lossless dtbase dtypes "$T/dtypes.safetensors"
"$UDFS" info --json "$S" dtypes >"$T/dt.json" 2>"$T/err"
json_check "$T/dt.json" 'all(t["encoding"] == "raw" for t in j["files"][0]["tensors"] if t["name"] in ("t.i64", "t.c64", "t.u8", "t.f32", "t.i32"))' ||
	fail "dtypes: missing or reshaped tensors are not raw"
json_check "$T/dt.json" \
	'[t["encoding"] for t in j["files"][0]["tensors"] if t["name"] == "t.bf16"] == ["same"]' ||
	fail "dtypes: identical tensor is not \"same\""
json_check "$T/dt.json" \
	'[t["encoding"] for t in j["files"][0]["tensors"] if t["name"] == "t.f64"] == ["xor"]' ||
	fail "dtypes: changed tensor is not \"xor\""
json_check "$T/dt.json" \
	'len(j["files"][0]["tensors"]) == 21' ||
	fail "dtypes: not 21 tensors in info"

# --- real checkpoints -------------------------------------------------
if shared_data; then
	D=$UDFS_SHARED/data
	for dt in bf16 f32; do
		must "add-base stories $dt" "$UC" add-base -q "$S" \
			"stories-$dt" "$D/stories260K/base-$dt"
		export_same "stories-$dt" "$D/stories260K/base-$dt"
		for ft in lives pi; do
			lossless "stories-$dt" "stories-$ft-$dt" \
				"$D/stories260K/ft-$ft-$dt"
		done
		# The bare weight file too, not only the directory.
		lossless "stories-$dt" "stories-lives-$dt-file" \
			"$D/stories260K/ft-lives-$dt/model.safetensors"
	done
	must "add-base toylora" "$UC" add-base -q "$S" toylora "$D/toylora/base"
	for ft in a b; do
		lossless toylora "toylora-$ft" "$D/toylora/ft-$ft"
	done
else
	echo "note: UDFS_SHARED not set; real checkpoints not tested"
fi

# --- the whole store, info and ls JSON --------------------------------
ok "verify all" "$UDFS" verify "$S"
grep -q '^ok ft-bf16: ' "$T/out" || fail "verify prints no ok line for ft-bf16"
ok "verify -q" "$UDFS" verify -q "$S"
[ -s "$T/out" ] && fail "verify -q printed: $(head -n 2 "$T/out")"

for m in ft-bf16 bigft-3shards base-f32; do
	if ok "info --json $m" "$UDFS" info "$S" "$m" --json; then
		cp "$T/out" "$T/info.json"
		json_check "$T/info.json" 'all(k in j for k in ("name", "base", "method", "source_bytes", "stored_bytes", "ratio", "files")) and j["name"] == "'"$m"'" and len(j["files"]) > 0 and all("tensors" in f for f in j["files"])' ||
			fail "info --json $m lacks keys"
	fi
done
json_check "$T/info.json" 'j["method"] == "base" and j["base"] == ""' ||
	fail "info --json of a base: method/base"
"$UDFS" info --json "$S" bigft-3shards >"$T/info.json"
json_check "$T/info.json" 'j["method"] == "lossless" and j["base"] == "big" and j["source_bytes"] == sum(f["size"] for f in j["files"]) and j["stored_bytes"] > 0 and abs(j["ratio"] - j["source_bytes"] / j["stored_bytes"]) < 1e-3 and j["ratio"] > 1.2 and len(j["files"]) == 6' ||
	fail "info --json bigft-3shards: wrong values"
json_check "$T/info.json" 'sum(len(f["tensors"]) for f in j["files"] if f["kind"] == "safetensors") == sum(len(f["tensors"]) for f in j["files"] if f["kind"] == "safetensors" and f["path"].endswith(".safetensors")) > 0' ||
	fail "info --json: no tensors listed"
pack=$(sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='bigft-3shards'")
psize=$(wc -c <"$S/$pack")
json_check "$T/info.json" 'j["stored_bytes"] >= '"$psize" ||
	fail "info --json: stored_bytes below the pack size $psize"

ok "info text" "$UDFS" info "$S" bigft-3shards
grep -q 'model-00002-of-00003.safetensors' "$T/out" ||
	fail "info text does not list the shards"

if ok "ls --json" "$UDFS" ls --json "$S"; then
	cp "$T/out" "$T/ls.json"
	n=$(sqlite3 "$S/catalog.db" 'SELECT count(*) FROM models')
	json_check "$T/ls.json" 'isinstance(j, list) and len(j) == '"$n"' and all(all(k in m for k in ("name", "kind", "base", "method", "source_bytes", "stored_bytes", "ratio")) for m in j)' ||
		fail "ls --json: wrong list"
	json_check "$T/ls.json" '[m["kind"] for m in j if m["name"] == "ft-f16"] == ["delta"] and [m["kind"] for m in j if m["name"] == "big2"] == ["base"]' ||
		fail "ls --json: kinds"
fi
ok "ls" "$UDFS" ls "$S"
grep -q '^ft-f32 ' "$T/out" || fail "ls text lacks ft-f32"

# The store holds only referenced files.
left=$(orphans "$S")
[ -z "$left" ] || fail "unreferenced files after successful adds: $left"

finish

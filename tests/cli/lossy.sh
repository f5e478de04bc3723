#!/bin/sh
# SPDX-License-Identifier: MIT
# Lossy pipeline (ARCHITECTURE.md, udfs(5)) end to end on generated fixtures (and
# stories260K when $UDFS_SHARED is set): every method and mask kind
# exports deterministically and verifies; the kept fraction matches 1 - s
# both by `udfs info --json` and by comparing exported and base tensors
# (numpy, skipped without it); unselected tensors (1-D norms, matrices
# under --min-elems, --exact) come back bit-identical to the fine-tune;
# --ratio reaches its target; seeds decide the bytes; a NaN in a matrix
# keeps that tensor exact; `udfs eval --json` parses; bad option values
# fail with one line and leave the store unchanged.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 8 --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
gen model "$T/base32.safetensors" --mb 2 --dtype f32 --seed 3
gen finetune "$T/base32.safetensors" "$T/ft32.safetensors" --seed 4
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add-base f32" "$UC" add-base -q "$S" base32 "$T/base32.safetensors"

have_numpy=1
"$PY" -c 'import numpy' 2>/dev/null || {
	have_numpy=0
	echo "note: no numpy for $PY: element-level checks skipped"
}

# The element-level checker. For the model NAME exported to OUT from FT
# against BASE, with INFO its `udfs info --json`:
#  - every tensor not stored lossy is bit-identical to the fine-tune;
#  - over the lossy tensors, n_diff (elements whose bits differ from the
#    base) and n_kept (1 - sparsity from info, times their elements)
#    satisfy n_diff <= n_kept <= n_diff + n_back: a kept element may round
#    back to its base value in BF16 when gain * value is under half an ulp
#    of the base weight; n_back counts the elements for which the
#    reconstruction formula gives the base bits (computed here for
#    ultradelta and dare; for the others n_back = n_lossy - n_diff);
#  - |n_kept / n_lossy - (1 - s)| <= 0.01 (bitdelta: n_kept = n_lossy).
cat >"$T/check.py" <<'EOF'
import json, struct, sys
import numpy as np

base, ft, out, info, s = sys.argv[1:6]
s = None if s == "-" else float(s)
info = json.load(open(info))


def load(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"],
                data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items()}


def f32(dt, b):
    if dt == "BF16":
        return (np.frombuffer(b, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(b, {"F32": "<f4", "F16": "<f2"}[dt]).astype(np.float32)


def bits(dt, x):
    """float32 -> dtype bits, round to nearest even."""
    x = np.ascontiguousarray(x, np.float32)
    if dt == "BF16":
        u = x.view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return x.astype({"F32": "<f4", "F16": "<f2"}[dt]).view(
        {"F32": np.uint32, "F16": np.uint16}[dt])


B, F, O = load(base), load(ft), load(out)
enc = {t["name"]: t for f in info["files"] for t in f.get("tensors", [])}
method = info["method"]
bad = []
n_lossy = n_diff = n_back = 0
for k, (dt, shape, fb) in F.items():
    t = enc[k]
    if t["encoding"] != method:
        if O[k][2] != fb:
            bad.append("%s (%s) differs from the fine-tune" % (k, t["encoding"]))
        continue
    ob = np.frombuffer(O[k][2], "<u2" if dt != "F32" else "<u4")
    bb = np.frombuffer(B[k][2], ob.dtype)
    n = ob.size
    diff = int((ob != bb).sum())
    b32, d = f32(dt, B[k][2]), f32(dt, fb) - f32(dt, B[k][2])
    if method == "ultradelta":
        lv = (1 << t["bits"]) - 1
        lo, hi = float(d.min()), float(d.max())
        step = np.float32((hi - lo) / lv)
        c = np.rint((d.astype(np.float64) - lo) / (hi - lo) * lv)
        q = np.float32(lo) + c.astype(np.float32) * step
        back = int((bits(dt, b32 + np.float32(t["gain"]) * q) == bb).sum())
    elif method == "dare":
        q = f32(dt, bits(dt, d).tobytes()) if dt != "F32" else d
        back = int((bits(dt, b32 + np.float32(t["gain"]) * q) == bb).sum())
    else:
        back = n - diff
    n_lossy += n
    n_diff += diff
    n_back += back
if n_lossy == 0:
    bad.append("no lossy tensor")
else:
    keep = 1 - info["sparsity"]
    n_kept = keep * n_lossy
    want = 1.0 if method == "bitdelta" else keep if s is None else 1 - s
    slack = 1e-3 * n_lossy  # float32 vs float64 quantization edge cases
    if not (n_diff <= n_kept + slack and n_kept <= n_diff + n_back + slack):
        bad.append("kept %d (info) vs %d elements differing from the base "
                   "(+%d that round back)" % (n_kept, n_diff, n_back))
    if abs(keep - want) > 0.01:
        bad.append("kept fraction %.4f (info), wanted %.4f" % (keep, want))
    print("%s: lossy %d, kept %.4f (info), differing %.4f, round back %.4f"
          % (method, n_lossy, keep, n_diff / n_lossy, n_back / n_lossy))
for b in bad:
    print("BAD:", b)
sys.exit(1 if bad else 0)
EOF

# pack_of NAME: the pack file of model NAME.
pack_of() {
	sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name = '$1'"
}

# lossy NAME BASE FT S ARGS...: add FT as NAME against BASE with ARGS,
# export twice (identical bytes), verify, check the info JSON and, with
# numpy, the elements.
lossy() {
	_n=$1 _b=$2 _f=$3 _s=$4
	shift 4
	ok "add $_n" "$UC" add -q "$S" --base "$_b" "$_n=$_f" "$@" || return 1
	ok "export $_n" "$UDFS" export "$S" "$_n" "$T/x1-$_n" || return 1
	ok "export $_n again" "$UDFS" export "$S" "$_n" "$T/x2-$_n" || return 1
	same_tree "$T/x1-$_n" "$T/x2-$_n" || fail "$_n: two exports differ"
	ok "verify $_n" "$UDFS" verify "$S" "$_n"
	"$UDFS" info --json "$S" "$_n" >"$T/info-$_n.json" 2>"$T/err" ||
		fail "info $_n"
	json_check "$T/info-$_n.json" \
		'all(k in j for k in ("ratio", "sparsity", "lossy_ratio", "lossy_source_bytes", "lossy_stored_bytes"))' ||
		fail "$_n: info --json lacks lossy fields"
	if [ "$have_numpy" = 1 ]; then
		if ! "$PY" "$T/check.py" "$T/$_b.safetensors" "$_f" \
			"$T/x1-$_n/$(basename "$_f")" "$T/info-$_n.json" "$_s" \
			>"$T/check.out" 2>&1; then
			fail "$_n: element check"
			sed 's/^/    /' "$T/check.out"
		fi
	else
		json_check "$T/info-$_n.json" \
			"'$_s' == '-' or j['method'] == 'bitdelta' or abs(j['sparsity'] - float('$_s')) <= 0.01" ||
			fail "$_n: sparsity in info"
	fi
	rm -rf "$T/x2-$_n"
}

# --- every method and mask kind ----------------------------------------
for m in ultradelta dare; do
	for k in explicit seeded; do
		lossy "$m-$k" base "$T/ft.safetensors" 0.5 \
			--method $m --mask $k --sparsity 0.5 --seed 7
	done
done
lossy magnitude base "$T/ft.safetensors" 0.5 --method magnitude --sparsity 0.5
lossy bitdelta base "$T/ft.safetensors" 0 --method bitdelta
json_check "$T/info-ultradelta-seeded.json" \
	'all(t["mask"] == "seeded" for f in j["files"] for t in f["tensors"] if t["encoding"] == "ultradelta")' ||
	fail "seeded mask not recorded per tensor"
# A seeded mask keeps a multiple of 1/512 of the elements (its levels
# then start at 2^7: plan_lossy.c, seeded_rate), its rate near the target
# (the allocation's own steps are 0.01).
json_check "$T/info-ultradelta-seeded.json" \
	'all(abs((1 - t["rate"]) * 512 - round((1 - t["rate"]) * 512)) < 1e-9 and abs(t["rate"] - 0.5) < 0.05 for f in j["files"] for t in f["tensors"] if t["encoding"] == "ultradelta")' ||
	fail "seeded rates not on the 1/512 grid"
# F32: almost nothing rounds back, so info and the elements agree tightly.
lossy ud-f32 base32 "$T/ft32.safetensors" 0.9 --sparsity 0.9
lossy ud-f32-seeded base32 "$T/ft32.safetensors" 0.9 --sparsity 0.9 \
	--mask seeded

# A lossy model is smaller than the lossless one, and eval sees s = 0.5
# keep most of the delta's direction.
ok "eval --json" "$UDFS" eval --json "$S" ultradelta-explicit \
	--against "$T/ft.safetensors" && cp "$T/out" "$T/eval.json"
json_check "$T/eval.json" 'j["overall"]["cosine"] > 0.5' ||
	fail "eval: overall cosine at s = 0.5"

# --- selection: --exact, --min-elems, norms -----------------------------
lossy exact base "$T/ft.safetensors" 0.9 --sparsity 0.9 \
	--exact 'model.layers.0.*'
json_check "$T/info-exact.json" \
	'all(t["encoding"] in ("xor", "same") for f in j["files"] for t in f["tensors"] if t["name"].startswith("model.layers.0.") or len(t["shape"]) < 2)' ||
	fail "--exact or 1-D tensors not stored exactly"
# q/k/v/o are 128x128 = 16384 elements, the MLP matrices 45056.
lossy minel base "$T/ft.safetensors" 0.9 --sparsity 0.9 --min-elems 20000
json_check "$T/info-minel.json" \
	'all((t["encoding"] == "ultradelta") == (len(t["shape"]) >= 2 and t["shape"][0] * t["shape"][1] >= 20000) for f in j["files"] for t in f["tensors"] if t["name"])' ||
	fail "--min-elems 20000: wrong selection"
json_check "$T/info-minel.json" 'j["lossy_source_bytes"] < 0.9 * j["source_bytes"]' ||
	fail "--min-elems 20000: lossy bytes not reduced"

# A small hand-made model: a 16x16 matrix (below the default 1024) and a
# 64x64 one; only the latter becomes lossy.
cat >"$T/small.py" <<'EOF'
import json, random, struct, sys
def bf16(x):
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16
def save(path, seed, scale):
    rnd = random.Random(1)
    rnd2 = random.Random(seed)
    shapes = {"big.weight": (64, 64), "small.weight": (16, 16), "norm.weight": (64,)}
    hdr, blob = {}, b""
    for name in sorted(shapes):
        sh = shapes[name]
        n = 1
        for d in sh:
            n *= d
        v = [rnd.gauss(0, 0.02) + scale * rnd2.gauss(0, 0.002) for _ in range(n)]
        b = struct.pack("<%dH" % n, *[bf16(x) for x in v])
        hdr[name] = {"dtype": "BF16", "shape": list(sh),
                     "data_offsets": [len(blob), len(blob) + len(b)]}
        blob += b
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blob)
save(sys.argv[1], 5, 0.0)
save(sys.argv[2], 6, 1.0)
EOF
if "$PY" "$T/small.py" "$T/sbase.safetensors" "$T/sft.safetensors"; then
	must "add-base small" "$UC" add-base -q "$S" sbase "$T/sbase.safetensors"
	lossy small sbase "$T/sft.safetensors" 0.5 --sparsity 0.5
	json_check "$T/info-small.json" \
		'sorted((t["name"], t["encoding"]) for f in j["files"] for t in f["tensors"]) == [("big.weight", "ultradelta"), ("norm.weight", "xor"), ("small.weight", "xor")]' ||
		fail "small model: wrong selection"
else
	fail "could not write the small model"
fi

# --- --ratio -------------------------------------------------------------
lossy ratio20 base "$T/ft.safetensors" - --ratio 20
json_check "$T/info-ratio20.json" \
	'20 <= j["lossy_ratio"] <= 20 * 1.1' ||
	fail "--ratio 20: lossy_ratio $(sed -n 's/.*"lossy_ratio": *\([0-9.]*\).*/\1/p' "$T/info-ratio20.json" | head -n 1)"

# --- seeds ---------------------------------------------------------------
must "seed a" "$UC" add -q "$S" --base base "sa=$T/ft.safetensors" \
	--sparsity 0.9 --seed 11
must "seed b" "$UC" add -q "$S" --base base "sb=$T/ft.safetensors" \
	--sparsity 0.9 --seed 11
must "seed c" "$UC" add -q "$S" --base base "sc=$T/ft.safetensors" \
	--sparsity 0.9 --seed 12
cmp -s "$S/$(pack_of sa)" "$S/$(pack_of sb)" ||
	fail "same --seed, different packs"
cmp -s "$S/$(pack_of sa)" "$S/$(pack_of sc)" &&
	fail "different --seed, identical packs"
for n in sa sb sc; do
	must "export $n" "$UDFS" export "$S" "$n" "$T/x-$n"
done
same_tree "$T/x-sa" "$T/x-sb" || fail "same --seed, different exports"
same_tree "$T/x-sa" "$T/x-sc" && fail "different --seed, identical exports"

# --- a NaN in one matrix -------------------------------------------------
cp "$T/ft.safetensors" "$T/nan.safetensors"
"$PY" - "$T/nan.safetensors" <<'EOF' || fail "could not patch a NaN"
import json, struct, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    t = h["model.layers.1.mlp.up_proj.weight"]
    f.seek(8 + n + t["data_offsets"][0] + 2 * 1000)
    f.write(struct.pack("<H", 0x7FC0))
EOF
must "add nan" "$UC" add -q "$S" --base base "nan=$T/nan.safetensors" \
	--sparsity 0.9
"$UDFS" info --json "$S" nan >"$T/info-nan.json" 2>"$T/err" || fail "info nan"
json_check "$T/info-nan.json" \
	'[t["encoding"] for f in j["files"] for t in f["tensors"] if t["name"] == "model.layers.1.mlp.up_proj.weight"] == ["xor"] and j["lossy_ratio"] > 5' ||
	fail "NaN tensor not stored xor"
must "export nan" "$UDFS" export "$S" nan "$T/x-nan"
"$PY" - "$T/nan.safetensors" "$T/x-nan/nan.safetensors" <<'EOF' ||
import json, struct, sys
def tensor(p, name):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        t = json.loads(f.read(n))[name]
        f.seek(8 + n + t["data_offsets"][0])
        return f.read(t["data_offsets"][1] - t["data_offsets"][0])
k = "model.layers.1.mlp.up_proj.weight"
sys.exit(tensor(sys.argv[1], k) != tensor(sys.argv[2], k))
EOF
	fail "NaN tensor not exported bit-identical"
ok "verify nan" "$UDFS" verify "$S" nan

# --- stories260K -----------------------------------------------------------
if shared_data && [ -d "$UDFS_SHARED/data/stories260K/base-bf16" ]; then
	D=$UDFS_SHARED/data/stories260K
	cp "$D/base-bf16/model.safetensors" "$T/sbf.safetensors"
	must "add-base stories" "$UC" add-base -q "$S" sbf "$T/sbf.safetensors"
	for k in explicit seeded; do
		lossy "lives-$k" sbf "$D/ft-lives-bf16/model.safetensors" 0.5 \
			--sparsity 0.5 --mask $k
	done
	ok "eval lives" "$UDFS" eval --json "$S" lives-explicit \
		--against "$D/ft-lives-bf16" && cp "$T/out" "$T/eval2.json"
	json_check "$T/eval2.json" 'j["overall"]["cosine"] > 0.5' ||
		fail "eval stories: overall cosine at s = 0.5"
fi

# --- bad option values ------------------------------------------------------
for a in "--sparsity 1.5" "--sparsity -0.1" "--sparsity abc" "--bits 0" \
	"--bits 9" "--step -1" "--ratio 0.5" "--ratio x" "--mask foo" \
	"--method foo" "--min-elems 0" "--seed -1" "--lossless --sparsity 0.5"; do
	# shellcheck disable=SC2086
	bad "add $a" "$S" udfs-compress "$UC" add "$S" --base base \
		"bad=$T/ft.safetensors" $a
done
bad "--ratio out of reach" "$S" udfs-compress "$UC" add -q "$S" --base base \
	"bad=$T/ft.safetensors" --ratio 100000

finish

#!/bin/sh
# SPDX-License-Identifier: MIT
# The adaptive lossy method (udfs-compress(1), ADAPTIVE): the default add
# (no lossy option) is adaptive with a quality target and does not destroy
# the fine-tune (each lossy tensor's measured delta error stays near
# --max-error; UltraDelta's old default s = 0.97 left errors above 1);
# add -> verify -> export works and exports the same bytes on every run;
# `udfs info` names each tensor's code with its bytes and error; --ratio
# reaches its target in real bytes of the whole model; at 30x seeded sign
# codes keep each tensor's direction; a LoRA-shaped
# (rank-8) delta gets low-rank codes of rank >= 8 and a delta error under
# 0.1 (what the rank-8 part leaves is only its factors' rounding);
# a group add applies the trace-norm factor to the seeded residual codes;
# a tensor of more than four chunks, priced on four of them, still meets
# --max-error; a model of 400 equal tensors keeps the 0.1 target on each; bad combinations of options fail with one line, store
# unchanged.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 4 --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
gen finetune "$T/base.safetensors" "$T/lora.safetensors" --lora --seed 3
gen model "$T/b32.safetensors" --mb 1 --dtype f32 --seed 4
gen finetune "$T/b32.safetensors" "$T/ft32.safetensors" --seed 5
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add-base f32" "$UC" add-base -q "$S" b32 "$T/b32.safetensors"

# eval_max NAME SRC: the largest delta error of NAME's lossy tensors.
eval_max() {
	"$UDFS" eval "$S" "$1" --against "$2" --json >"$T/eval.json" &&
		"$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(max(t["rel_err"] for t in j["tensors"] if t["encoding"] != "xor"))' \
			"$T/eval.json"
}

# The default add: adaptive, max error 0.1, one summary line with a ratio.
must "default add" "$UC" add -q "$S" --base base d="$T/ft.safetensors"
grep -q "^d: .* ratio [0-9.]*x" "$T/out" ||
	fail "default add: no summary line with its ratio: $(cat "$T/out")"
must "info d" "$UDFS" info "$S" d --json
cp "$T/out" "$T/d.json"
json_check "$T/d.json" '(j["method"] == "adaptive" and
	j["params"]["max_error"] == 0.1 and
	all("code" in t and "delta_error" in t and t["stored_bytes"] > 0
	    for f in j["files"] for t in f["tensors"]
	    if t["encoding"] == "adaptive") and
	any(t["encoding"] == "adaptive" for f in j["files"]
	    for t in f["tensors"]))' ||
	fail "default add: info --json"
e=$(eval_max d "$T/ft.safetensors") || fail "eval d"
echo "default add: largest delta error $e"
"$PY" -c "import sys; sys.exit(0 if $e <= 0.13 else 1)" ||
	fail "default add: a lossy tensor's delta error is $e (> 0.13)"
ok "verify d" "$UDFS" verify "$S" d
ok "export d" "$UDFS" export "$S" d "$T/x1"
ok "export d again" "$UDFS" export "$S" d "$T/x2"
same_tree "$T/x1" "$T/x2" || fail "two exports of d differ"

# The text table names each tensor's code and error.
must "info d text" "$UDFS" info "$S" d
grep -q "CODE *ERROR" "$T/out" || fail "info: no CODE column"
grep -q "adaptive .* [0-9.]*x  [a-z0-9x+@%]* *0\.[0-9]*$" "$T/out" ||
	fail "info: no code on an adaptive row: $(grep adaptive "$T/out" |
		head -n 1)"

# Same input, same bytes: a second store exports identically.
S2=$T/store2
new_store "$S2"
must "add-base 2" "$UC" add-base -q "$S2" base "$T/base.safetensors"
must "default add 2" "$UC" add -q "$S2" --base base d="$T/ft.safetensors"
ok "export d from store2" "$UDFS" export "$S2" d "$T/x3"
same_tree "$T/x1" "$T/x3" || fail "the same add in two stores differs"

# --ratio: the whole model in real bytes, as udfs info counts them.
must "ratio add" "$UC" add -q "$S" --base base --method adaptive \
	--ratio 10 r10="$T/ft.safetensors"
must "info r10" "$UDFS" info "$S" r10 --json
json_check "$T/out" 'j["ratio"] >= 10 and j["ratio"] < 10.5' ||
	fail "--ratio 10: $(grep '"ratio"' "$T/out" | head -n 1)"
ok "verify r10" "$UDFS" verify "$S" r10

# --ratio 30: about half a bit an element, where trellis codes (one path
# bit per 1-4 elements) win; scaled up beyond their least-squares scale,
# the reconstruction is noise around the delta, not a shrunken delta:
# every lossy tensor keeps its direction (cosine > 0.5) though its error
# is near 1; two exports agree.
must "ratio 30 add" "$UC" add -q "$S" --base base --method adaptive \
	--ratio 30 r30="$T/ft.safetensors"
must "info r30" "$UDFS" info "$S" r30 --json
json_check "$T/out" '(j["ratio"] >= 30 and j["ratio"] < 31.5 and
	any("tcq" in t["code"] for f in j["files"]
	    for t in f["tensors"] if t["encoding"] == "adaptive"))' ||
	fail "--ratio 30: no trellis code, or ratio off"
must "eval r30" "$UDFS" eval "$S" r30 --against "$T/ft.safetensors" --json
json_check "$T/out" 'min(t["cosine"] for t in j["tensors"]
	if t["encoding"] != "xor") > 0.5' ||
	fail "--ratio 30: a lossy tensor lost its direction"
ok "export r30" "$UDFS" export "$S" r30 "$T/y1"
ok "export r30 again" "$UDFS" export "$S" r30 "$T/y2"
same_tree "$T/y1" "$T/y2" || fail "two exports of r30 differ"
rm -rf "$T/y1" "$T/y2"

# A rank-8 delta: low-rank codes of rank >= 8, nearly exact.
must "lora add" "$UC" add -q "$S" --base base --method adaptive --ratio 15 \
	lora="$T/lora.safetensors"
must "info lora" "$UDFS" info "$S" lora --json
json_check "$T/out" 'all(t["code"].startswith("lr") and
	int(t["code"][2:].split("x")[0]) >= 8
	for f in j["files"] for t in f["tensors"]
	if t["encoding"] == "adaptive")' ||
	fail "lora: not low-rank codes of rank >= 8"
e=$(eval_max lora "$T/lora.safetensors") || fail "eval lora"
echo "lora: largest delta error $e"
"$PY" -c "import sys; sys.exit(0 if $e <= 0.1 else 1)" ||
	fail "lora: a lossy tensor's delta error is $e (> 0.1)"

# A group add: UltraDelta's trace-norm factor scales the gain of the
# seeded (UltraDelta-like) residual codes of all but the model with the
# smallest trace norm: their gains are then not 1/(1-r). Trellis codes
# beat seeded ones at every rate they reach, so --codes leaves them out
# here (and no code of theirs may appear).
gen finetune "$T/base.safetensors" "$T/ft2.safetensors" --rel 0.06 --seed 7
must "group add" "$UC" add -q "$S" --base base --codes lr,sign,q,rand \
	--ratio 20 g1="$T/ft.safetensors" g2="$T/ft2.safetensors"
"$UDFS" info "$S" g1 --json >"$T/g1.json" &&
	"$UDFS" info "$S" g2 --json >"$T/g2.json" || fail "info g1, g2"
"$PY" - "$T/g1.json" "$T/g2.json" <<'EOF' || fail "group add: trace-norm factor"
import json, sys
plain = {round(1 / (1 - r), 4)
         for r in (0.2, 0.35, 0.5, 0.65, 0.7, 0.8, 0.9)}
scaled = []
for path in sys.argv[1:]:
    j = json.load(open(path))
    g = [t["gain"] for f in j["files"] for t in f["tensors"]
         if "@rand" in t.get("code", "")]
    if not g:
        sys.exit("%s: no seeded code" % path)
    scaled.append(any(round(x, 4) not in plain for x in g))
    if any("tcq" in t.get("code", "") for f in j["files"]
           for t in f["tensors"]):
        sys.exit("%s: a trellis code despite --codes" % path)
    if j["params"].get("families") != ["lr", "sign", "q", "rand"]:
        sys.exit("%s: params %s" % (path, j["params"]))
if scaled.count(True) != 1:
    sys.exit("models with scaled gains: %s" % scaled)
EOF

# F32, and --max-error alone selects the adaptive method.
must "f32 add" "$UC" add -q "$S" --base b32 --max-error 0.2 \
	f32="$T/ft32.safetensors"
must "info f32" "$UDFS" info "$S" f32 --json
json_check "$T/out" '(j["method"] == "adaptive" and
	j["params"]["max_error"] == 0.2)' || fail "--max-error 0.2: info"
ok "verify f32" "$UDFS" verify "$S" f32

# Tensors of 8 chunks (64 MiB of F32, H=1024): priced on four chunks, written
# on all, each within the error target.
gen model "$T/big.safetensors" --mb 64 --dtype f32 --seed 8
gen finetune "$T/big.safetensors" "$T/bigft.safetensors" --seed 9
must "add-base big" "$UC" add-base -q "$S" big "$T/big.safetensors"
must "default add big" "$UC" add -q "$S" --base big bigd="$T/bigft.safetensors"
e=$(eval_max bigd "$T/bigft.safetensors") || fail "eval bigd"
echo "default add, 8-chunk tensors: largest delta error $e"
"$PY" -c "import sys; sys.exit(0 if $e <= 0.13 else 1)" ||
	fail "default add big: a lossy tensor's delta error is $e (> 0.13)"
rm -f "$T/big.safetensors" "$T/bigft.safetensors"

# A model of many equal tensors (as deep and mixture-of-experts models
# are): each is a small part of the whole, but none is small beside the
# others, so the default keeps its error target of 0.1 for all of them and
# stores them lossy (a rule by share of the whole model tightened every
# one to ~0.02 and stored them nearly exactly).
st_py "$T/many.safetensors" '{"l%03d.w" % i:
	np.random.default_rng(i).standard_normal((32, 64)) * 0.05
	for i in range(400)}'
st_py "$T/manyft.safetensors" '{"l%03d.w" % i:
	np.random.default_rng(i).standard_normal((32, 64)) * 0.05 +
	np.random.default_rng(1000 + i).standard_normal((32, 64)) * 0.002
	for i in range(400)}'
must "add-base many" "$UC" add-base -q "$S" many "$T/many.safetensors"
must "default add many" "$UC" add -q "$S" --base many \
	manyd="$T/manyft.safetensors"
must "eval manyd" "$UDFS" eval "$S" manyd --against "$T/manyft.safetensors" \
	--json
json_check "$T/out" '(len(j["tensors"]) == 400 and
	all(t["encoding"] == "adaptive" and 0.04 < t["rel_err"] <= 0.13
	    for t in j["tensors"]))' ||
	fail "many equal tensors: not all lossy near the 0.1 target"
rm -f "$T/many.safetensors" "$T/manyft.safetensors"

# Bad combinations: one line, store unchanged.
bad "--codes: an unknown family" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --codes lr,tcq,zip bad="$T/ft.safetensors"
bad "--codes with UltraDelta" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --codes q --sparsity 0.5 bad="$T/ft.safetensors"
bad "max-error with sparsity" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --max-error 0.1 --sparsity 0.9 e1="$T/ft.safetensors"
bad "max-error with ultradelta" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --method ultradelta --max-error 0.1 e2="$T/ft.safetensors"
bad "max-error with ratio" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --max-error 0.1 --ratio 5 e3="$T/ft.safetensors"
bad "adaptive with bits" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --method adaptive --bits 3 e4="$T/ft.safetensors"
bad "negative max-error" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --max-error -1 e5="$T/ft.safetensors"
bad "unreachable ratio" "$S" udfs-compress "$UC" add -q "$S" \
	--base base --method adaptive --ratio 100000 e6="$T/ft.safetensors"

finish

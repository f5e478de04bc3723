#!/bin/sh
# SPDX-License-Identifier: MIT
# The admin verbs' machine-readable and safe forms: `verify --json` is one
# JSON document (per-model status, damaged chunks named) also when it
# fails; `rm` of a base in use names the models that use it; `gc --dry-run`
# lists what gc would remove, removes nothing, and lists exactly what a
# real gc then removes; `eval --json` stays valid JSON when a metric is
# infinite or NaN (null there).
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 2 --seed 1
for i in 1 2 3 4 5; do
	gen finetune "$T/base.safetensors" "$T/ft$i.safetensors" --seed $((i + 1))
done
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add lossless" "$UC" add -q "$S" --base base --lossless \
	ft1="$T/ft1.safetensors" ft2="$T/ft2.safetensors" \
	ft3="$T/ft3.safetensors" ft4="$T/ft4.safetensors"
must "add lossy" "$UC" add -q "$S" --base base --sparsity 0.9 \
	lo="$T/ft5.safetensors"

# verify --json of a healthy store.
if ok "verify --json" "$UDFS" verify --json "$S"; then
	cp "$T/out" "$T/v.json"
	json_check "$T/v.json" '(j["problems"] == 0 and
		sorted(m["name"] for m in j["models"]) ==
		["base", "ft1", "ft2", "ft3", "ft4", "lo"] and
		all(m["status"] == "ok" and m["problems"] == [] and
		    m["files"] == 1 for m in j["models"]))' ||
		fail "verify --json: $(head -c 300 "$T/v.json")"
fi

# rm of a base in use: one line naming the first users and the rest.
bad "rm of a base with five users" "$S" udfs "$UDFS" rm "$S" base
grep -q '(ft1, ft2, ft3 and 2 more)' "$T/err" ||
	fail "rm base does not name its users: $(cat "$T/err")"

# gc --dry-run: leftovers of a crash are listed, nothing is removed.
pack=$(sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='ft4'")
cp "$S/$pack" "$S/tmp/0123456789abcdef.pack"
cp "$S/$pack" "$S/packs/fedcba9876543210.pack"
mkdir "$S/bases/0badbadbadbadbad"
cp "$T/base.safetensors" "$S/bases/0badbadbadbadbad/model.safetensors"
fingerprint "$S" >"$T/fp.before"
if ok "gc --dry-run" "$UDFS" gc --dry-run "$S"; then
	sed -n 's/^would remove \([^ ]*\) (.*)$/\1/p' "$T/out" | sort \
		>"$T/dry.list"
	[ "$(wc -l <"$T/dry.list")" -eq 3 ] ||
		fail "gc --dry-run listed: $(cat "$T/out")"
	grep -q '^would remove 3 unreferenced entries' "$T/out" ||
		fail "gc --dry-run totals: $(cat "$T/out")"
fi
fingerprint "$S" >"$T/fp.after"
cmp -s "$T/fp.before" "$T/fp.after" || fail "gc --dry-run changed the store"
(cd "$S" && find tmp packs bases -mindepth 1 -maxdepth 1 | sort) >"$T/ls.1"
ok "gc" "$UDFS" gc -q "$S"
(cd "$S" && find tmp packs bases -mindepth 1 -maxdepth 1 | sort) >"$T/ls.2"
comm -23 "$T/ls.1" "$T/ls.2" >"$T/gone"
cmp -s "$T/dry.list" "$T/gone" ||
	fail "gc removed '$(echo $(cat "$T/gone"))', --dry-run listed '$(echo $(cat "$T/dry.list"))'"

# verify --json of damaged models: still one JSON document on stdout, the
# damaged chunks named, one line on stderr, exit 1.
damage_pack "$S" ft1 || die "damage ft1"
run "$UDFS" verify --json "$S"
[ "$rc" -eq 1 ] || fail "verify --json of a damaged store: exit $rc"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "verify --json stderr: $(cat "$T/err")"
cp "$T/out" "$T/v.json"
json_check "$T/v.json" '(j["problems"] >= 1 and
	[m["name"] for m in j["models"] if m["status"] != "ok"] == ["ft1"] and
	all(p["kind"] == "DAMAGED" and p["file"] == "ft1.safetensors" and
	    isinstance(p["chunk"], int) and p["tensor"] and p["message"]
	    for m in j["models"] for p in m["problems"]))' ||
	fail "verify --json of damage: $(head -c 600 "$T/v.json")"
"$PY" -c 'import json,sys; json.load(sys.stdin)' <"$T/v.json" ||
	fail "verify --json output does not parse"

# eval --json with non-finite metrics: an exact tensor (SNR +inf) and one
# holding inf (NaN cosine and error) give null, never an empty line.
E=$T/evs
new_store "$E"
st_py "$T/eb.safetensors" '{"w": np.linspace(-1, 1, 4096).reshape(64, 64),
	"e": np.linspace(0, 1, 4096).reshape(64, 64)}'
st_py "$T/ef.safetensors" '{"w": np.where(np.arange(4096) == 7, np.inf,
	np.linspace(-1, 1, 4096) * 1.01).reshape(64, 64),
	"e": np.linspace(0, 1, 4096).reshape(64, 64)}'
must "add-base eb" "$UC" add-base -q "$E" base "$T/eb.safetensors"
must "add ef" "$UC" add -q "$E" --base base --lossless ef="$T/ef.safetensors"
if ok "eval --json" "$UDFS" eval --json "$E" ef --against "$T/ef.safetensors"
then
	cp "$T/out" "$T/e.json"
	json_check "$T/e.json" '({t["name"]: t for t in j["tensors"]}["e"]["snr_db"] is None and
		{t["name"]: t for t in j["tensors"]}["e"]["rel_err"] == 0 and
		{t["name"]: t for t in j["tensors"]}["w"]["cosine"] is None and
		j["overall"]["cosine"] is None)' ||
		fail "eval --json: $(head -c 600 "$T/e.json")"
fi
ok "eval (text) with non-finite metrics" "$UDFS" eval "$E" ef \
	--against "$T/ef.safetensors"
finish

#!/bin/sh
# SPDX-License-Identifier: MIT
# A delta's safetensors header that is byte for byte its base's (a
# fine-tune of the same tensors) is stored once: the delta's files row
# holds NULL and readers take the base's (udfs(5), files, header). A
# header that differs is stored in its own row; both read back exactly. A
# format 2 store is upgraded to 3 by its first writer; a base row that no
# longer matches is one error line, never wrong bytes.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
st_py "$T/b.safetensors" '{"a": np.linspace(-1, 1, 1 << 18).reshape(256, 1024),
	"n": np.ones(8)}'
st_py "$T/f.safetensors" '{"a": np.linspace(-1, 1, 1 << 18).reshape(256, 1024) * 1.01,
	"n": np.ones(8) * 2}'
st_py "$T/o.safetensors" '{"a": np.linspace(-1, 1, 1 << 18).reshape(256, 1024) * 1.01,
	"m": np.ones(8)}'
cmp -s -n 100 "$T/b.safetensors" "$T/f.safetensors" ||
	die "fixture: f's header differs from b's"
must "add-base" "$UC" add-base -q "$S" base "$T/b.safetensors"
# Written by a format 2 writer so far: the next add upgrades it.
sqlite3 "$S/catalog.db" 'PRAGMA user_version=2' || die "set user_version"
must "add ft" "$UC" add -q "$S" --base base --lossless ft="$T/f.safetensors"
must "add other" "$UC" add -q "$S" --base base --lossless \
	other="$T/o.safetensors"
must "add lossy" "$UC" add -q "$S" --base base lo="$T/f.safetensors"
[ "$(sqlite3 "$S/catalog.db" 'PRAGMA user_version')" = 4 ] ||
	fail "not upgraded to format 4"
hdr() { # MODEL: typeof and length of its header row
	sqlite3 "$S/catalog.db" "SELECT typeof(f.header) || ' ' ||
		coalesce(length(f.header), 0) FROM files f JOIN models m
		ON m.id = f.model_id WHERE m.name = '$1'"
}
[ "$(hdr ft)" = "null 0" ] || fail "ft: header row $(hdr ft), expected NULL"
[ "$(hdr lo)" = "null 0" ] || fail "lo: header row $(hdr lo), expected NULL"
[ "$(hdr other)" != "null 0" ] || fail "other: its own header is not stored"
for m in ft other; do
	src=$T/f.safetensors
	[ $m = other ] && src=$T/o.safetensors
	must "export $m" "$UDFS" export -q "$S" $m "$T/x-$m"
	cmp "$T/x-$m/$(basename "$src")" "$src" || fail "$m: exported bytes differ"
done
must "export lo" "$UDFS" export -q "$S" lo "$T/x-lo"
cmp -n "$(($(od -An -tu8 -N8 "$T/f.safetensors") + 8))" \
	"$T/x-lo/f.safetensors" "$T/f.safetensors" || fail "lo: header differs"
must "verify" "$UDFS" verify "$S"
# The shared header costs the delta nothing: ft stores less than other.
ft_b=$("$UDFS" info "$S" ft --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
ot_b=$("$UDFS" info "$S" other --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
[ "$ft_b" -lt "$ot_b" ] || fail "stored bytes: ft $ft_b, other $ot_b"
# A base row that no longer holds data_offset bytes: one error line.
sqlite3 "$S/catalog.db" "UPDATE files SET header = X'00' WHERE model_id =
	(SELECT id FROM models WHERE name = 'base')" || die "damage"
one_line_error "export, damaged base header" udfs \
	"$UDFS" export -q "$S" ft "$T/x-bad"
grep -q "malformed header row" "$T/err" || fail "export: $(cat "$T/err")"
finish

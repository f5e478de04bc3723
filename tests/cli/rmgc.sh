#!/bin/sh
# SPDX-License-Identifier: MIT
# `udfs rm` and `udfs gc`: rm of a delta removes its pack and rows; rm of a
# base that deltas use is refused with one line; rm of a missing model
# fails cleanly; gc after a simulated crash (files in tmp/, packs/ and
# bases/ that the catalog does not reference) removes exactly those, and
# verify still passes; a base whose deltas are gone can be removed.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 2 --seed 1
gen finetune "$T/base.safetensors" "$T/a.safetensors" --seed 2
gen finetune "$T/base.safetensors" "$T/b.safetensors" --seed 3
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add a, b" "$UC" add -q "$S" --base base --lossless \
	a="$T/a.safetensors" b="$T/b.safetensors"
must "add lossy c" "$UC" add -q "$S" --base base --sparsity 0.9 \
	c="$T/a.safetensors"

pack_of() {
	sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='$1'"
}

# rm of a delta: its pack and every row of it go, the others stay.
pa=$(pack_of a)
pb=$(pack_of b)
[ -f "$S/$pa" ] || die "no pack for a: '$pa'"
ok "rm a" "$UDFS" rm "$S" a
[ -s "$T/err" ] && fail "rm a printed on stderr: $(cat "$T/err")"
[ -e "$S/$pa" ] && fail "rm a left its pack $pa"
[ -f "$S/$pb" ] || fail "rm a removed b's pack"
n=$(sqlite3 "$S/catalog.db" "SELECT count(*) FROM models WHERE name='a'")
[ "$n" -eq 0 ] || fail "rm a left its model row"
n=$(sqlite3 "$S/catalog.db" \
	'SELECT count(*) FROM files WHERE model_id NOT IN (SELECT id FROM models)')
[ "$n" -eq 0 ] || fail "rm a left $n file rows"
n=$(sqlite3 "$S/catalog.db" \
	'SELECT count(*) FROM tensors WHERE file_id NOT IN (SELECT id FROM files)')
[ "$n" -eq 0 ] || fail "rm a left $n tensor rows"
ok "ls after rm" "$UDFS" ls "$S"
grep -q '^a ' "$T/out" && fail "ls still shows a"
grep -q '^b ' "$T/out" || fail "ls lost b"
ok "verify after rm" "$UDFS" verify "$S"
# The name is free again.
ok "re-add a" "$UC" add -q "$S" --base base --lossless a="$T/a.safetensors"
ok "export a" "$UDFS" export "$S" a "$T/ea"
same_tree "$T/a.safetensors" "$T/ea/a.safetensors" || fail "re-added a differs"

# rm of a base with deltas: refused, one line, nothing changes.
bad "rm of a used base" "$S" udfs "$UDFS" rm "$S" base
grep -q 'base' "$T/err" || fail "rm base: message does not name the base"
bad "rm of a missing model" "$S" udfs "$UDFS" rm "$S" nope
bad "rm without a name" "$S" udfs "$UDFS" rm "$S"
bad "rm of a missing model twice" "$S" udfs "$UDFS" rm "$S" a-not-there

# A simulated crash: a half-written pack in tmp/, a tmp base directory, a
# renamed but unreferenced pack in packs/ and an unreferenced base dir.
cp "$S/$pb" "$S/tmp/0123456789abcdef.pack"
mkdir "$S/tmp/00000000deadbeef"
cp "$T/base.safetensors" "$S/tmp/00000000deadbeef/"
cp "$S/$pb" "$S/packs/fedcba9876543210.pack"
mkdir "$S/bases/0badbadbadbadbad"
cp "$T/base.safetensors" "$S/bases/0badbadbadbadbad/model.safetensors"
sqlite3 "$S/catalog.db" .dump >"$T/dump.before"
ok "verify with leftovers" "$UDFS" verify "$S"
if ok "gc" "$UDFS" gc "$S"; then
	grep -q 'removed 4 ' "$T/out" ||
		fail "gc did not report 4 removed entries: $(cat "$T/out")"
fi
[ -z "$(ls -A "$S/tmp")" ] || fail "gc left in tmp/: $(ls -A "$S/tmp")"
[ -e "$S/packs/fedcba9876543210.pack" ] && fail "gc left the orphan pack"
[ -e "$S/bases/0badbadbadbadbad" ] && fail "gc left the orphan base"
left=$(orphans "$S")
[ -z "$left" ] || fail "unreferenced after gc: $left"
for m in base a b c; do
	p=$(pack_of $m)
	[ -e "$S/$p" ] || fail "gc removed $m's storage $p"
done
sqlite3 "$S/catalog.db" .dump >"$T/dump.after"
cmp -s "$T/dump.before" "$T/dump.after" || fail "gc changed the catalog"
ok "verify after gc" "$UDFS" verify "$S"
# A second gc has nothing to do.
if ok "gc again" "$UDFS" gc "$S"; then
	grep -q 'removed 0 ' "$T/out" || fail "second gc: $(cat "$T/out")"
fi
ok "gc -q" "$UDFS" gc -q "$S"
[ -s "$T/out" ] && fail "gc -q printed: $(cat "$T/out")"

# Remove the deltas, then the base; the store ends empty.
for m in a b c; do
	ok "rm $m" "$UDFS" rm "$S" $m
done
ok "rm base" "$UDFS" rm "$S" base
n=$(sqlite3 "$S/catalog.db" 'SELECT count(*) FROM models')
[ "$n" -eq 0 ] || fail "$n models left after removing all"
[ -z "$(ls -A "$S/packs" "$S/bases" "$S/tmp" | grep -v ':$' | grep .)" ] ||
	fail "files left after removing all: $(ls -AR "$S")"
ok "verify of an empty store" "$UDFS" verify "$S"
ok "ls --json of an empty store" "$UDFS" ls --json "$S"
cp "$T/out" "$T/ls.json"
json_check "$T/ls.json" 'j == []' || fail "ls --json of an empty store"
n=$(sqlite3 "$S/catalog.db" 'PRAGMA integrity_check')
[ "$n" = ok ] || fail "integrity_check: $n"

finish

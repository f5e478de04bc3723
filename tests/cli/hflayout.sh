#!/bin/sh
# SPDX-License-Identifier: MIT
# A real Hugging Face model layout, end to end: a directory of 15 files
# (3 safetensors shards and their index, config.json,
# generation_config.json, the tokenizer files, README.md, .gitattributes,
# and original/ with params.json and tokenizer.model, as Meta-Llama-3 ships
# it) plus a .git/ directory. It is added as a base (copied and --link-ed)
# and, as a fine-tune, losslessly and lossily; every model is verified,
# evaluated, listed by `udfs info` with all 15 paths, and exported byte for
# byte. Then a second add against the 15-file base (models of 9+ files
# crashed verify, eval, the mount, and the next add against such a base),
# rm of a linked base, and a file name with a tab kept as it is.
# Uses the stories260K checkpoints of $UDFS_SHARED when present.
. "$(dirname "$0")/lib.sh"
. "$UDFS_TOP/tests/gen/hf_layout.sh"


S=$T/store
new_store "$S"

if shared_data; then
	D=$UDFS_SHARED/data/stories260K
	cp "$D/base-bf16/model.safetensors" "$T/base.safetensors"
	cp "$D/ft-lives-bf16/model.safetensors" "$T/ft.safetensors"
else
	gen model "$T/base.safetensors" --mb 2 --seed 1
	gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
fi

hf_dir "$T/base.safetensors" "$T/hf-base" || die "hf_dir base"
hf_dir "$T/ft.safetensors" "$T/hf-ft" || die "hf_dir ft"
# What a store must keep: every file but .git/.
hf_paths "$T/hf-base" >"$T/want.paths"
n=$(wc -l <"$T/want.paths")
[ "$n" -eq 15 ] || die "fixture has $n files, want 15"

# same_files SRC DIR: DIR holds exactly SRC's files but .git/, same bytes.
same_files() {
	(cd "$2" && find . -type f | sed 's|^\./||' | sort) >"$T/got.paths"
	if ! cmp -s "$T/want.paths" "$T/got.paths"; then
		diff "$T/want.paths" "$T/got.paths" | sed 's/^/    /'
		return 1
	fi
	while read -r p; do
		cmp -s "$1/$p" "$2/$p" || {
			echo "    $p differs"
			return 1
		}
	done <"$T/want.paths"
}

# check_model NAME SRC: info lists the 15 paths; verify passes; the export
# is SRC's files byte for byte.
check_model() {
	if ok "info $1" "$UDFS" info --json "$S" "$1"; then
		cp "$T/out" "$T/info.json"
		json_check "$T/info.json" \
			"sorted(f['path'] for f in j['files']) == [l.strip() for l in open('$T/want.paths')]" ||
			fail "info $1: files are not the source's 15"
	fi
	ok "verify $1" "$UDFS" verify "$S" "$1"
	if ok "export $1" "$UDFS" export "$S" "$1" "$T/exp-$1"; then
		same_files "$2" "$T/exp-$1" || fail "export $1 differs from $2"
	fi
	rm -rf "$T/exp-$1"
}

# --- as a base: copied, then hard-linked ----------------------------------
if ok "add-base hfbase" "$UC" add-base -q "$S" hfbase "$T/hf-base"; then
	grep -q 'skipped \.git/' "$T/err" ||
		fail "add-base: no note that .git/ was skipped: $(cat "$T/err")"
	[ "$(wc -l <"$T/err")" -eq 1 ] ||
		fail "add-base: stderr is not exactly the one note"
fi
check_model hfbase "$T/hf-base"
ok "add-base --link" "$UC" add-base -q --link "$S" hflink "$T/hf-base"
check_model hflink "$T/hf-base"
dir=$S/$(sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='hflink'")
for p in model-00002-of-00003.safetensors original/params.json .gitattributes; do
	[ "$dir/$p" -ef "$T/hf-base/$p" ] || fail "--link: $p is not a hard link"
done

# --- as a fine-tune, lossless and lossy -----------------------------------
ok "add lossless" "$UC" add -q "$S" --base hfbase --lossless \
	"hfft=$T/hf-ft"
check_model hfft "$T/hf-ft"
ok "add lossy" "$UC" add -q "$S" --base hfbase "hflossy=$T/hf-ft"
ok "info hflossy" "$UDFS" info "$S" hflossy
ok "verify hflossy" "$UDFS" verify "$S" hflossy
if ok "eval hflossy" "$UDFS" eval --json "$S" hflossy --against "$T/hf-ft"; then
	cp "$T/out" "$T/eval.json"
	json_check "$T/eval.json" "j['name'] == 'hflossy' and len(j['tensors']) > 0" ||
		fail "eval hflossy: wrong JSON"
fi
# The verbatim files of a lossy model are exact.
if ok "export hflossy" "$UDFS" export "$S" hflossy "$T/exp-lossy"; then
	for p in config.json original/params.json original/tokenizer.model \
		.gitattributes model.safetensors.index.json; do
		cmp -s "$T/hf-ft/$p" "$T/exp-lossy/$p" || fail "lossy export: $p"
	done
fi

# --- a second add against the 15-file bases -------------------------------
ok "second add" "$UC" add -q "$S" --base hfbase --lossless \
	"hfft2=$T/ft.safetensors"
ok "verify hfft2" "$UDFS" verify "$S" hfft2
ok "add against the linked base" "$UC" add -q "$S" --base hflink \
	--lossless "hfft3=$T/hf-ft"
check_model hfft3 "$T/hf-ft"
ok "verify all" "$UDFS" verify "$S"
# rm takes a base's subdirectories too, and a linked base leaves the source.
ok "rm hfft3" "$UDFS" rm "$S" hfft3
ok "rm hflink" "$UDFS" rm "$S" hflink
[ -z "$(orphans "$S")" ] || fail "rm left files behind: $(orphans "$S")"
[ -f "$T/hf-base/original/params.json" ] ||
	fail "rm of a linked base removed a source file"

# --- any name a directory holds is kept, control characters too ----------
# (the mount serves them; text output escapes them, JSON keeps them exact)
cp -r "$T/hf-ft" "$T/hf-odd"
tab=$(printf '\t')
printf x >"$T/hf-odd/original/a${tab}b"
if ok "add with a tab in a file name" "$UC" add -q "$S" --base hfbase \
	--lossless "hfodd=$T/hf-odd"; then
	ok "verify hfodd" "$UDFS" verify "$S" hfodd
	"$UDFS" info --json "$S" hfodd >"$T/odd.json" 2>"$T/err"
	json_check "$T/odd.json" \
		"'original/a\\tb' in [f['path'] for f in j['files']]" ||
		fail "hfodd: the file with a tab is not kept"
fi

finish

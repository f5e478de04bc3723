#!/bin/sh
# SPDX-License-Identifier: MIT
# Private weights stay private (udfs(5), contract on permission bits): a
# source with a 0600 file (gated weights are often kept so) is stored with
# no group or other bits, as a base (copied, and --link-ed: a link shares
# the inode's mode, so only files whose mode is exactly the model's are
# linked, the others copied; its subdirectories get no group or other
# bits either) and as a delta pack; a 0640 source keeps group
# read only; a normal 0644 source is still stored 0644.
. "$(dirname "$0")/lib.sh"

umask 022
S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 1 --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
gen shard "$T/base.safetensors" "$T/pub" --shards 2
gen shard "$T/ft.safetensors" "$T/ftpub" --shards 2
mkdir -p "$T/pub/original/deep"
echo '{}' >"$T/pub/original/deep/params.json"
cp -r "$T/pub" "$T/gated"
cp -r "$T/ftpub" "$T/ftgated"
chmod 600 "$T/gated/model-00001-of-00002.safetensors" \
	"$T/ftgated/model-00002-of-00002.safetensors"
cp -r "$T/ftpub" "$T/ftgroup"
chmod 640 "$T/ftgroup/config.json"

storage() {
	echo "$S/$(sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='$1'")"
}

# modes NAME: the permission bits of everything stored for NAME.
modes() {
	find "$(storage "$1")" -exec stat -c '%a %n' {} + | sed "s|$S/||"
}

# all_modes NAME FILEMODE DIRMODE: every stored file of NAME has FILEMODE,
# every stored directory DIRMODE.
all_modes() {
	_p=$(storage "$1")
	_bad=$(find "$_p" \( -type f ! -perm "$2" \) -o \( -type d ! -perm "$3" \))
	[ -z "$_bad" ] || {
		fail "$1: not $2 (files) / $3 (dirs):"
		modes "$1" | sed 's/^/    /'
	}
}

ok "add-base gated" "$UC" add-base -q "$S" gated "$T/gated"
all_modes gated 600 700
ok "verify gated" "$UDFS" verify "$S" gated
ok "add-base --link gated" "$UC" add-base -q --link "$S" gated-link "$T/gated"
all_modes gated-link 600 700
d=$(storage gated-link)
[ "$d/model-00001-of-00002.safetensors" -ef \
	"$T/gated/model-00001-of-00002.safetensors" ] ||
	fail "--link: the 0600 file (the model's mode) is not linked"
if [ "$d/config.json" -ef "$T/gated/config.json" ]; then
	fail "--link: a 0644 file of a 0600 model was linked"
fi
[ "$(stat -c %a "$T/gated/config.json")" = 644 ] ||
	fail "--link changed the mode of a source file"
ok "verify gated-link" "$UDFS" verify "$S" gated-link

ok "add-base pub" "$UC" add-base -q "$S" pub "$T/pub"
all_modes pub 644 755
ok "add-base --link pub" "$UC" add-base -q --link "$S" pub-link "$T/pub"
all_modes pub-link 644 755

ok "add gated fine-tune" "$UC" add -q "$S" --base pub --lossless \
	"ftgated=$T/ftgated"
all_modes ftgated 600 700
ok "add lossy gated fine-tune" "$UC" add -q "$S" --base gated \
	"ftgated-lossy=$T/ftgated"
all_modes ftgated-lossy 600 700
ok "add 0640 fine-tune" "$UC" add -q "$S" --base pub --lossless \
	"ftgroup=$T/ftgroup"
all_modes ftgroup 640 750
ok "add public fine-tune" "$UC" add -q "$S" --base gated --lossless \
	"ftpub=$T/ftpub"
all_modes ftpub 644 755
ok "verify" "$UDFS" verify "$S"

finish

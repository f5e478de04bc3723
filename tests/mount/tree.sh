#!/bin/sh
# SPDX-License-Identifier: MIT
# A model directory the way real repos look: files in subdirectories
# (Meta-Llama-3 ships original/params.json and original/tokenizer.model),
# a dotfile, and file names with unusual bytes (a tab, a newline, an
# escape, a leading dash, spaces), added with udfs-compress as they are. The mount shows every file at its path, as nested
# read-only directories: listings, reads (cmp and diff -r against the
# source), ENOENT, ENOTDIR and EROFS inside subdirectories, inode numbers
# that are distinct and the same after a remount, and nlink = 2 + subdirs.
. "$(dirname "$0")/lib.sh"

tab=$(printf '\t')
nl='
'
esc=$(printf '\033')
mkdir -p "$T/src"
"$GEN" model "$T/src/base.safetensors" --mb 2 --seed 1 >/dev/null 2>&1 ||
	fail "gen_model model"
D=$T/src/ft
mkdir -p "$D/original/sub"
"$GEN" finetune "$T/src/base.safetensors" "$D/model.safetensors" \
	--seed 2 >/dev/null 2>&1 || fail "gen_model finetune"
echo '{"dim": 64}' >"$D/config.json"
echo '{"n_layers": 1}' >"$D/original/params.json"
head -c 5000 /dev/urandom >"$D/original/sub/tokenizer.model"
echo tab >"$D/with${tab}tab.txt"
echo newline >"$D/with${nl}newline.txt"
echo escape >"$D/with${esc}[31mescape.txt"
echo dash >"$D/-dash.txt"
echo spaces >"$D/ spaces .txt"
printf '*.safetensors filter=lfs\n' >"$D/.gitattributes"
"$UDFS_COMPRESS" init "$T/S" >/dev/null || fail "init"
"$UDFS_COMPRESS" add-base -q "$T/S" base "$T/src/base.safetensors" ||
	fail "add-base"
"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless "ft=$D" >/dev/null ||
	fail "add ft"
"$UDFS" ls "$T/S" >/dev/null || fail "ls"

M=$T/mnt
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID

# Every file, at its path, with its bytes.
diff -r "$D" "$M/ft" >"$T/diff" 2>&1 || fail "diff -r: $(head -n 5 "$T/diff")"
for f in model.safetensors config.json original/params.json \
	original/sub/tokenizer.model "with${tab}tab.txt" \
	"with${nl}newline.txt" "with${esc}[31mescape.txt" -dash.txt \
	" spaces .txt" .gitattributes; do
	cmp "$M/ft/$f" "$D/$f" || fail "$f differs"
done
[ "$(ls -A "$M/ft" | wc -l)" -eq 10 ] || fail "ls ft: $(ls -A "$M/ft")"
[ "$(ls "$M/ft/original")" = "params.json${nl}sub" ] ||
	fail "ls original: $(ls "$M/ft/original")"
[ "$(ls "$M/ft/original/sub")" = "tokenizer.model" ] ||
	fail "ls original/sub: $(ls "$M/ft/original/sub")"
[ -d "$M/ft/original" ] && [ -d "$M/ft/original/sub" ] ||
	fail "original is not a directory"
log "every file listed and read, subdirectories included"

# nlink: 2 + subdirectories.
[ "$(stat -c %h "$M/ft")" -eq 3 ] || fail "nlink ft: $(stat -c %h "$M/ft")"
[ "$(stat -c %h "$M/ft/original")" -eq 3 ] || fail "nlink original"
[ "$(stat -c %h "$M/ft/original/sub")" -eq 2 ] || fail "nlink sub"
[ "$(stat -c %h "$M/ft/config.json")" -eq 1 ] || fail "nlink of a file"

# Errors inside subdirectories.
cat "$M/ft/original/nope" 2>"$T/err" && fail "missing file read"
grep -q "No such file" "$T/err" || fail "missing: $(cat "$T/err")"
cat "$M/ft/original/params.json/x" 2>"$T/err" && fail "file as dir read"
grep -q "Not a directory" "$T/err" || fail "ENOTDIR: $(cat "$T/err")"
cat "$M/ft/original/../config.json" >/dev/null || fail "original/.. lookup"
mkdir "$M/ft/original/new" 2>"$T/err" && fail "mkdir in a subdir worked"
grep -q "Read-only" "$T/err" || fail "mkdir: $(cat "$T/err")"
rm -f "$M/ft/original/params.json" 2>"$T/err" && fail "rm in a subdir worked"
grep -q "Read-only" "$T/err" || fail "rm: $(cat "$T/err")"
log "ENOENT, ENOTDIR and EROFS inside subdirectories"

# Inode numbers: distinct, and the same after a remount.
find "$M" -printf '%i %p\n' | sort >"$T/ino.1"
[ -z "$(cut -d' ' -f1 "$T/ino.1" | sort | uniq -d)" ] ||
	fail "inode numbers repeat: $(cut -d' ' -f1 "$T/ino.1" | sort | uniq -d)"
umount_udfs "$M" "$PID"
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID
find "$M" -printf '%i %p\n' | sort >"$T/ino.2"
cmp -s "$T/ino.1" "$T/ino.2" ||
	fail "inode numbers changed across mounts: $(diff "$T/ino.1" "$T/ino.2" | head -n 4)"
log "inode numbers distinct and stable ($(wc -l <"$T/ino.1") inodes)"
umount_udfs "$M" "$PID"
log "ok"

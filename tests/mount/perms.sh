#!/bin/sh
# SPDX-License-Identifier: MIT
# Private weights stay private in the mount: a model added from a 0600
# file (gated weights are often kept so; udfs-compress keeps the source's
# mode on its pack or base files) is served 0400 to its owner, and another
# user gets EACCES even with allow_other; 0644 models and bases stay
# readable by all. Root runs the test; the other user is nobody (setpriv).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root to act as another user"
command -v setpriv >/dev/null 2>&1 || skip "setpriv is missing"
NOBODY=$(id -u nobody 2>/dev/null) || skip "no user nobody"
as_nobody() {
	setpriv --reuid="$NOBODY" --regid="$(id -g nobody)" --clear-groups "$@"
}
chmod 755 "$T" # other users must reach the mountpoint

make_simple_store bf16 2
"$GEN" finetune "$T/src/base.safetensors" "$T/src/gated.safetensors" \
	--seed 31 >/dev/null 2>&1 || fail "gen_model finetune"
chmod 600 "$T/src/gated.safetensors"
"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless \
	"gated=$T/src/gated.safetensors" >/dev/null || fail "add gated"
M=$T/mnt
mount_udfs "$T/S" "$M" -o allow_other
PID=$DAEMON_PID
G=$M/gated/gated.safetensors

[ "$(stat -c %a "$G")" = 400 ] || fail "gated is served $(stat -c %a "$G"), not 400"
[ "$(stat -c %U "$G")" = root ] || fail "gated owner $(stat -c %U "$G")"
[ "$(stat -c %a "$M/gated")" = 500 ] || fail "gated dir $(stat -c %a "$M/gated")"
[ "$(stat -c %a "$M/ft/ft.safetensors")" = 444 ] ||
	fail "ft is served $(stat -c %a "$M/ft/ft.safetensors")"
cmp "$G" "$T/src/gated.safetensors" || fail "the owner cannot read gated"
as_nobody cat "$G" >/dev/null 2>"$T/err" && fail "nobody read the 0600 model"
grep -q "Permission denied" "$T/err" || fail "nobody: $(cat "$T/err")"
as_nobody ls "$M/gated" >/dev/null 2>&1 && fail "nobody listed the 0600 model"
as_nobody cmp "$M/ft/ft.safetensors" "$T/src/ft.safetensors" ||
	fail "nobody cannot read the 0644 model"
log "0600 model: 0400 root, EACCES for nobody with allow_other; 0644 model readable"
umount_udfs "$M" "$PID"

# A base added from a 0600 file: its file too.
cp "$T/src/base.safetensors" "$T/src/pbase.safetensors"
chmod 600 "$T/src/pbase.safetensors"
"$UDFS_COMPRESS" add-base -q "$T/S" pbase "$T/src/pbase.safetensors" ||
	fail "add-base pbase"
mount_udfs "$T/S" "$M" -o allow_other
PID=$DAEMON_PID
[ "$(stat -c %a "$M/pbase/pbase.safetensors")" = 400 ] ||
	fail "pbase is served $(stat -c %a "$M/pbase/pbase.safetensors")"
as_nobody cat "$M/pbase/pbase.safetensors" >/dev/null 2>&1 &&
	fail "nobody read the 0600 base"
cmp "$M/pbase/pbase.safetensors" "$T/src/base.safetensors" ||
	fail "root cannot read pbase"
as_nobody cmp "$M/base/base.safetensors" "$T/src/base.safetensors" ||
	fail "nobody cannot read the 0644 base"
log "0600 base files: 0400, EACCES for nobody"
umount_udfs "$M" "$PID"
log "ok"

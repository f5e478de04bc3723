#!/bin/sh
# SPDX-License-Identifier: MIT
# The store changes while mounted: a model added with udfs-compress appears
# without remounting; a model removed with `udfs rm` while one of its files
# is open disappears for new lookups, and the open descriptor still reads
# the right bytes.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 4
"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft2.safetensors" \
	--seed 21 >/dev/null 2>&1 || fail "gen_model finetune 2"
M=$T/mnt
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID
[ "$(ls "$M" | tr '\n' ' ')" = "base ft " ] || fail "listing: $(ls "$M")"

# Added while mounted: appears (poll with a deadline), reads correctly.
"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless \
	"ft2=$T/src/ft2.safetensors" >/dev/null || fail "add ft2"
wait_for 10 '[ -f "$M/ft2/ft2.safetensors" ]' || fail "ft2 did not appear"
ls "$M" | grep -qx ft2 || fail "ft2 not listed"
cmp "$M/ft2/ft2.safetensors" "$T/src/ft2.safetensors" || fail "ft2 differs"
log "added model appeared"

# Removed while open: the open descriptor keeps working, nothing else.
exec 3<"$M/ft/ft.safetensors" || fail "open ft"
"$UDFS" rm "$T/S" ft >/dev/null || fail "udfs rm ft"
wait_for 10 '! [ -e "$M/ft" ]' || fail "ft still visible after rm"
ls "$M" | grep -qx ft && fail "ft still listed"
cat "$M/ft/ft.safetensors" >/dev/null 2>"$T/err" && fail "new open of ft worked"
grep -q "No such file or directory" "$T/err" || fail "expected ENOENT: $(cat "$T/err")"
cmp - "$T/src/ft.safetensors" <&3 || fail "open fd of removed ft reads wrong bytes"
exec 3<&-
log "removed model: ENOENT for new lookups, open fd reads correctly"

# The other models are unaffected.
cmp "$M/base/base.safetensors" "$T/src/base.safetensors" || fail "base differs"
umount_udfs "$M" "$PID"
log "ok"

#!/bin/sh
# SPDX-License-Identifier: MIT
# The store changes while mounted, under a daemon started the way fstab
# starts it (no -f: it forks): models added with udfs-compress, one after
# the other, appear without remounting, and the daemon never reads a
# deleted catalog or WAL file (its catalog connection is opened after the
# fork, so SQLite's locks are its own); a model removed with `udfs rm` while one of its files
# is open disappears for new lookups, and the open descriptor still reads
# the right bytes.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 4
"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft2.safetensors" \
	--seed 21 >/dev/null 2>&1 || fail "gen_model finetune 2"
"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft3.safetensors" \
	--seed 22 >/dev/null 2>&1 || fail "gen_model finetune 3"
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
"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless \
	"ft3=$T/src/ft3.safetensors" >/dev/null || fail "add ft3"
wait_for 10 '[ -f "$M/ft3/ft3.safetensors" ]' || fail "ft3 did not appear"
cmp "$M/ft3/ft3.safetensors" "$T/src/ft3.safetensors" || fail "ft3 differs"
ls -l "/proc/$PID/fd" | grep -q 'catalog.*(deleted)' &&
	fail "the daemon reads a deleted catalog file: $(ls -l "/proc/$PID/fd" | grep deleted)"
log "added models appeared, one after the other"

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

#!/bin/sh
# SPDX-License-Identifier: MIT
# Errors a user sees: every modification fails with EROFS ("Read-only file
# system"), missing paths with ENOENT, the user.udfs.* xattrs are there
# (getfattr -d), statfs reports the store's usage, a damaged chunk reads as
# EIO (logged with model, file, tensor and chunk), and `udfs mount` with a
# bad store, mountpoint or option exits non-zero with one line.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 4
M=$T/mnt
F=$M/ft/ft.safetensors
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID

erofs() { # description command...
	_what=$1
	shift
	"$@" >/dev/null 2>"$T/err" && fail "$_what succeeded"
	grep -q "Read-only file system" "$T/err" ||
		fail "$_what: expected EROFS, got: $(cat "$T/err")"
}
enoent() {
	_what=$1
	shift
	"$@" >/dev/null 2>"$T/err" && fail "$_what succeeded"
	grep -q "No such file or directory" "$T/err" ||
		fail "$_what: expected ENOENT, got: $(cat "$T/err")"
}

erofs "write" sh -c 'echo x >"$1"' sh "$F"
erofs "append" sh -c 'echo x >>"$1"' sh "$F"
erofs "create" touch "$M/ft/new"
erofs "create in root" touch "$M/new"
erofs "mkdir" mkdir "$M/newdir"
erofs "mkdir in model" mkdir "$M/ft/newdir"
erofs "rm" rm -f "$F"
erofs "rmdir" rmdir "$M/ft"
erofs "chmod" chmod 600 "$F"
erofs "truncate" truncate -s 0 "$F"
erofs "mv" mv "$F" "$M/ft/moved"
erofs "ln -s" ln -s x "$M/ft/link"
erofs "ln" ln "$F" "$M/ft/hard"
erofs "touch" touch "$F"
if command -v setfattr >/dev/null 2>&1; then
	erofs "setfattr" setfattr -n user.x -v 1 "$F"
fi
enoent "cat missing model" cat "$M/nope/model.safetensors"
enoent "cat missing file" cat "$M/ft/nope.safetensors"
enoent "ls missing" ls "$M/nope"
enoent "stat missing" stat "$M/ft/nope"
log "EROFS and ENOENT ok"

# Extended attributes.
if command -v getfattr >/dev/null 2>&1; then
	getfattr -d "$F" >"$T/xattr" 2>&1 || fail "getfattr -d"
	grep -qx 'user.udfs.base="base"' "$T/xattr" || fail "base xattr: $(cat "$T/xattr")"
	grep -qx 'user.udfs.method="lossless"' "$T/xattr" || fail "method xattr"
	grep -qx 'user.udfs.ratio="[0-9]*\.[0-9][0-9]"' "$T/xattr" || fail "ratio xattr"
	grep -q '^user.udfs.sparsity="' "$T/xattr" || fail "sparsity xattr"
	getfattr -n user.udfs.nope "$F" >/dev/null 2>&1 && fail "unknown xattr"
	getfattr -d "$M/base/base.safetensors" 2>&1 | grep -q user.udfs.base &&
		fail "a base model has no user.udfs.base"
	log "xattrs: $(grep user "$T/xattr" | tr '\n' ' ')"
else
	log "getfattr missing: xattr part skipped"
fi

# statfs: the store's real usage.
blocks=$(stat -f -c %b "$M")
[ "$blocks" -gt 0 ] || fail "statfs reports no blocks"
[ "$(stat -f -c %l "$M")" -ge 255 ] || fail "statfs namemax"
df "$M" >/dev/null || fail "df"

umount_udfs "$M" "$PID"

# A damaged chunk: EIO, never wrong bytes, and one log line naming it.
cp -r "$T/S" "$T/S2"
pack=$(ls "$T/S2"/packs/*.pack | head -n 1)
[ -f "$pack" ] || fail "no pack file in the store"
psize=$(stat -c %s "$pack")
printf 'XXXXXXXXXXXXXXXX' | dd of="$pack" bs=1 seek=$((psize / 2)) \
	conv=notrunc 2>/dev/null
mount_udfs "$T/S2" "$M"
PID=$DAEMON_PID
cat "$F" >/dev/null 2>"$T/err" && fail "read of a damaged model succeeded"
grep -q "Input/output error" "$T/err" || fail "expected EIO: $(cat "$T/err")"
grep -qi "chunk" "$DAEMON_LOG" || fail "EIO not logged with its chunk"
log "damaged chunk: EIO; daemon said: $(grep -i chunk "$DAEMON_LOG" | head -n 1)"
umount_udfs "$M" "$PID"

# Bad invocations: non-zero exit, one clear line.
bad() { # description args...
	_what=$1
	shift
	"$UDFS" mount "$@" -f >"$T/out" 2>"$T/err" && fail "mount $_what succeeded"
	[ "$(wc -l <"$T/err")" -ge 1 ] || fail "mount $_what: no message"
	log "mount $_what: $(tail -n 1 "$T/err")"
}
mkdir -p "$T/m2" "$T/notastore"
touch "$T/afile"
bad "of a missing store" "$T/nope" "$T/m2"
bad "of a directory that is not a store" "$T/notastore" "$T/m2"
bad "on a missing mountpoint" "$T/S" "$T/nope"
bad "on a file" "$T/S" "$T/afile"
bad "with a bad cache size" "$T/S" "$T/m2" -o cache=lots
bad "with an unknown option" "$T/S" "$T/m2" -o frobnicate
bad "with a log file in a missing directory" "$T/S" "$T/m2" -o log=/nonexistent/dir/log
mountpoint -q "$T/m2" && fail "a failed mount left a mount behind"

# A mountpoint that is already a udfs mount: refused (no second daemon
# stacked on it), naming the state and the fix; the first one still works.
mount_udfs "$T/S" "$T/m2"
PID=$DAEMON_PID
"$UDFS" mount "$T/S" "$T/m2" >"$T/out" 2>"$T/err" &&
	fail "a second mount on a mounted dir succeeded"
grep -q "already mounted (fuse.udfs udfs:$T/S); unmount it first with fusermount3 -u" "$T/err" ||
	fail "mount on a mounted dir: $(cat "$T/err")"
[ "$(grep -c " $T/m2 " /proc/mounts)" -eq 1 ] || fail "mounts stacked on $T/m2"
cmp "$T/m2/base/base.safetensors" "$T/src/base.safetensors" ||
	fail "the first mount broke"
log "mount on a mounted dir: $(cat "$T/err")"

# A dead mount (its daemon killed): "not connected", and the fix.
kill -9 "$PID"
eval "wait \$REAPER_$PID"
stat "$T/m2" >/dev/null 2>&1 && fail "the mount answers after its daemon died"
"$UDFS" mount "$T/S" "$T/m2" >"$T/out" 2>"$T/err" &&
	fail "mount on a dead mount succeeded"
grep -q "daemon is gone (Transport endpoint is not connected); unmount it with fusermount3 -u $T/m2" "$T/err" ||
	fail "mount on a dead mount: $(cat "$T/err")"
log "mount on a dead mount: $(cat "$T/err")"
fusermount3 -u "$T/m2" || fail "fusermount3 -u of the dead mount"
MOUNTS=""
log "ok"

#!/bin/sh
# SPDX-License-Identifier: MIT
# The README's `mount -t udfs` and fstab line, through mount(8) itself,
# with udfs and mount.udfs installed by `make install` (DESTDIR, PREFIX=/usr)
# and made visible where mount(8) looks for helpers (/sbin) only inside a
# private mount namespace: an overlay of DESTDIR on /usr/sbin and /usr/bin
# (where overlayfs is missing: a bind mount over an existing helper, else a
# temporary /sbin/mount.udfs that the test removes).
# mount(8) passes "rw" for `defaults`: the mount must come up read-only.
# Checked for `mount -t udfs STORE DIR` with no options and for a scratch
# fstab through `mount -T FILE DIR`: the mount is there and ro, a file
# reads back, writes fail, `udfs status` answers, `umount` ends it, and
# every process of the chain (run under tests/gen/reaper, which adopts the
# daemon) exits 0, the daemon included.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "mount(8) of a helper type needs root"
command -v mount >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1 ||
	skip "mount or unshare is missing"
unshare -m true 2>/dev/null || skip "no mount namespaces here"

make_simple_store bf16 2
DEST=$T/dest
if command -v make >/dev/null 2>&1; then
	make -s -C "$UDFS_TOP" --no-print-directory install \
		BUILD="$BUILD" DESTDIR="$DEST" PREFIX=/usr \
		>"$T/install.out" 2>&1 ||
		fail "make install: $(tail -n 5 "$T/install.out")"
else # the same commands as the install target
	install -d "$DEST/usr/bin" "$DEST/sbin" || fail "install -d"
	install -m 755 "$UDFS" "$DEST/usr/bin/" || fail "install udfs"
	install -m 755 "$UDFS_TOP/mount-helpers/mount.udfs" "$DEST/sbin/" ||
		fail "install mount.udfs"
fi
[ -x "$DEST/sbin/mount.udfs" ] && [ -x "$DEST/usr/bin/udfs" ] ||
	fail "make install did not install udfs and mount.udfs: $(find "$DEST" -type f)"

M=$T/mnt
mkdir -p "$M"
printf '%s %s udfs defaults,allow_other,nofail,_netdev,x-systemd.automount,comment=x,cache=16M 0 0\n' \
	"$T/S" "$M" >"$T/fstab"

cat >"$T/inner.sh" <<'INNER'
# Runs in a private mount namespace: $1 = $T, $2 = the reaper, $3 = store.
set -u
T=$1 REAPER=$2 S=$3 M=$1/mnt
say() { echo "$*" >>"$T/inner.log"; }
if mount -t overlay overlay -o "lowerdir=$T/dest/sbin:/usr/sbin" /usr/sbin \
	2>>"$T/inner.log" &&
   mount -t overlay overlay -o "lowerdir=$T/dest/usr/bin:/usr/bin" /usr/bin \
	2>>"$T/inner.log"; then
	say "helper: overlay of DESTDIR on /usr/sbin and /usr/bin"
elif [ -e /sbin/mount.udfs ]; then
	mount --bind "$T/dest/sbin/mount.udfs" /sbin/mount.udfs || exit 3
	export UDFS="$T/dest/usr/bin/udfs"
	say "helper: bind mount over /sbin/mount.udfs"
else
	# A temporary /sbin entry, removed on the way out.
	trap 'rm -f /sbin/mount.udfs' EXIT
	install -m 755 "$T/dest/sbin/mount.udfs" /sbin/mount.udfs || exit 3
	export UDFS="$T/dest/usr/bin/udfs"
	say "helper: a temporary /sbin/mount.udfs"
fi
# run NAME CMD...: mount with CMD under the reaper, check the mount,
# umount it; every process of the chain must exit 0.
run() {
	_name=$1
	shift
	_exits=$T/exits.$_name
	"$REAPER" "$_exits" "$@" >"$T/mount.$_name" 2>&1 &
	_r=$!
	# mount(8) returns once the mount answers; then the daemon, whose
	# parent exited, is the reaper's only child.
	_i=0
	until [ "$(pgrep -P "$_r" | wc -l)" -eq 1 ] &&
		[ "$(pgrep -P "$_r" -x udfs)" ]; do
		kill -0 "$_r" 2>/dev/null || { say "$_name: $(cat "$_exits")"; return 1; }
		[ $_i -lt 300 ] || { say "$_name: mount did not return"; return 1; }
		sleep 0.1
		_i=$((_i + 1))
	done
	grep -v ' exit 0$' "$_exits" >>"$T/inner.log" &&
		{ say "$_name: a process failed"; return 1; }
	grep " $M " /proc/mounts >"$T/procmounts.$_name"
	grep -q " $M fuse.udfs ro[, ]" "$T/procmounts.$_name" ||
		{ say "$_name: not a read-only udfs mount: $(cat "$T/procmounts.$_name")"; return 1; }
	cmp "$M/ft/ft.safetensors" "$T/src/ft.safetensors" >>"$T/inner.log" 2>&1 ||
		{ say "$_name: ft differs"; return 1; }
	touch "$M/x" 2>/dev/null && { say "$_name: a write worked"; return 1; }
	udfs status "$M" >"$T/status.$_name" 2>&1 ||
		{ say "$_name: udfs status: $(cat "$T/status.$_name")"; return 1; }
	umount "$M" 2>>"$T/inner.log" || { say "$_name: umount failed"; return 1; }
	wait "$_r"
	_rc=$?
	[ $_rc -eq 0 ] && [ "$(wc -l <"$_exits")" -ge 2 ] ||
		{ say "$_name: after umount: $(cat "$_exits")"; return 1; }
	say "$_name: ok"
}
run t mount -t udfs "$S" "$M" || exit 1
run fstab mount -T "$T/fstab" "$M" || exit 1
grep -q allow_other "$T/procmounts.fstab" ||
	{ say "fstab: allow_other not passed: $(cat "$T/procmounts.fstab")"; exit 1; }
INNER
unshare -m --propagation private sh "$T/inner.sh" "$T" "$REAPER" "$T/S"
rc=$?
[ $rc -eq 0 ] || fail "mount -t udfs (namespace): status $rc: $(cat "$T/inner.log" "$T"/mount.* 2>/dev/null)"
cat "$T/inner.log"
log "ok"

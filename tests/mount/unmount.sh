#!/bin/sh
# SPDX-License-Identifier: MIT
# Ways a mount ends and starts: `fusermount3 -u`, SIGTERM and SIGHUP
# each make the daemon exit 0 and leave nothing mounted, SIGTERM also
# after a lazy unmount with a file still open; `udfs mount`
# without -f returns only once the mount answers; mount-helpers/mount.udfs
# drops fstab-only options and mounts read-only, also given rw (fstab.sh
# runs it through mount(8)).
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 2
M=$T/mnt
F=$M/ft/ft.safetensors

mount_udfs "$T/S" "$M"
cmp "$F" "$T/src/ft.safetensors" || fail "ft differs"
umount_udfs "$M" "$DAEMON_PID"
mountpoint -q "$M" && fail "still mounted after fusermount3 -u"
log "fusermount3 -u: daemon exit 0"

# A background job of a non-interactive shell starts with SIGINT ignored,
# which libfuse respects; env --default-signal (coreutils 9) undoes that.
sigs="TERM HUP"
env --default-signal=INT true 2>/dev/null && sigs="$sigs INT"
for sig in $sigs; do
	UDFS_WRAP=""
	[ "$sig" = INT ] && UDFS_WRAP="env --default-signal=INT"
	mount_udfs "$T/S" "$M"
	UDFS_WRAP=""
	PID=$DAEMON_PID
	cmp "$F" "$T/src/ft.safetensors" || fail "ft differs"
	kill -"$sig" "$PID"
	wait_daemon "$PID" "SIG$sig"
	mountpoint -q "$M" && fail "still mounted after SIG$sig"
	MOUNTS=""
	log "SIG$sig: daemon exit 0, unmounted"
done

# Lazily detached (umount -l, as systemd does when a mount is busy) while
# a reader holds a file open: the reader still gets the right bytes, and
# SIGTERM still ends the daemon with exit 0.
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID
exec 7<"$F"
umount -l "$M" || fail "umount -l"
MOUNTS=""
cmp - "$T/src/ft.safetensors" <&7 || fail "ft differs after umount -l"
kill -TERM "$PID"
wait_daemon "$PID" "SIGTERM after umount -l"
exec 7<&-
log "umount -l with a file open, then SIGTERM: daemon exit 0"

# The daemon's pid, found by its unique command line.
daemon_of() { # mountpoint
	for d in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$d/cmdline" |
			grep -q "udfs mount .* $1" && basename "$d"
	done | head -n 1
}

# Daemon mode: the parent returns 0 once the mount answers.
"$UDFS" mount "$T/S" "$M" -o cache=16M >"$T/daemon.bg.log" 2>&1 ||
	fail "udfs mount (daemon) failed: $(cat "$T/daemon.bg.log")"
MOUNTS="$M"
cmp "$F" "$T/src/ft.safetensors" || fail "ft differs (daemon mode)"
PID=$(daemon_of "$M")
[ -n "$PID" ] || fail "no daemon process found"
fusermount3 -u "$M" || fail "fusermount3 -u (daemon mode)"
MOUNTS=""
wait_for 10 '! kill -0 '"$PID"' 2>/dev/null' || fail "daemon did not exit"
log "daemon mode ok"

# The mount helper, called the way mount(8) calls it.
HELPER=$UDFS_TOP/mount-helpers/mount.udfs
UDFS="$UDFS" sh "$HELPER" "$T/S" "$M" -n \
	-o defaults,nofail,_netdev,noauto,x-systemd.automount,comment=x,nodev,nosuid,cache=16M \
	>"$T/helper.out" 2>&1 || fail "mount.udfs: $(cat "$T/helper.out")"
MOUNTS="$M"
cmp "$F" "$T/src/ft.safetensors" || fail "ft differs (helper)"
grep " $M " /proc/mounts | grep -q nodev || fail "nodev not passed on"
fusermount3 -u "$M" || fail "fusermount3 -u (helper)"
MOUNTS=""
# What mount(8) passes for `defaults` (rw) and the like: a read-only mount.
UDFS="$UDFS" sh "$HELPER" "$T/S" "$M" -w -o rw,relatime,sync,noexec \
	>"$T/helper.out" 2>&1 || fail "mount.udfs -o rw: $(cat "$T/helper.out")"
MOUNTS="$M"
grep " $M " /proc/mounts | grep -q '[ ,]ro[ ,]' ||
	fail "mount.udfs -o rw: not read-only: $(grep " $M " /proc/mounts)"
touch "$M/x" 2>/dev/null && fail "mount.udfs -o rw: a write worked"
fusermount3 -u "$M" || fail "fusermount3 -u (helper, rw)"
MOUNTS=""
log "mount.udfs ok"

log "ok"

#!/bin/sh
# SPDX-License-Identifier: MIT
# 10,000 open/close cycles of one file and 1,000 directory listings leave
# the daemon's descriptor count where it was. Descriptors of /dev/fuse are
# not counted: libfuse clones one per worker thread as the load grows.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 2
M=$T/mnt
F=$M/ft/ft.safetensors
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID

fds() {
	n=0
	for fd in /proc/$PID/fd/*; do
		[ "$(readlink "$fd")" = /dev/fuse ] || n=$((n + 1))
	done
	echo $n
}
head -c 4096 "$F" >/dev/null || fail "read"
before=$(fds)
i=0
while [ $i -lt 10000 ]; do
	exec 3<"$F" || fail "open $i"
	exec 3<&-
	i=$((i + 1))
done
i=0
while [ $i -lt 1000 ]; do
	ls "$M/ft" >/dev/null || fail "ls $i"
	i=$((i + 1))
done
# Releases are asynchronous: give them a moment to arrive.
wait_for 10 '[ "$(fds)" -le "$before" ]' ||
	fail "daemon fds grew from $before to $(fds)"
log "daemon fds (not /dev/fuse): $before before, $(fds) after"
cmp "$F" "$T/src/ft.safetensors" || fail "ft differs"
umount_udfs "$M" "$PID"
log "ok"

#!/bin/sh
# SPDX-License-Identifier: MIT
# Several sequential readers of one file at once, as processes loading
# parts of one model do: four dd processes each read a quarter of the
# mounted file (their own descriptors, one inode). The bytes they read
# are the source's, and the daemon decodes ahead of each of them: its
# detection of sequential streams follows several streams per inode
# (fuse/readahead.c), and decode_ahead_queued in `udfs status` grows by
# at least one chunk for every two MiB read (a file has more chunks than
# MiB: small tensors have chunks of their own). With one stream per inode
# the readers reset each other and nothing was decoded ahead (0 chunks).
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 48
M=$T/mnt
mount_udfs "$T/S" "$M" -o cache=256M
PID=$DAEMON_PID

F=$M/ft/ft.safetensors
size=$(stat -c %s "$T/src/ft.safetensors")
quarter=$(((size + 4 * 1048576 - 1) / (4 * 1048576))) # MiB, rounded up
"$UDFS" status "$M" >"$T/st.0" || fail "udfs status"
pids=
for i in 0 1 2 3; do
	dd if="$F" of="$T/part.$i" bs=1M skip=$((i * quarter)) \
		count="$quarter" 2>/dev/null &
	pids="$pids $!"
done
for p in $pids; do
	wait "$p" || fail "a reader failed"
done
cat "$T/part.0" "$T/part.1" "$T/part.2" "$T/part.3" |
	cmp - "$T/src/ft.safetensors" || fail "the quarters differ from ft"
"$UDFS" status "$M" >"$T/st.1" || fail "udfs status (2)"
ahead=$(($(status_value decode_ahead_queued "$T/st.1") - $(status_value decode_ahead_queued "$T/st.0")))
mib=$((size / 1048576))
log "4 readers of $mib MiB: $ahead chunks queued for decode-ahead"
[ "$ahead" -ge $((mib / 2)) ] ||
	fail "4 readers of $mib MiB: $ahead chunks queued for decode-ahead"
[ "$(status_value read_errors "$T/st.1")" -eq 0 ] || fail "read errors"
umount_udfs "$M" "$PID"
log "ok"

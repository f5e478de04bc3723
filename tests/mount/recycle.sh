#!/bin/sh
# SPDX-License-Identifier: MIT
# A model read once, as a framework loads it, leaves the cache nearly
# empty: a chunk whose bytes have all gone to the kernel's page cache
# gives its buffer to the next one (read/cache.c), so the first read after
# a mount does not fill the cache with fresh pages. Read again with
# O_DIRECT (the kernel keeps none of those bytes), the same model fills
# the cache as before. Checked with `udfs status` after each read, and
# the bytes against the source.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 48
M=$T/mnt
mount_udfs "$T/S" "$M" -o cache=32M
PID=$DAEMON_PID
F=$M/ft/ft.safetensors

cmp "$F" "$T/src/ft.safetensors" || fail "ft differs from its source"
"$UDFS" status "$M" >"$T/st.1" || fail "udfs status"
cached=$(status_value cache_bytes "$T/st.1")
decoded=$(status_value bytes_decoded "$T/st.1")
log "after a buffered read: cache_bytes $cached, bytes_decoded $decoded"
[ "$decoded" -gt 33554432 ] || fail "only $decoded bytes decoded"
[ "$cached" -le 8388608 ] ||
	fail "a model read once left $cached bytes in the cache"

dd if="$F" of="$T/direct" bs=1M iflag=direct 2>/dev/null ||
	fail "the O_DIRECT read failed"
cmp "$T/direct" "$T/src/ft.safetensors" || fail "the O_DIRECT read differs"
"$UDFS" status "$M" >"$T/st.2" || fail "udfs status (2)"
cached=$(status_value cache_bytes "$T/st.2")
log "after an O_DIRECT read: cache_bytes $cached"
[ "$cached" -ge 25165824 ] ||
	fail "an O_DIRECT read left only $cached bytes in the cache"
[ "$(status_value read_errors "$T/st.2")" -eq 0 ] || fail "read errors"
umount_udfs "$M" "$PID"
log "ok"

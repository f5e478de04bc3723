#!/bin/sh
# SPDX-License-Identifier: MIT
# Parallel readers: 8 processes read random and sequential ranges with
# pread and mmap for 10 s (tests/gen/preader.c), every byte checked against
# the sources, through a cache much smaller than the model; afterwards the
# daemon's memory stays below the cache plus a bounded constant.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 40
M=$T/mnt
CACHE_MB=32
mount_udfs "$T/S" "$M" -o cache=${CACHE_MB}M,threads=8
PID=$DAEMON_PID

"$BUILD/tests/preader" -p -j 8 -t "${PREADER_SECONDS:-10}" \
	"$M/ft/ft.safetensors" "$T/src/ft.safetensors" \
	"$M/base/base.safetensors" "$T/src/base.safetensors" >"$T/preader.out" ||
	fail "preader: $(cat "$T/preader.out")"
log "$(cat "$T/preader.out")"
kill -0 "$PID" || fail "daemon died"

# Anonymous memory (heap, cache buffers, thread stacks) is what the cache
# bound governs; VmRSS also counts pages of the mmap-ed base file, which
# the kernel may drop at any time, so it gets the base size on top.
anon=$(daemon_mem_kb "$PID" RssAnon)
rss=$(daemon_mem_kb "$PID" VmRSS)
base_kb=$(($(stat -c %s "$T/src/base.safetensors") / 1024))
limit=$(((CACHE_MB + 64) * 1024))
log "daemon RssAnon ${anon} KiB, VmRSS ${rss} KiB (cache ${CACHE_MB} MiB)"
[ "$anon" -le "$limit" ] || fail "RssAnon $anon KiB > $limit KiB"
[ "$rss" -le $((limit + base_kb)) ] ||
	fail "VmRSS $rss KiB > $((limit + base_kb)) KiB"

umount_udfs "$M" "$PID"
log "ok"

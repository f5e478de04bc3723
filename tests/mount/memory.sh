#!/bin/sh
# SPDX-License-Identifier: MIT
# Daemon memory at a high thread count: -o threads=256 and a 16 MiB cache,
# 32 readers at once (8 models, 4 ranges each, dd bs=4M) keep many read
# requests in flight on many worker threads. Every byte must be right
# (cmp), and the daemon's peak RSS (VmHWM) must stay within the cache plus
# 64 MiB (MEMORY_THREADS=1024 for more workers): decoding happens on the
# cache's bounded pool, replies come from cache entries, so no memory
# grows with the number of workers.
. "$(dirname "$0")/lib.sh"

MODELS=8
PARTS=4
CACHE_MB=16
THREADS=${MEMORY_THREADS:-256}
mkdir -p "$T/src"
"$GEN" model "$T/src/base.safetensors" --dtype bf16 --mb 32 --seed 21 \
	>/dev/null 2>&1 || fail "gen_model model"
"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft.safetensors" \
	--seed 22 >/dev/null 2>&1 || fail "gen_model finetune"
"$UDFS_COMPRESS" init "$T/S" >/dev/null || fail "init"
"$UDFS_COMPRESS" add-base -q "$T/S" base "$T/src/base.safetensors" ||
	fail "add-base"
set --
i=1
while [ $i -le $MODELS ]; do
	set -- "$@" "m$i=$T/src/ft.safetensors"
	i=$((i + 1))
done
"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless "$@" >/dev/null ||
	fail "add of $MODELS models"

M=$T/mnt
mount_udfs "$T/S" "$M" -o threads=$THREADS,cache=${CACHE_MB}M
PID=$DAEMON_PID
F=ft.safetensors
size=$(stat -c %s "$T/src/$F")
part=$(((size + PARTS - 1) / PARTS))

# 32 dd at once, each a quarter of one model's file, then compare.
pids=""
i=1
while [ $i -le $MODELS ]; do
	p=0
	while [ $p -lt $PARTS ]; do
		dd if="$M/m$i/$F" of="$T/out.$i.$p" bs=4M \
			iflag=skip_bytes,count_bytes skip=$((p * part)) \
			count=$part 2>/dev/null &
		pids="$pids $!"
		p=$((p + 1))
	done
	i=$((i + 1))
done
for p in $pids; do
	wait "$p" || fail "a dd of the mount failed"
done
i=1
while [ $i -le $MODELS ]; do
	p=0
	while [ $p -lt $PARTS ]; do
		dd if="$T/src/$F" iflag=skip_bytes,count_bytes bs=4M \
			skip=$((p * part)) count=$part 2>/dev/null >"$T/ref" ||
			fail "dd of the source"
		cmp "$T/out.$i.$p" "$T/ref" ||
			fail "m$i: bytes $((p * part))+$part differ"
		rm -f "$T/out.$i.$p"
		p=$((p + 1))
	done
	i=$((i + 1))
done
kill -0 "$PID" || fail "daemon died"

hwm=$(daemon_mem_kb "$PID" VmHWM)
limit=$(((CACHE_MB + 64) * 1024))
log "daemon VmHWM ${hwm} KiB (cache ${CACHE_MB} MiB, threads=$THREADS)"
[ "$hwm" -le "$limit" ] || fail "VmHWM $hwm KiB > $limit KiB"

umount_udfs "$M" "$PID"
log "ok"

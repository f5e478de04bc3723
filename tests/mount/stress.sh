#!/bin/sh
# SPDX-License-Identifier: MIT
# Load: 16 concurrent readers over 5 models (a base, a lossless fine-tune
# in a sharded Hugging Face directory, an ultradelta model with an explicit
# mask, one with a seeded mask, a dare model) for STRESS_SECONDS (default
# 20): 8 threads of one process and 8 processes (tests/gen/preader.c), each
# mixing random preads, sequential 1 MiB streams and copies out of a shared
# mmap, every byte compared with the model's `udfs export`. The chunk cache
# is much smaller than the models and the mount's page cache is dropped
# every 0.2 s (POSIX_FADV_DONTNEED), so decoding, eviction and readahead
# run all the time. The daemon's memory is sampled every half second: anonymous
# memory must stay below cache + a constant, and must not grow between the
# first and the last third of the run. Prints the numbers for the report:
# seconds, readers, bytes compared, peak VmRSS and RssAnon.
#
# Also run on sanitizer builds (tests/stress_tsan.sh for ThreadSanitizer,
# `make asan`): a daemon built with ASan or TSan is detected and the memory
# bounds, which the sanitizers' shadow memory and quarantine break, are
# only reported; any sanitizer report in the daemon's log fails the test.
. "$(dirname "$0")/lib.sh"

SECS=${STRESS_SECONDS:-20}
# The compressor that builds the store (default: the one of $BUILD).
UDFS_COMPRESS=${STRESS_COMPRESS:-$UDFS_COMPRESS}
CACHE_MB=${STRESS_CACHE_MB:-32}
MB=${STRESS_MB:-16}
# Sanitizer builds: memory is reported, not bounded.
SANITIZED=0
grep -q '__asan_init\|__tsan_init' "$UDFS" && SANITIZED=1
S=$T/S
mkdir -p "$T/src" "$T/ref"
"$GEN" model "$T/src/base.safetensors" --mb "$MB" --seed 31 >/dev/null 2>&1 ||
	fail "gen_model"
for i in 1 2 3 4; do
	"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft$i.safetensors" \
		--seed $((31 + i)) >/dev/null 2>&1 || fail "gen_model finetune"
done
"$GEN" shard "$T/src/ft1.safetensors" "$T/src/sharded" --shards 3 \
	>/dev/null 2>&1 || fail "gen_model shard"
"$UDFS_COMPRESS" init "$S" >/dev/null || fail "init"
"$UDFS_COMPRESS" add-base -q "$S" base "$T/src/base.safetensors" ||
	fail "add-base"
"$UDFS_COMPRESS" add -q "$S" --base base --lossless "exact=$T/src/sharded" ||
	fail "add exact"
"$UDFS_COMPRESS" add -q "$S" --base base --sparsity 0.9 \
	"ud=$T/src/ft2.safetensors" || fail "add ud"
"$UDFS_COMPRESS" add -q "$S" --base base --sparsity 0.8 --mask seeded \
	"seeded=$T/src/ft3.safetensors" || fail "add seeded"
"$UDFS_COMPRESS" add -q "$S" --base base --method dare --sparsity 0.9 \
	"dare=$T/src/ft4.safetensors" || fail "add dare"

# Pairs "virtual file" "reference" for preader: every file of every model.
set --
for m in base exact ud seeded dare; do
	"$UDFS" export "$S" "$m" "$T/ref/$m" >/dev/null || fail "export $m"
done
MNT=$T/mnt
for m in base exact ud seeded dare; do
	for f in "$T/ref/$m"/*; do
		set -- "$@" "$MNT/$m/$(basename "$f")" "$f"
	done
done
# The lossless model must also equal its source.
for f in "$T/src/sharded"/*; do
	cmp -s "$f" "$T/ref/exact/$(basename "$f")" ||
		fail "export of exact differs from its source: $(basename "$f")"
done

mount_udfs "$S" "$MNT" -o "cache=${CACHE_MB}M,threads=8"
PID=$DAEMON_PID

# Sample the daemon's memory while the readers run.
sampler() {
	while kill -0 "$PID" 2>/dev/null; do
		printf '%s %s %s\n' "$(date +%s%3N)" \
			"$(daemon_mem_kb "$PID" VmRSS)" \
			"$(daemon_mem_kb "$PID" RssAnon)"
		sleep 0.5
	done
}
sampler >"$T/mem" 2>/dev/null &
SPID=$!
PIDS="$PIDS $SPID"

# Keep evicting the mount's pages from the page cache, so that reads keep
# reaching the daemon instead of being served by the kernel.
/usr/bin/python3 - "$SECS" "$@" <<'EOF' >/dev/null 2>&1 &
import os, sys, time
end = time.time() + float(sys.argv[1])
files = sys.argv[2::2]
while time.time() < end:
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        except OSError:
            pass
    time.sleep(0.2)
EOF
EPID=$!
PIDS="$PIDS $EPID"

start=$(date +%s)
"$BUILD/tests/preader" -j 8 -t "$SECS" "$@" >"$T/threads.out" 2>&1 &
P1=$!
"$BUILD/tests/preader" -p -j 8 -t "$SECS" "$@" >"$T/procs.out" 2>&1 &
P2=$!
PIDS="$PIDS $P1 $P2"
wait "$P1"
rc1=$?
wait "$P2"
rc2=$?
took=$(($(date +%s) - start))
kill "$SPID" 2>/dev/null
# The evicter started after the readers and may hold a file open past
# them: gone before the unmount, which it would make fail with EBUSY.
kill "$EPID" 2>/dev/null
wait "$EPID" 2>/dev/null
[ "$rc1" -eq 0 ] || fail "preader (threads): $(tail -n 3 "$T/threads.out")"
[ "$rc2" -eq 0 ] || fail "preader (processes): $(tail -n 3 "$T/procs.out")"
kill -0 "$PID" || fail "daemon died"

b1=$(sed -n 's/^\([0-9]*\) bytes compared.*/\1/p' "$T/threads.out")
b2=$(sed -n 's/^\([0-9]*\) bytes compared.*/\1/p' "$T/procs.out")
bytes=$((${b1:-0} + ${b2:-0}))
[ "$bytes" -gt 0 ] || fail "no bytes compared"

# Memory: peak, and growth from the first to the last third of the run.
read -r n peak_rss peak_anon first last <<EOF
$(awk '{ r[NR] = $2; a[NR] = $3 }
END {
	pr = pa = 0
	for (i = 1; i <= NR; i++) {
		if (r[i] > pr) pr = r[i]
		if (a[i] > pa) pa = a[i]
	}
	f = l = 0
	for (i = 1; i <= NR; i++) {
		if (i <= NR / 3 && a[i] > f) f = a[i]
		if (i > 2 * NR / 3 && a[i] > l) l = a[i]
	}
	print NR, pr, pa, f, l
}' "$T/mem")
EOF
log "stress: ${took} s, 16 readers (8 threads + 8 processes), 5 models," \
	"$bytes bytes compared"
log "daemon memory: peak VmRSS ${peak_rss} KiB, peak RssAnon ${peak_anon}" \
	"KiB, RssAnon max ${first} KiB in the first third, ${last} KiB in" \
	"the last ($n samples, cache ${CACHE_MB} MiB)"
if [ "$SANITIZED" = 0 ]; then
	limit=$(((CACHE_MB + 64) * 1024))
	[ "$peak_anon" -le "$limit" ] ||
		fail "RssAnon peak $peak_anon KiB > cache + 64 MiB ($limit KiB)"
	[ "$n" -lt 6 ] || [ "$last" -le $((first + 8192)) ] ||
		fail "RssAnon grew from $first KiB to $last KiB"
fi

# A last sequential pass of every file through plain cmp.
while [ $# -gt 0 ]; do
	cmp "$1" "$2" || fail "$1 differs from its export"
	shift 2
done
umount_udfs "$MNT" "$PID"
# A detached daemon's sanitizer reports go to $T/daemon.N.san.PID.
for f in "$DAEMON_LOG" "$T"/daemon.*.san*; do
	[ -f "$f" ] || continue
	if grep -q 'ThreadSanitizer\|AddressSanitizer\|runtime error' "$f"; then
		fail "sanitizer report in $f: $(grep -m 3 'Sanitizer\|runtime error' "$f")"
	fi
done
echo "STRESS seconds=$took readers=16 bytes=$bytes peak_rss_kb=$peak_rss" \
	"peak_anon_kb=$peak_anon"
exit 0

/* SPDX-License-Identifier: MIT */
/*
 * Parallel for-loops for the compressor: run fn(ctx, i) for i in [0, n) on
 * up to jobs threads and wait for all. Threads take indices from a shared
 * counter, so uneven items balance themselves. The first non-zero return
 * stops new items from starting and is returned, with its message. The
 * threads are kept for the next loop, and with them what each keeps per
 * thread (zstd contexts, udfs_scratch). Thread-safe; a loop may run
 * inside an item of another.
 */
#ifndef UDFS_POOL_H
#define UDFS_POOL_H

#include <stddef.h>

int udfs_parallel_for(int jobs, size_t n, int (*fn)(void *ctx, size_t i),
		      void *ctx);

/* Number of online CPUs (at least 1). */
int udfs_ncpus(void);

#endif

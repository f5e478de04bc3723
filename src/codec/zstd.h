/* SPDX-License-Identifier: MIT */
/*
 * zstd for the codecs (zstd.c is the only file that includes <zstd.h>):
 * whole buffers, per-thread contexts, errors as -errno with the library's
 * message.
 */
#ifndef UDFS_ZSTD_H
#define UDFS_ZSTD_H

#include <stddef.h>

/* Default zstd level of lossless planes. A delta's planes are noise with
 * a skewed histogram: level 1 codes them as Huffman literals, where level
 * 3 also finds short matches that cost more than they save. Level 1 is
 * 0.1-0.5% smaller on every model measured (more with the longer shortest
 * match of zstd.c), compresses 15% faster and decodes 5% faster
 * (bench/SPEED.md, session 28). */
#define UDFS_ZSTD_LEVEL 1

/* zstd of n bytes of in at level; *out malloc-ed, caller frees. 0, -ENOMEM
 * or -EIO. */
int udfs_zstd_compress(const void *in, size_t n, int level, void **out,
		       size_t *out_len);

/* Decompress exactly n bytes into out; a frame that declares or holds any
 * other size is -EIO. */
int udfs_zstd_decompress(const void *in, size_t in_len, void *out, size_t n);

#endif

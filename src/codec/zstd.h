/* SPDX-License-Identifier: MIT */
/*
 * zstd for the codecs (zstd.c is the only file that includes <zstd.h>):
 * whole buffers, per-thread contexts, errors as -errno with the library's
 * message.
 */
#ifndef UDFS_ZSTD_H
#define UDFS_ZSTD_H

#include <stddef.h>

/* Default zstd level of lossless planes. */
#define UDFS_ZSTD_LEVEL 3

/* zstd of n bytes of in at level; *out malloc-ed, caller frees. 0, -ENOMEM
 * or -EIO. */
int udfs_zstd_compress(const void *in, size_t n, int level, void **out,
		       size_t *out_len);

/* Decompress exactly n bytes into out; a frame that declares or holds any
 * other size is -EIO. */
int udfs_zstd_decompress(const void *in, size_t in_len, void *out, size_t n);

#endif

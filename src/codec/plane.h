/* SPDX-License-Identifier: MIT */
/*
 * Lossless chunk codec (udfs(5), "Lossless chunk"): the bit patterns of a
 * chunk, XOR-ed with or subtracted from the base's (or taken as they are when
 * there is no base), split into byte planes (plane k holds byte k of every
 * element: for BF16 the sign+exponent byte apart from the mantissa byte), each
 * plane zstd-compressed, or sparse (the bitmap of its nonzero bytes and those
 * bytes) where mostly zeros. Both XOR and integer difference are tried and
 * the smaller kept.
 */
#ifndef UDFS_PLANE_H
#define UDFS_PLANE_H

#include <stddef.h>
#include <stdint.h>

#include "codec/zstd.h" /* UDFS_ZSTD_LEVEL */

/*
 * Encode n bytes of cur (elements of es bytes, es in 1, 2, 4, 8; n a
 * multiple of es) against base (NULL: no base, planes of cur itself).
 * level is the zstd level. *out is malloc-ed; caller frees. 0 or -errno.
 */
int udfs_plane_encode(const void *cur, const void *base, size_t n, unsigned es,
		      int level, void **out, size_t *out_len);

/*
 * Decode into out (n bytes) given the same base and es. Malformed input is
 * -EIO, never a write past out.
 */
int udfs_plane_decode(const void *in, size_t in_len, const void *base, size_t n,
		      unsigned es, void *out);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Private interface between the version 1 lossy chunk codec
 * (codec/lossy.c) and the composite chunk codec of the adaptive method
 * (codec/mix.c): the varints, the value sections, the finite
 * reconstruction sum, and decoding a version 1 chunk into float deltas.
 */
#ifndef UDFS_CODEC_LOSSY_I_H
#define UDFS_CODEC_LOSSY_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec/lossy.h"
#include "common/dtype.h"

/* Format version in bits 6-7 of a composite chunk's first byte. */
#define UDFS_LOSSY_MIX_VERSION 2

/* LEB128 varints of at most 5 bytes (udfs(5)). */
size_t udfs_lossy_put_varint(uint8_t *p, uint32_t v);
bool udfs_lossy_get_varint(const uint8_t *in, size_t len, size_t *pos,
			   uint32_t *v);

/*
 * A value section of n_kept values of kind p->values (codes, signs or
 * native elements of es bytes): the smallest of its formats, *fmt set to
 * the one chosen, *out malloc-ed (NULL when n_kept is 0). 0 or -errno.
 */
int udfs_lossy_values_encode(const udfs_lossy_params *p, unsigned es,
			     uint32_t n_kept, const void *vals, uint8_t **out,
			     size_t *len, uint8_t *fmt);
/*
 * The value section of n_kept >= 1 b-bit codes in value format vf, 3
 * (range-coded) or 4, 5 or 6 (rANS), whatever its size: for tests and
 * measurements. 0, -EINVAL, -ENOMEM.
 */
int udfs_lossy_codes_encode_as(const udfs_lossy_params *p, uint32_t n_kept,
			       const uint8_t *codes, unsigned vf, uint8_t **out,
			       size_t *len);
/* Inverse: d[j] = gain * value(j). -EIO when malformed, -ENOMEM. */
int udfs_lossy_values_decode(const udfs_lossy_params *p, int dtype, unsigned vf,
			     const uint8_t *in, size_t len, uint32_t n_kept,
			     float *d);

/*
 * Decode a version 1 chunk a block at a time: fn gets the next k kept
 * positions (ascending, relative to the chunk) and their deltas
 * gain * value, at most a few thousand at once; a non-zero return of fn
 * stops decoding and is returned. Memory is per-thread scratch only
 * (udfs_scratch). 0, -EIO on a malformed chunk, -ENOMEM; a malformed
 * chunk may be found after some blocks went to fn.
 */
typedef int (*udfs_lossy_kept_fn)(void *ctx, const uint32_t *pos,
				  const float *d, uint32_t k);
int udfs_lossy_foreach_kept(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const void *in,
			    size_t in_len, udfs_lossy_kept_fn fn, void *ctx);

/*
 * udfs_lossy_foreach_kept, except that a chunk whose every element is kept
 * (no mask) goes to run instead of fn, without positions: the deltas of
 * elements at .. at + k - 1, in order, a block at a time, in a buffer of
 * the decoder's that run may overwrite. fn is called for other chunks.
 */
typedef int (*udfs_lossy_run_fn)(void *ctx, uint32_t at, float *d, uint32_t k);
int udfs_lossy_foreach(const udfs_lossy_params *p, int dtype, uint64_t first,
		       uint32_t n, const void *in, size_t in_len,
		       udfs_lossy_kept_fn fn, udfs_lossy_run_fn run, void *ctx);

/* b + d in float32, kept finite when b is (udfs(5), reconstruction). */
float udfs_lossy_finite_sum(int dtype, float b, float d);

/*
 * The reconstruction of one BF16 element from its base bits h and its
 * delta d, the conversions of dtype.c written inline (the hot loop of a
 * read, and of the add's error figures, which must give the same bits):
 * widen, add in float32, round to nearest even, NaN kept quiet. Sums that
 * round to an infinity or a NaN take the slow path of finite_sum().
 */
static inline uint16_t udfs_lossy_bf16_add(uint16_t h, float d)
{
	uint32_t u = (uint32_t)h << 16;
	float b, w;

	memcpy(&b, &u, 4);
	w = b + d;
	memcpy(&u, &w, 4);
	if ((u & 0x7fffffffu) >= 0x7f7f8000u) {
		w = udfs_lossy_finite_sum(UDFS_DT_BF16, b, d);
		memcpy(&u, &w, 4);
	}
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)(u >> 16 | 0x40);
	return (uint16_t)((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
}

/* Decode a version 1 chunk, as udfs_lossy_decode_chunk() does a chunk of
 * any version (that entry point is in codec/mix.c). */
int udfs_lossy_decode_v1(const udfs_lossy_params *p, int dtype, uint64_t first,
			 uint32_t n, const void *in, size_t in_len,
			 const void *base, void *out);

#endif

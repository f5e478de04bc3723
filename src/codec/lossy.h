/* SPDX-License-Identifier: MIT */
/*
 * Lossy tensor encodings (UltraDelta and the dare, bitdelta and magnitude
 * baselines): the per-tensor parameters and the chunk format that holds
 * the kept positions and the values of kept elements (udfs(5), "Lossy
 * chunk"; the encoder picks, per chunk, the smallest of five mask formats
 * and four value formats: see lossy.c). Reconstruction of element i of a chunk
 * is
 *
 *     W[i] = W_base[i] + gain * value(i)   if i is kept
 *     W[i] = W_base[i]                     otherwise
 *
 * computed in float32 in a fixed order (no FMA contraction) and rounded to
 * the tensor's dtype with round-to-nearest-even, so that every reader on
 * every machine produces the same bits. A finite W_base[i] always gives a
 * finite W[i]: a sum past the dtype's range saturates at its largest finite
 * value, and a sum that is not a number keeps W_base[i].
 */
#ifndef UDFS_LOSSY_H
#define UDFS_LOSSY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/prng.h" /* the seeded mask */

enum udfs_mask_kind {
	UDFS_MASK_NONE = 0,	/* every element kept (bitdelta) */
	UDFS_MASK_EXPLICIT = 1, /* positions stored, gaps Golomb-Rice coded */
	UDFS_MASK_SEEDED = 2,	/* positions regenerated from the seed */
};

enum udfs_val_kind {
	UDFS_VAL_CODES = 0,  /* b-bit code c: value = lo + c * step */
	UDFS_VAL_NATIVE = 1, /* the delta itself, in the tensor's dtype */
	UDFS_VAL_SIGN = 2,   /* one bit: value = +step or -step */
	/* a path through a bitshift trellis, one bit per `bits` values:
	 * value = step * codebook value of the path's state (codec/trellis.h)
	 */
	UDFS_VAL_TRELLIS = 3,
};

typedef struct udfs_lossy_params {
	uint8_t mask;	/* enum udfs_mask_kind */
	uint8_t values; /* enum udfs_val_kind */
	uint8_t bits;	/* code bits, 1..8 (UDFS_VAL_CODES); values per
			   path bit, 1..4 (UDFS_VAL_TRELLIS) */
	float lo;	/* UDFS_VAL_CODES: value of code 0 */
	float step;	/* UDFS_VAL_CODES: (max - min) / (2^b - 1);
			   UDFS_VAL_SIGN, UDFS_VAL_TRELLIS: the scale */
	float gain;	/* g = gamma / (1 - s) */
	double rate;	/* this tensor's drop rate r */
	uint64_t seed;	/* UDFS_MASK_SEEDED: key of this tensor's mask */
} udfs_lossy_params;

/* How many of the n codes v are each code, into h[256]. */
void udfs_lossy_code_counts(const uint8_t *v, uint32_t n, uint32_t *h);

/*
 * Encode one chunk of n elements starting at element first of the tensor.
 * kept holds the n_kept kept indices relative to the chunk, ascending
 * (ignored for UDFS_MASK_NONE, where n_kept == n; for UDFS_MASK_SEEDED they
 * must be exactly the seeded ones). vals has one entry per kept element:
 * uint8_t codes (UDFS_VAL_CODES), uint8_t 0/1 signs with 1 = negative
 * (UDFS_VAL_SIGN), or elements of dtype (UDFS_VAL_NATIVE); for
 * UDFS_VAL_TRELLIS instead one uint8_t 0/1 path bit per step of p->bits
 * values, ceil(n_kept / p->bits) of them.
 * On success *out is a malloc-ed buffer the caller frees. 0 or -errno.
 */
int udfs_lossy_encode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const uint32_t *kept,
			    uint32_t n_kept, const void *vals, void **out,
			    size_t *out_len);

/*
 * Decode one chunk: base holds the n base elements of dtype (F16, BF16 or
 * F32), out receives the n reconstructed elements. Malformed input is
 * -EIO with a message, never a read out of bounds; out may then hold
 * anything (it is written as the chunk is decoded). base may be out itself.
 * No allocation but per-thread scratch (udfs_scratch), at most about the
 * chunk's size: -ENOMEM when that fails, never an abort. Chunks of both
 * versions: version 1 here (lossy.c), composite chunks of the adaptive
 * method (version 2, codec/mix.h); the entry point is in codec/mix.c.
 */
int udfs_lossy_decode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const void *in,
			    size_t in_len, const void *base, void *out);

#endif

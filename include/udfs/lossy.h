/* SPDX-License-Identifier: MIT */
/*
 * Lossy tensor encodings (UltraDelta and the dare, bitdelta and magnitude
 * baselines): the per-tensor parameters, the seeded keep-mask, and the
 * chunk format that holds the kept positions and the values of kept
 * elements. Reconstruction of element i of a chunk is
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

enum udfs_mask_kind {
	UDFS_MASK_NONE = 0,	/* every element kept (bitdelta) */
	UDFS_MASK_EXPLICIT = 1, /* positions stored, gaps Golomb-Rice coded */
	UDFS_MASK_SEEDED = 2,	/* positions regenerated from the seed */
};

enum udfs_val_kind {
	UDFS_VAL_CODES = 0,  /* b-bit code c: value = lo + c * step */
	UDFS_VAL_NATIVE = 1, /* the delta itself, in the tensor's dtype */
	UDFS_VAL_SIGN = 2,   /* one bit: value = +step or -step */
};

typedef struct udfs_lossy_params {
	uint8_t mask;	/* enum udfs_mask_kind */
	uint8_t values; /* enum udfs_val_kind */
	uint8_t bits;	/* code bits, 1..8 (UDFS_VAL_CODES) */
	float lo;	/* UDFS_VAL_CODES: value of code 0 */
	float step;	/* UDFS_VAL_CODES: (max - min) / (2^b - 1);
			   UDFS_VAL_SIGN: the scale */
	float gain;	/* g = gamma / (1 - s) */
	double rate;	/* this tensor's drop rate r */
	uint64_t seed;	/* UDFS_MASK_SEEDED: key of this tensor's mask */
} udfs_lossy_params;

/*
 * Seeded mask: true when element idx (index within the whole tensor) is
 * kept. A counter-based hash of (seed, idx) compared with a threshold
 * derived from rate by integer arithmetic only, so it is identical on every
 * machine and thread, and any chunk can regenerate its own part.
 */
uint64_t udfs_seeded_threshold(double rate);
bool udfs_seeded_keep(uint64_t seed, uint64_t idx, uint64_t threshold);
/* Key of a tensor's seeded mask from the model seed and the tensor name. */
uint64_t udfs_seeded_key(uint64_t model_seed, const char *tensor_name);

/*
 * Encode one chunk of n elements starting at element first of the tensor.
 * kept holds the n_kept kept indices relative to the chunk, ascending
 * (ignored for UDFS_MASK_NONE, where n_kept == n; for UDFS_MASK_SEEDED they
 * must be exactly the seeded ones). vals has one entry per kept element:
 * uint8_t codes (UDFS_VAL_CODES), uint8_t 0/1 signs with 1 = negative
 * (UDFS_VAL_SIGN), or elements of dtype (UDFS_VAL_NATIVE).
 * On success *out is a malloc-ed buffer the caller frees. 0 or -errno.
 */
int udfs_lossy_encode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const uint32_t *kept,
			    uint32_t n_kept, const void *vals, void **out,
			    size_t *out_len);

/*
 * Decode one chunk: base holds the n base elements of dtype (F16, BF16 or
 * F32), out receives the n reconstructed elements. Malformed input is
 * -EIO with a message, never a read out of bounds.
 */
int udfs_lossy_decode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const void *in,
			    size_t in_len, const void *base, void *out);

/*
 * The low-rank part of a composite chunk (method adaptive, udfs(5)): the
 * rank-k product U V^T of the rows of the tensor the chunk touches, with
 * factors stored as symmetric b-bit codes c in 0..2m, m = 2^(b-1) - 1,
 * value (c - m) * scale of their column.
 */
typedef struct udfs_lowrank {
	uint32_t k;		/* rank, 1..255 */
	uint32_t bits;		/* factor code bits, 2..8 */
	uint64_t cols;		/* row length of the tensor */
	const uint8_t *u_codes; /* rows x k, rows touched by the chunk */
	const uint8_t *v_codes; /* cols x k */
	const float *u_scale;	/* k */
	const float *v_scale;	/* k */
} udfs_lowrank;

/* Rows of a chunk of n elements from element first, in a tensor of rows of
 * cols elements: the block [first / cols, (first + n - 1) / cols]. */
uint64_t udfs_lowrank_rows(uint64_t cols, uint64_t first, uint32_t n);

/* Factor values out[i * k + c] = (codes[i * k + c] - m) * scale[c] for
 * count rows. */
void udfs_lowrank_dequant(const uint8_t *codes, uint64_t count, uint32_t k,
			  uint32_t bits, const float *scale, float *out);

/*
 * acc[j] += sum over c (in order) of uf[r * k + c] * vf[col * k + c] for
 * element first + j at row r (relative to the chunk's first row) and
 * column col: the low-rank reconstruction, in float32 in a fixed order,
 * shared by the encoder and the decoder so both compute the same bits.
 */
void udfs_lowrank_expand(const float *uf, const float *vf, uint32_t k,
			 uint64_t cols, uint64_t first, uint32_t n, float *acc);

/*
 * Encode a composite chunk: the low-rank part lr (NULL for none) and the
 * version 1 chunk res of res_len bytes holding the residual (NULL for
 * none), for the n elements from element first. *out is malloc-ed for the
 * caller to free. 0 or -EINVAL.
 */
int udfs_mix_encode_chunk(const udfs_lowrank *lr, uint64_t first, uint32_t n,
			  const void *res, size_t res_len, void **out,
			  size_t *out_len);

#endif

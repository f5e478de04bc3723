/* SPDX-License-Identifier: MIT */
/*
 * Composite lossy chunks of the adaptive method (udfs(5)): a low-rank part
 * and a version 1 residual (codec/lossy.h). Decoding needs no BLAS; the
 * encoder's SVD and choice of codes are in write/ (encode_mix.c,
 * plan_budget.c). udfs_lossy_decode_chunk() decodes chunks of both
 * versions and is defined in mix.c.
 */
#ifndef UDFS_CODEC_MIX_H
#define UDFS_CODEC_MIX_H

#include <stddef.h>
#include <stdint.h>

#include "codec/lossy.h"

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

/* udfs_lowrank_expand() with V transposed: vt holds k rows of cols, row c
 * being column c of V. The same bits, several times faster. */
void udfs_lowrank_expand_t(const float *uf, const float *vt, uint32_t k,
			   uint64_t cols, uint64_t first, uint32_t n,
			   float *acc);

/*
 * out (n BF16 elements holding the base's bits) += acc, each element
 * rounded once as udfs_lossy_bf16_add does, elements whose acc is exactly
 * zero left as they are: the BF16 reconstruction of a composite chunk,
 * shared by the decoder and the encoder's error figures.
 */
void udfs_mix_round_bf16(void *out, const float *acc, uint32_t n);

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

/* SPDX-License-Identifier: MIT */
/*
 * Private pieces of the adaptive method shared by its tensor encoder
 * (encode_mix.c) and its planner (plan_budget.c): the truncated SVD of a
 * chunk's rows, the quantized factors, and the residual quantizer.
 */
#ifndef UDFS_MIX_I_H
#define UDFS_MIX_I_H

#include <stdint.h>

/* Highest rank tried: beyond it a low-rank part rarely pays on a chunk. */
#define MIX_RANK_MAX 64

/* Top singular triplets of a chunk's rows; u (rows x k) and v (cols x k)
 * each hold sqrt(s) of their column. */
struct mix_svd {
	uint64_t rows, cols;
	uint32_t k;
	float *u, *v;
};

/* Chunks whose low-rank parts a tensor's candidates are priced on (an SVD
 * each, most of the pricing time): a tensor of more chunks is priced on
 * this many full chunks evenly spread over it. */
#define PRICE_BLOCKS 4

/* The SVDs the planner computed for the chunks it priced a tensor on
 * (chunk sel[i]: sv[i], rank 0 where the chunk holds none), kept for the
 * encoder: the factors of those chunks are cut from them, as priced,
 * instead of computed again. */
struct mix_priced {
	uint32_t n_sel;
	uint32_t sel[PRICE_BLOCKS];
	struct mix_svd sv[PRICE_BLOCKS];
};

/* Quantized factors of one chunk (codec/mix.c's udfs_lowrank). */
struct mix_factors {
	uint32_t k, bits;
	uint64_t rows, cols;
	uint8_t *uc, *vc;
	float *us, *vs;
};

/* The largest rank a chunk of n elements over rows x cols can hold. */
uint32_t udfs_mix_kmax(uint64_t rows, uint64_t cols, uint32_t n);
/* SVD of the rows touched by elements [first, first + n) of the row-major
 * delta d, truncated to kmax. Free with udfs_mix_svd_free. */
int udfs_mix_block_svd(const float *d, uint64_t cols, uint64_t first,
		       uint32_t n, uint32_t kmax, struct mix_svd *b);
void udfs_mix_svd_free(struct mix_svd *b);
/* Keep the first k pairs of each SVD of pr: what a rank-k code uses (a
 * column's codes do not depend on the others). */
void udfs_mix_priced_truncate(struct mix_priced *pr, uint32_t k);
/* Rank-k factors of b at bits bits; free with udfs_mix_factors_free. */
void udfs_mix_factors_make(const struct mix_svd *b, uint32_t k, uint32_t bits,
			   struct mix_factors *f);
/* The factor values of f: uf rows x k, vf cols x k. */
void udfs_mix_factors_dequant(const struct mix_factors *f, float *uf,
			      float *vf);
/* acc[j] += the low-rank value of element first + j, as decoded. */
void udfs_mix_factors_add(const struct mix_factors *f, uint64_t first,
			  uint32_t n, float *acc);
void udfs_mix_factors_free(struct mix_factors *f);
/* The code of x on the grid lo + c * step, c in 0..2^bits - 1. */
uint8_t udfs_mix_quant(float x, float lo, float step, unsigned bits);
/* udfs_mix_quant of r[0, 64) into codes, the same codes, vectorized. */
void udfs_mix_quant64(const float *restrict r, float lo, float step,
		      unsigned bits, uint8_t *restrict codes);

#endif

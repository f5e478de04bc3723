// SPDX-License-Identifier: MIT
/*
 * The pruned, rescaled delta of a tensor with a seeded mask, as compressed
 * rows, straight from the fine-tune and the base: what the trace-norm phase
 * of a group add (plan_lossy.c) takes the nuclear norm of. The kept
 * positions are a function of (seed, element) alone, so only the kept
 * elements are quantized and nothing the size of the tensor is made: the
 * whole tensor's codes and keep bytes (two bytes an element, written and
 * read again) were a third of that phase. A leaf of src/write.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"
#include "write/add_i.h"
#include "write/linalg.h"
#include "write/ultradelta.h"

/* Elements per block: a multiple of 64, so that each block's mask is
 * whole words (udfs_seeded_levels_mask's fast path). */
#define BLOCK 4096

/* The elements of one block that the mask keeps: their offsets in the
 * block and their deltas. */
struct kept_block {
	uint32_t at[BLOCK];
	float d[BLOCK];
	uint8_t codes[BLOCK];
	size_t n;
};

/* Room for `more` entries after the e already in a. */
static int reserve(udfs_csr *a, uint64_t *cap, uint64_t e, uint64_t more)
{
	uint32_t *col;
	float *val;
	uint64_t c;

	if (e + more <= *cap)
		return 0;
	c = *cap + *cap / 2 + more;
	col = realloc(a->col, c * sizeof(*a->col));
	if (col)
		a->col = col;
	val = col ? realloc(a->val, c * sizeof(*a->val)) : NULL;
	if (!val)
		return udfs_error(-ENOMEM, "out of memory");
	a->val = val;
	*cap = c;
	return 0;
}

/* The kept elements of [first, first + n) and their deltas into kb. */
static void keep_block(const struct tensor_plan *p, int dtype,
		       const unsigned char *cur, const unsigned char *base,
		       uint64_t first, size_t n, struct kept_block *kb)
{
	uint64_t words[BLOCK / 64];
	float d[BLOCK];

	udfs_seeded_levels_mask(p->lp.seed, first, n,
				udfs_seeded_levels(p->lp.rate), words);
	udfs_add_delta_range(dtype, n, cur, base, d);
	kb->n = 0;
	for (size_t w = 0; w < (n + 63) / 64; w++)
		for (uint64_t m = words[w]; m; m &= m - 1) {
			size_t c = 64 * w + (size_t)__builtin_ctzll(m);

			kb->at[kb->n] = (uint32_t)c;
			kb->d[kb->n++] = d[c];
		}
	if (p->lp.values == UDFS_VAL_CODES)
		udfs_ud_quantize_range(kb->d, kb->n, p->lp.bits, p->qmin,
				       p->qmax, kb->codes);
	else
		for (size_t i = 0; i < kb->n; i++)
			kb->codes[i] = kb->d[i] < 0;
}

int udfs_seeded_pruned_csr(const struct tensor_plan *p, int dtype,
			   const void *cur, const void *base, size_t rows,
			   size_t cols, udfs_csr *a)
{
	const udfs_lossy_params *lp = &p->lp;
	unsigned es = udfs_dtype_size(dtype);
	uint64_t n = (uint64_t)rows * cols, e = 0, row_end = cols;
	/* the mask keeps t / 2^16 of the elements; a tenth more than that
	 * seldom has to grow */
	uint64_t cap = n / 65536 * udfs_seeded_levels(lp->rate) / 10 * 11;
	bool native = lp->values == UDFS_VAL_NATIVE;
	struct kept_block *kb = malloc(sizeof(*kb));
	size_t r = 0;
	float lut[256];
	int err = 0;

	a->rows = rows;
	a->cols = cols;
	a->ptr = malloc((rows + 1) * sizeof(*a->ptr));
	a->col = malloc((cap + 1) * sizeof(*a->col));
	a->val = malloc((cap + 1) * sizeof(*a->val));
	if (!kb || !a->ptr || !a->col || !a->val) {
		free(kb);
		return udfs_error(-ENOMEM, "out of memory");
	}
	udfs_lossy_value_lut(lp, lut);
	a->ptr[0] = 0;
	for (uint64_t first = 0; first < n && !err; first += BLOCK) {
		size_t m = (size_t)UDFS_MIN((uint64_t)BLOCK, n - first);

		keep_block(p, dtype, (const unsigned char *)cur + first * es,
			   (const unsigned char *)base + first * es, first, m,
			   kb);
		err = reserve(a, &cap, e, kb->n);
		for (size_t i = 0; !err && i < kb->n; i++) {
			uint64_t at = first + kb->at[i];
			float v =
			    native ? lp->gain * kb->d[i] : lut[kb->codes[i]];

			for (; at >= row_end; row_end += cols)
				a->ptr[++r] = e;
			/* a spare slot: written always, kept on a nonzero
			 * (the same entries as plan_lossy.c's pruned_csr) */
			a->col[e] = (uint32_t)(at - (row_end - cols));
			a->val[e] = v;
			e += v != 0.0f;
		}
	}
	while (r < rows)
		a->ptr[++r] = e;
	free(kb);
	return err;
}

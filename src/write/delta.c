// SPDX-License-Identifier: MIT
/*
 * The per-element helpers that the lossy planners and encoders share
 * (plan_lossy.c, plan_budget.c, encode_mix.c): a tensor's delta as floats,
 * in one loop per dtype, and the table of the values a version 1 value
 * section decodes to. A leaf of src/write: it calls none of them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy.h"
#include "common/dtype.h"
#include "common/util.h"
#include "write/add_i.h"

/* Elements per block of the vectorized BF16 delta. */
#define DELTA_BLOCK 64

/* One block of BF16 deltas: a constant trip count and restrict pointers,
 * which -O2's cheap vectorizer needs (BF16 is the top half of an F32);
 * loads and stores straight from and to the arrays, no local copies. */
UDFS_INLINE void delta_bf16_block(const unsigned char *restrict c,
				  const unsigned char *restrict b,
				  float *restrict d)
{
	for (int i = 0; i < DELTA_BLOCK; i++) {
		uint16_t hc, hb;
		uint32_t uc, ub;
		float fc, fb;

		memcpy(&hc, c + 2 * i, 2);
		memcpy(&hb, b + 2 * i, 2);
		uc = (uint32_t)hc << 16;
		ub = (uint32_t)hb << 16;
		memcpy(&fc, &uc, 4);
		memcpy(&fb, &ub, 4);
		d[i] = fc - fb;
	}
}

UDFS_CLONES
void udfs_add_delta_range(int dtype, uint64_t n, const void *cur,
			  const void *base, float *d)
{
	const unsigned char *c = cur, *b = base;
	uint64_t i = 0;

	/* One loop per dtype, with no call per element (BF16 is the top half
	 * of an F32); memcpy loads: a source's tensors need not be aligned. */
	switch (dtype) {
	case UDFS_DT_BF16:
		for (; i + DELTA_BLOCK <= n; i += DELTA_BLOCK)
			delta_bf16_block(c + 2 * i, b + 2 * i, d + i);
		for (; i < n; i++)
			d[i] = udfs_dtype_load_f32(dtype, cur, i) -
			       udfs_dtype_load_f32(dtype, base, i);
		break;
	case UDFS_DT_F32:
		for (; i < n; i++) {
			float fc, fb;

			memcpy(&fc, c + 4 * i, 4);
			memcpy(&fb, b + 4 * i, 4);
			d[i] = fc - fb;
		}
		break;
	default:
		for (; i < n; i++)
			d[i] = udfs_dtype_load_f32(dtype, cur, i) -
			       udfs_dtype_load_f32(dtype, base, i);
	}
}

/* The decoder's table (codec/lossy.c), the same float operations. */
void udfs_lossy_value_lut(const udfs_lossy_params *lp, float *lut)
{
	if (lp->values == UDFS_VAL_CODES) {
		for (unsigned c = 0; c < 256; c++) {
			float q = lp->lo + (float)c * lp->step;

			lut[c] = lp->gain * q;
		}
	} else {
		lut[0] = lp->gain * lp->step;
		lut[1] = lp->gain * -lp->step;
	}
}

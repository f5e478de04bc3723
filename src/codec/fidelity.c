// SPDX-License-Identifier: MIT
/*
 * Fidelity sums of a reconstructed delta against the true delta (see
 * fidelity.h). Everything is accumulated in double, element by
 * element in index order, so a tensor gives the same sums whether it is
 * measured whole (`udfs eval`) or chunk by chunk and merged (`add`) up to
 * the rounding of the merge.
 */
#include "codec/fidelity.h"

#include <math.h>
#include <string.h>

#include "common/dtype.h"

/* Elements [first, first + n) of a dtype array as floats. BF16 and F32,
 * the common cases, are converted inline: add measures every chunk it
 * writes, and a call per element would double the cost of a lossy add. */
static void load_block(int dtype, const void *p, uint64_t first, size_t n,
		       float *out)
{
	const unsigned char *b = p;

	switch (dtype) {
	case UDFS_DT_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			uint32_t u;

			memcpy(&h, b + 2 * (first + i), 2);
			u = (uint32_t)h << 16;
			memcpy(&out[i], &u, 4);
		}
		break;
	case UDFS_DT_F32:
		memcpy(out, b + 4 * first, 4 * n);
		break;
	default:
		for (size_t i = 0; i < n; i++)
			out[i] = udfs_dtype_load_f32(dtype, p, first + i);
	}
}

void udfs_fidelity_add(udfs_fidelity *f, int dtype, const void *base,
		       const void *rec, const void *src, uint64_t n)
{
	enum { BLOCK = 256 };
	float b[BLOCK], r[BLOCK], w[BLOCK];

	for (uint64_t at = 0; at < n; at += BLOCK) {
		size_t k = n - at < BLOCK ? (size_t)(n - at) : BLOCK;

		load_block(dtype, base, at, k, b);
		load_block(dtype, rec, at, k, r);
		load_block(dtype, src, at, k, w);
		for (size_t i = 0; i < k; i++) {
			double ds = (double)w[i] - b[i],
			       dr = (double)r[i] - b[i];
			double a = fabs((double)r[i] - w[i]);

			f->err2 += (dr - ds) * (dr - ds);
			f->src2 += ds * ds;
			f->rec2 += dr * dr;
			f->dot += dr * ds;
			/* NaN compares false and is skipped, as fmax does. */
			if (a > f->max_abs)
				f->max_abs = a;
		}
	}
	f->n += n;
}

void udfs_fidelity_merge(udfs_fidelity *a, const udfs_fidelity *b)
{
	a->err2 += b->err2;
	a->src2 += b->src2;
	a->rec2 += b->rec2;
	a->dot += b->dot;
	a->max_abs = fmax(a->max_abs, b->max_abs);
	a->n += b->n;
}

double udfs_fidelity_rel_err(const udfs_fidelity *f)
{
	return f->src2 > 0 ? sqrt(f->err2 / f->src2)
			   : (f->err2 > 0 ? INFINITY : 0);
}

double udfs_fidelity_cosine(const udfs_fidelity *f)
{
	return f->src2 > 0 && f->rec2 > 0 ? f->dot / sqrt(f->src2 * f->rec2)
					  : (f->src2 == f->rec2 ? 1.0 : 0.0);
}

double udfs_fidelity_snr_db(const udfs_fidelity *f)
{
	if (f->err2 == 0)
		return INFINITY;
	return 10 * log10(f->src2 / f->err2);
}

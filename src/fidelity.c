// SPDX-License-Identifier: MIT
/*
 * Fidelity sums of a reconstructed delta against the true delta (see
 * udfs/fidelity.h). Everything is accumulated in double, element by
 * element in index order, so a tensor gives the same sums whether it is
 * measured whole (`udfs eval`) or chunk by chunk and merged (`add`) up to
 * the rounding of the merge.
 */
#include "udfs/fidelity.h"

#include <math.h>

#include "udfs/dtype.h"

void udfs_fidelity_add(udfs_fidelity *f, int dtype, const void *base,
		       const void *rec, const void *src, uint64_t n)
{
	for (uint64_t e = 0; e < n; e++) {
		double b = udfs_dtype_load_f32(dtype, base, e);
		double r = udfs_dtype_load_f32(dtype, rec, e);
		double w = udfs_dtype_load_f32(dtype, src, e);
		double ds = w - b, dr = r - b;

		f->err2 += (dr - ds) * (dr - ds);
		f->src2 += ds * ds;
		f->rec2 += dr * dr;
		f->dot += dr * ds;
		f->max_abs = fmax(f->max_abs, fabs(r - w));
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

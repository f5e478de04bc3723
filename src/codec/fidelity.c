// SPDX-License-Identifier: MIT
/*
 * Fidelity sums of a reconstructed delta against the true delta (see
 * fidelity.h). Everything is accumulated in double, in eight lanes of
 * elements, so a tensor gives the same sums whether it is measured whole
 * (`udfs eval`) or chunk by chunk and merged (`add`) up to the rounding
 * of the lanes and the merge.
 */
#include "codec/fidelity.h"

#include <math.h>
#include <string.h>

#include "common/dtype.h"
#include "common/util.h"

/* Elements [first, first + n) of a dtype array as floats. BF16 and F32,
 * the common cases, are converted inline: add measures every chunk it
 * writes, and a call per element would double the cost of a lossy add. */
UDFS_INLINE void load_block(int dtype, const void *p, uint64_t first, size_t n,
			    float *restrict out)
{
	const unsigned char *restrict b = p;
	size_t i = 0;

	switch (dtype) {
	case UDFS_DT_BF16:
		/* 16 at a time: a fixed count, which -O2 vectorizes. Stored
		 * straight to out: through a local array, its two halves were
		 * stored apart and read back whole, a store-forwarding stall
		 * that was most of this function's time. */
		for (; i + 16 <= n; i += 16)
			for (int j = 0; j < 16; j++) {
				uint16_t h;
				uint32_t u;

				memcpy(&h, b + 2 * (first + i + j), 2);
				u = (uint32_t)h << 16;
				memcpy(out + i + j, &u, 4);
			}
		for (; i < n; i++)
			out[i] = udfs_dtype_load_f32(dtype, p, first + i);
		break;
	case UDFS_DT_F32:
		memcpy(out, b + 4 * first, 4 * n);
		break;
	default:
		for (; i < n; i++)
			out[i] = udfs_dtype_load_f32(dtype, p, first + i);
	}
}

/*
 * The sums of a call, element i in lane i % LANES: independent chains,
 * which the compiler vectorizes, where one running sum per figure made
 * each element wait for the previous one. The lanes are added in order
 * at the end of the call, so the figures are deterministic; they differ
 * from a serial sum in the last bits only.
 */
enum { LANES = 8 };
struct lanes {
	double err2[LANES], src2[LANES], rec2[LANES], dot[LANES];
	double max_abs[LANES];
};

/* Elements b, r, w [0, LANES) into the lanes. */
UDFS_INLINE void lanes_add(struct lanes *restrict s, const float *b,
			   const float *r, const float *w)
{
	for (int j = 0; j < LANES; j++) {
		double ds = (double)w[j] - b[j], dr = (double)r[j] - b[j];
		double a = fabs((double)r[j] - w[j]);

		s->err2[j] += (dr - ds) * (dr - ds);
		s->src2[j] += ds * ds;
		s->rec2[j] += dr * dr;
		s->dot[j] += dr * ds;
		/* NaN compares false and is skipped, as fmax does. */
		s->max_abs[j] = a > s->max_abs[j] ? a : s->max_abs[j];
	}
}

UDFS_CLONES
void udfs_fidelity_add(udfs_fidelity *f, int dtype, const void *base,
		       const void *rec, const void *src, uint64_t n)
{
	enum { BLOCK = 256 }; /* a multiple of LANES */
	float b[BLOCK], r[BLOCK], w[BLOCK];
	struct lanes s;

	memset(&s, 0, sizeof(s));
	for (uint64_t at = 0; at < n; at += BLOCK) {
		size_t k = n - at < BLOCK ? (size_t)(n - at) : BLOCK;

		load_block(dtype, base, at, k, b);
		load_block(dtype, rec, at, k, r);
		load_block(dtype, src, at, k, w);
		/* a last partial group of zeros adds nothing */
		for (size_t i = k; i % LANES; i++)
			b[i] = r[i] = w[i] = 0;
		for (size_t i = 0; i < k; i += LANES)
			lanes_add(&s, b + i, r + i, w + i);
	}
	for (int j = 0; j < LANES; j++) {
		f->err2 += s.err2[j];
		f->src2 += s.src2[j];
		f->rec2 += s.rec2[j];
		f->dot += s.dot[j];
		if (s.max_abs[j] > f->max_abs)
			f->max_abs = s.max_abs[j];
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

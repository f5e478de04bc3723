// SPDX-License-Identifier: MIT
/*
 * Planning of the adaptive method (`udfs-compress add --method adaptive`):
 * for every eligible tensor, price a set of candidate codes, then choose
 * one code per tensor.
 *
 * Candidates of a tensor with delta d: storing it exactly (the lossless
 * xor plane), dropping it, and every combination of a low-rank part (rank
 * 1..64 of each chunk's rows, factors of 4, 6 or 8 bits, or none) with a
 * residual (none; sign times a scale; uniform 2..8-bit codes on levels
 * clipped for the least squared error), the residual on all elements, on
 * its largest ones only (positions stored), or on a seeded random share
 * rescaled (no positions). Each candidate gets its expected squared error
 * ||d - d^||^2, <d, d^> and ||d^||^2, computed as the decoder reconstructs
 * (before the final rounding to the dtype), and its bytes, estimated from
 * the empirical entropy of its codes and positions (the range coder of
 * codec/lossy.c comes within a few percent of it), both on a sample of
 * the tensor drawn from at most PRICE_BLOCKS of its chunks and scaled to
 * the whole (the SVDs of those chunks are most of the pricing's time).
 *
 * Choice, data-free: the distortion of the model is the sum over tensors
 * of each one's distortion relative to ||d||^2 (cand_dist: the share of
 * the delta lost counts in full, the rest of the error as noise at a
 * tenth of its energy). --ratio R gives a
 * byte budget for the whole model in real bytes as `udfs info` counts
 * them (packs and catalog rows); a Lagrange multiplier lambda picks, per
 * tensor, the candidate minimizing distortion + lambda * bytes, bisected
 * on lambda until the estimate fits. The chosen codes are then encoded
 * for real, each tensor's estimates rescaled by its real/estimated bytes,
 * and the choice redone until the real bytes fit within 1% below the
 * budget (or the best fitting choice of 8 passes is kept). --max-error E
 * instead takes, per tensor, the smallest candidate whose relative error is at
 * most E. Nothing is random: the choice depends on the bytes only.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/mix.h"
#include "codec/plane.h"
#include "codec/trellis.h"
#include "common/dtype.h"
#include "common/pool.h"
#include "common/util.h"
#include "format/tmap.h"
#include "write/add_i.h"
#include "write/linalg.h"
#include "write/mix_i.h"
#include "write/trellis.h"
#include "write/ultradelta.h"

static const uint8_t fbits_set[] = {4, 6, 8};
static const uint8_t ranks[] = {1, 2, 4, 8, 16, 32, 64};
/* Residual kept for the sign code: its largest 100%, 50%, 25%, 10%. */
static const float drop_set[] = {0.0f, 0.5f, 0.75f, 0.9f};
/* Steps of the dead-zone quantizer, in units of the residual's RMS: a
 * larger step gives more zeros and fewer bits. */
static const float ecsq_steps[] = {0.15f, 0.25f, 0.4f, 0.6f, 0.9f, 1.3f, 1.8f};
/* Drop rates of the seeded (UltraDelta-like) residual codes: codes, and
 * signs (one bit a kept element, so more of them pay). */
static const float seeded_set[] = {0.5f, 0.7f, 0.8f, 0.9f};
static const float seeded_sign_set[] = {0.2f, 0.35f, 0.5f, 0.65f, 0.8f};
/*
 * The weight of noise in the distortion (cand_dist). An error that keeps
 * the delta's direction, d^ = a d + noise with the noise uncorrelated with
 * d, loses (1 - a)^2 of the delta; a fine-tune tolerates the noise far
 * better than that loss (UltraDelta at s = 0.5, a = 1 with noise of the
 * delta's own energy, keeps 93% of stories260K's gain). A seeded drop
 * rescaled by 1/(1 - r) is all noise; a sign code or a dead-zone
 * quantizer loses a share of the delta too. 0.1 fits stories260K lives
 * and pi BF16 best at 25x (0.05: 85/91.5% of the gain kept, 0.1: 86.5/90,
 * 0.2: 83.5/86; bench/FIDELITY.md).
 */
#define NOISE_WEIGHT 0.1
/* Elements a tensor's candidates are priced on: a fixed, evenly spaced
 * sample, so pricing costs the same for every size of tensor. */
#define SAMPLE_MAX 16384
/* The priced chunks' SVDs a model keeps for its encoder (PRICE_BLOCKS,
 * mix_i.h), at most, until the codes are chosen: each tensor's in order
 * while they fit (the encoder computes the others' again); the chosen
 * codes then cut them to their ranks. */
#define PRICED_KEEP_BYTES (256u << 20)

/* One candidate code of one tensor. */
struct cand {
	struct mix_code c;
	float lo, step; /* residual levels (codes) or scale (sign) */
	bool exact;	/* stored lossless: the plan's xor */
	double bytes;
	double err2; /* expected ||d - d^||^2 */
	double dist; /* its weighted distortion (cand_errors), 0 when exact */
};

/* One eligible tensor of one model. */
struct ptensor {
	size_t file, tensor;
	uint64_t cols;
	double norm2; /* ||d||^2 */
	double s2;    /* ||d||^2 as its sample estimates it */
	double w;     /* weight of its squared error in the distortion */
	double scale; /* real / estimated bytes */
	struct cand *cand;
	size_t n_cand;
	size_t pick;
	uint64_t real;	/* real pack bytes of the pick, when measured */
	bool keep_svd;	/* its priced SVDs go to the plan (PRICED_KEEP_BYTES) */
	unsigned codes; /* UDFS_CODES_* families it may take (--codes) */
};

struct plan_job {
	struct add_group *g;
	struct add_model *am;
	struct ptensor *pt;
};

static double entropy_bits(const uint64_t *hist, size_t nb, uint64_t n)
{
	double bits = 0;

	for (size_t i = 0; i < nb; i++)
		if (hist[i])
			bits -=
			    (double)hist[i] * log2((double)hist[i] / (double)n);
	return bits;
}

/* Bits of the positions of k kept among n (binary entropy, plus the
 * few percent the range-coded gaps lose to it). */
static double mask_bits(uint64_t n, uint64_t k)
{
	double q = (double)k / (double)n;

	if (k == 0 || k == n)
		return 0;
	return 1.04 * (double)n * -(q * log2(q) + (1 - q) * log2(1 - q));
}

/* Magnitudes sorted in decreasing order: an LSD radix sort of their bit
 * patterns (non-negative floats order as their bits do). */
static void sort_abs_desc(const float *x, uint64_t n, float *out)
{
	uint32_t *a = udfs_xmalloc(n * sizeof(uint32_t) + 4);
	uint32_t *b = udfs_xmalloc(n * sizeof(uint32_t) + 4);

	for (uint64_t j = 0; j < n; j++) {
		float v = fabsf(x[j]);

		memcpy(&a[j], &v, 4);
	}
	for (unsigned sh = 0; sh < 32; sh += 8) {
		uint64_t cnt[257] = {0};
		uint32_t *t;

		for (uint64_t j = 0; j < n; j++)
			cnt[(a[j] >> sh & 255) + 1]++;
		for (unsigned k = 0; k < 256; k++)
			cnt[k + 1] += cnt[k];
		for (uint64_t j = 0; j < n; j++)
			b[cnt[a[j] >> sh & 255]++] = a[j];
		t = a;
		a = b;
		b = t;
	}
	for (uint64_t j = 0; j < n; j++)
		memcpy(&out[n - 1 - j], &a[j], 4);
	free(a);
	free(b);
}

/* A residual sample: its values, their magnitudes sorted in decreasing
 * order, and the suffix sums of their squares (the error of dropping all
 * from position j on). Every error and bit count of the sample is scaled
 * by up = elements / samples. */
struct resid {
	uint64_t n; /* samples */
	double up;
	const float *raw;
	float *sorted;
	double *tail2; /* n + 1 entries */
	double l2;     /* energy of the low-rank part it is what is left of */
};

static void resid_init(struct resid *rs, const float *r, uint64_t n, double up)
{
	rs->n = n;
	rs->l2 = 0;
	rs->up = up;
	rs->raw = r;
	rs->sorted = udfs_xmalloc(n * sizeof(float) + 1);
	rs->tail2 = udfs_xmalloc((n + 1) * sizeof(double));
	sort_abs_desc(r, n, rs->sorted);
	rs->tail2[n] = 0;
	for (uint64_t j = n; j-- > 0;)
		rs->tail2[j] =
		    rs->tail2[j + 1] + (double)rs->sorted[j] * rs->sorted[j];
}

static void resid_free(struct resid *rs)
{
	free(rs->sorted);
	free(rs->tail2);
}

/* The families (UDFS_CODES_*) candidate c needs. */
static unsigned cand_families(const struct cand *c)
{
	unsigned f = c->c.rank ? UDFS_CODES_LR : 0;

	if (c->exact || c->c.res == MIX_RES_NONE)
		return f;
	if (c->c.seeded)
		return f | UDFS_CODES_RAND;
	return f | (c->c.res == MIX_RES_SIGN	  ? UDFS_CODES_SIGN
		    : c->c.res == MIX_RES_TRELLIS ? UDFS_CODES_TCQ
						  : UDFS_CODES_Q);
}

/* Add candidate c to t, if --codes allows its families. */
static void add_cand(struct ptensor *t, const struct cand *c)
{
	if ((cand_families(c) & ~t->codes) != 0)
		return;
	t->cand = udfs_xrealloc(t->cand, (t->n_cand + 1) * sizeof(*c));
	t->cand[t->n_cand++] = *c;
}

/*
 * The distortion of an estimate d^ of tensor t's delta d with <d, d^> dot
 * and ||d^||^2 q2: the part of the delta it loses, (1 - a)^2 ||d||^2 with
 * a = dot / ||d||^2, at full weight, and the rest of its error, noise, at
 * NOISE_WEIGHT; weighted by t->w.
 */
static double cand_dist(const struct ptensor *t, double dot, double q2)
{
	double a;

	if (!(t->s2 > 0))
		return 0;
	a = dot / t->s2;
	return t->w * ((1 - a) * (1 - a) * t->s2 +
		       NOISE_WEIGHT * fmax(0, q2 - a * a * t->s2));
}

/*
 * The error figures of candidate c of tensor t: a low-rank part of energy
 * l2 plus a residual code whose values leave squared error e and have
 * energy q2 (their cross term neglected: the residual is what the
 * low-rank part leaves, near orthogonal to it), the values kept on a
 * share keep of the elements and rescaled by 1 / keep: <d, d^> is the same
 * for every draw of a seeded mask, E||d^||^2 grows by 1 / keep.
 */
static void cand_errors(const struct ptensor *t, struct cand *c, double l2,
			double e, double q2, double keep)
{
	c->err2 = e + (1 - keep) / keep * q2;
	c->dist = cand_dist(t, (t->s2 + l2 + q2 - e) / 2, l2 + q2 / keep);
}

/* Bytes of the chunk headers of a code over n_chunks chunks. */
static double header_bytes(uint32_t n_chunks, const struct mix_code *c)
{
	double b = 1;

	if (c->rank)
		b += 2 + 3 + 8.0 * c->rank + 1 + 3;
	if (c->res != MIX_RES_NONE)
		b += 1 + 3 + (c->rate > 0 ? 6 : 0);
	return b * n_chunks;
}

/* Histogram of the codes of the residual sample on the grid lo + c *
 * step (bits bits), their squared error e and the energy q2 of their
 * values. Four lanes of histograms and sums: a residual mostly falls in
 * a few levels, and one counter or one sum would make every element wait
 * for the previous one. */
static void ecsq_sums(const struct resid *rs, float lo, float step,
		      unsigned bits, uint64_t *hist, double *e, double *q2)
{
	uint32_t h[4][256] = {{0}};
	uint8_t code[64];
	double lv[256], el[4] = {0};
	uint64_t j = 0;

	for (unsigned q = 0; q < 1u << bits; q++)
		lv[q] = (double)(lo + (float)q * step);
	for (; j < rs->n; j += 64) { /* codes 64 at a time, vectorized */
		uint64_t m = UDFS_MIN(64, rs->n - j);

		if (m == 64)
			udfs_mix_quant64(rs->raw + j, lo, step, bits, code);
		for (uint64_t i = 0; m < 64 && i < m; i++)
			code[i] =
			    udfs_mix_quant(rs->raw[j + i], lo, step, bits);
		for (uint64_t i = 0; i < m; i++) {
			double d = (double)rs->raw[j + i] - lv[code[i]];

			h[(j + i) & 3][code[i]]++;
			el[(j + i) & 3] += d * d;
		}
	}
	*e = (el[0] + el[1]) + (el[2] + el[3]);
	*q2 = 0;
	for (unsigned q = 0; q < 256; q++) {
		hist[q] = (uint64_t)h[0][q] + h[1][q] + h[2][q] + h[3][q];
		if (q < 1u << bits)
			*q2 += (double)hist[q] * lv[q] * lv[q];
	}
}

/* Dead-zone quantizer candidates of the whole residual: levels
 * (c - m) * step, m = 2^(b-1) - 1 with the fewest bits b whose grid covers
 * the largest residual, entropy coded (codec/lossy.c codes a code around
 * the zero level). */
static void ecsq_cands(struct ptensor *t, const struct resid *rs,
		       const struct cand *base, uint32_t n_chunks)
{
	double rms = sqrt(rs->tail2[0] / (double)rs->n);
	float mx = rs->sorted[0];
	struct cand c = *base;

	c.c.res = MIX_RES_CODES;
	c.c.rate = 0;
	for (size_t si = 0; si < sizeof(ecsq_steps) / sizeof(*ecsq_steps);
	     si++) {
		float step = (float)(ecsq_steps[si] * rms);
		unsigned bits = 2, m;
		uint64_t hist[256];
		double e, q2;

		while (bits < 8 && (float)((1u << (bits - 1)) - 1) * step < mx)
			bits++;
		m = (1u << (bits - 1)) - 1;
		c.lo = -(float)m * step;
		c.step = step;
		ecsq_sums(rs, c.lo, step, bits, hist, &e, &q2);
		c.c.rbits = (uint8_t)bits;
		c.c.seeded = 0;
		c.c.rate = 0;
		cand_errors(t, &c, rs->l2, e * rs->up, q2 * rs->up, 1);
		c.bytes = base->bytes + header_bytes(n_chunks, &c.c) +
			  1.02 * entropy_bits(hist, 256, rs->n) * rs->up / 8 +
			  4;
		add_cand(t, &c);
		/* The same codes on a seeded random subset, rescaled: unbiased,
		 * their error is noise of energy r / (1 - r) of the codes'. */
		for (size_t r = 0; r < sizeof(seeded_set) / sizeof(*seeded_set);
		     r++) {
			double k = 1 - seeded_set[r];

			c.c.seeded = 1;
			c.c.rate = seeded_set[r];
			cand_errors(t, &c, rs->l2, e * rs->up, q2 * rs->up, k);
			c.bytes = base->bytes + header_bytes(n_chunks, &c.c) +
				  k * 1.02 * entropy_bits(hist, 256, rs->n) *
				      rs->up / 8 +
				  4;
			add_cand(t, &c);
		}
	}
}

/* The sign code of every element (its scale step, leaving error e) on a
 * seeded random subset instead, rescaled by 1/(1 - r): its expectation is
 * the sign code's, plus noise of r / (1 - r) of the signs' energy. */
static void seeded_sign_cands(struct ptensor *t, const struct cand *sign,
			      double l2, double e, uint32_t n_chunks,
			      uint64_t n_elems)
{
	struct cand c = *sign;
	double q2 = (double)c.step * c.step * (double)n_elems;

	c.c.seeded = 1;
	for (size_t r = 0;
	     r < sizeof(seeded_sign_set) / sizeof(*seeded_sign_set); r++) {
		double k = 1 - seeded_sign_set[r];

		c.c.rate = seeded_sign_set[r];
		cand_errors(t, &c, l2, e, q2, k);
		c.bytes = sign->bytes - (double)n_elems / 8 -
			  header_bytes(n_chunks, &sign->c) +
			  header_bytes(n_chunks, &c.c) +
			  1.02 * k * (double)n_elems / 8;
		add_cand(t, &c);
	}
}

/* Scales of a trellis code tried, in units of its least-squares scale:
 * larger scales keep more of the delta's direction at the price of noise,
 * which costs less (cand_dist). */
static const float trellis_gains[] = {1.0f, 1.15f, 1.3f, 1.45f,
				      1.6f, 1.8f,  2.0f, 2.3f};
/* Elements a trellis candidate is priced on, at most: evenly spread over
 * the residual sample. A search costs about 100 ns a value, and its
 * error is known to a few percent from this many. */
#define TRELLIS_SAMPLE 4096

/* The search scale of a trellis code, in units of the RMS of what it
 * codes, for v = 1..4 values a bit: found on the residual without a
 * low-rank part (search at the RMS, then again at the least-squares
 * scale of that path), reused for the residuals of low-rank parts, which
 * then take one search each. */
struct trellis_scales {
	float of_rms[UDFS_TRELLIS_VMAX + 1]; /* 0: not known yet */
};

/* Add candidate c (a trellis code whose values y, at scale 1, have
 * <r, y> ry and ||y||^2 yy on the sample) at the scale s. */
static void trellis_add(struct ptensor *t, const struct resid *rs,
			struct cand *c, double rr, double ry, double yy,
			double s)
{
	c->step = (float)s;
	cand_errors(t, c, rs->l2, (rr - 2 * s * ry + s * s * yy) * rs->up,
		    s * s * yy * rs->up, 1);
	add_cand(t, c);
}

/*
 * Trellis codes of the whole residual, v = 1..4 values a path bit, priced
 * on up to TRELLIS_SAMPLE elements of the sample rs. Two candidates each:
 * the least-squares scale (least error, for --max-error) and the scale of
 * trellis_gains[] of least distortion. The sample's order is not the
 * tensor's, which a trellis does not mind: it codes any order of the same
 * values about as well.
 */
static void trellis_cands(struct ptensor *t, const struct resid *rs,
			  const struct cand *base, uint32_t n_chunks,
			  uint64_t n_elems, struct trellis_scales *ts)
{
	uint32_t n = (uint32_t)UDFS_MIN(rs->n, (uint64_t)TRELLIS_SAMPLE);
	uint8_t *bits = udfs_xmalloc(n + 1);
	float *x = udfs_xmalloc(((size_t)n + 1) * sizeof(float));
	float *y = udfs_xmalloc(((size_t)n + 1) * sizeof(float));
	float lut[UDFS_TRELLIS_STATES * UDFS_TRELLIS_VMAX];
	double rr, rms;
	struct cand c = *base;

	for (uint32_t j = 0; j < n; j++)
		x[j] = rs->raw[(uint64_t)j * rs->n / n];
	rr = udfs_sum_squares(x, n);
	rms = sqrt(rr / (double)n);
	/* the sample's scale up to the tensor's, from its own energy */
	rr *= (double)rs->n / (double)n;
	c.c.res = MIX_RES_TRELLIS;
	c.c.rate = 0;
	c.c.seeded = 0;
	if (!(t->codes & UDFS_CODES_TCQ))
		rms = 0; /* not allowed: no search */
	for (unsigned v = 1; v <= UDFS_TRELLIS_VMAX && rms > 0; v++) {
		udfs_lossy_params lp = {.values = UDFS_VAL_TRELLIS,
					.bits = (uint8_t)v,
					.step = 1.0f,
					.gain = 1.0f};
		bool known = ts->of_rms[v] > 0;
		float search = (float)(known ? ts->of_rms[v] * rms : rms);
		double ry = 0, yy = 0, best = INFINITY, ls = 0, up;
		float pick = 1;

		udfs_trellis_lut(&lp, lut);
		for (int it = known ? 1 : 0; it < 2; it++) {
			if (udfs_trellis_search(x, n, v, search, bits))
				goto out; /* no memory: no more candidates */
			udfs_trellis_expand(lut, v, bits, n, y);
			up = (double)rs->n / (double)n;
			ry = udfs_dot(x, y, n) * up;
			yy = udfs_sum_squares(y, n) * up;
			ls = yy > 0 ? ry / yy : 0;
			if (it == 0 && ls > 0)
				search = (float)ls;
		}
		if (!(ls > 0))
			continue;
		if (!known)
			ts->of_rms[v] = (float)(search / rms);
		c.c.rbits = (uint8_t)v;
		c.c.search = search;
		c.bytes = base->bytes + header_bytes(n_chunks, &c.c) +
			  (double)((n_elems + v - 1) / v) / 8;
		for (size_t gi = 1;
		     gi < sizeof(trellis_gains) / sizeof(*trellis_gains);
		     gi++) {
			double s = ls * trellis_gains[gi], a = s * ry;
			double e = rr - 2 * a + s * s * yy;

			cand_errors(t, &c, rs->l2, e * rs->up,
				    s * s * yy * rs->up, 1);
			if (c.dist < best) {
				best = c.dist;
				pick = trellis_gains[gi];
			}
		}
		trellis_add(t, rs, &c, rr, ry, yy, ls);
		trellis_add(t, rs, &c, rr, ry, yy, ls * pick);
	}
out:
	free(bits);
	free(x);
	free(y);
}

/* Every residual candidate of the residual sample rs, added to t after
 * the low-rank part of base (bytes base->bytes): none, sign times the mean
 * magnitude of the largest kept (positions stored) or of a seeded random
 * share, and dead-zone codes (on all elements or a seeded share). */
static void residual_cands(struct ptensor *t, const struct resid *rs,
			   const struct cand *base, uint32_t n_chunks,
			   uint64_t n_elems, struct trellis_scales *ts)
{
	struct cand c = *base;

	c.c.res = MIX_RES_NONE;
	cand_errors(t, &c, rs->l2, rs->tail2[0] * rs->up, 0, 1);
	c.bytes = base->bytes + header_bytes(n_chunks, &c.c);
	add_cand(t, &c);
	if (!(rs->tail2[0] > 0))
		return;
	ecsq_cands(t, rs, base, n_chunks);
	trellis_cands(t, rs, base, n_chunks, n_elems, ts);
	c.c.res = MIX_RES_SIGN;
	for (size_t d = 0; d < sizeof(drop_set) / sizeof(*drop_set); d++) {
		uint64_t k =
		    rs->n - (uint64_t)llround((double)rs->n * drop_set[d]);
		uint64_t kn =
		    n_elems - (uint64_t)llround((double)n_elems * drop_set[d]);
		double sum = 0, e = 0;

		if (k == 0)
			continue;
		for (uint64_t j = 0; j < k; j++)
			sum += rs->sorted[j];
		c.c.rate = drop_set[d];
		c.step = (float)(sum / (double)k);
		for (uint64_t j = 0; j < k; j++) {
			double x = (double)rs->sorted[j] - c.step;

			e += x * x;
		}
		cand_errors(t, &c, rs->l2, (e + rs->tail2[k]) * rs->up,
			    (double)k * c.step * c.step * rs->up, 1);
		c.bytes = base->bytes + header_bytes(n_chunks, &c.c) +
			  (mask_bits(n_elems, kn) + (double)kn) / 8;
		add_cand(t, &c);
		if (d == 0)
			seeded_sign_cands(t, &c, rs->l2, e * rs->up, n_chunks,
					  n_elems);
	}
}

/* The chunks a tensor of nelems elements is priced on (PRICE_BLOCKS):
 * all of them, or n_sel full chunks sel[], ascending. */
struct pblocks {
	uint64_t nelems, m; /* elements of the tensor, of the chunks */
	uint32_t per, n_blk, n_sel;
	uint32_t sel[PRICE_BLOCKS];
	bool all;
};

static void pblocks_init(struct pblocks *pb, uint64_t nelems, uint32_t per)
{
	uint32_t full = (uint32_t)(nelems / per);

	pb->nelems = nelems;
	pb->per = per;
	pb->n_blk = (uint32_t)((nelems + per - 1) / per);
	pb->all = pb->n_blk <= PRICE_BLOCKS;
	pb->n_sel = pb->all ? pb->n_blk : PRICE_BLOCKS;
	for (uint32_t i = 0; i < pb->n_sel; i++)
		pb->sel[i] = pb->all ? i
				     : (uint32_t)(((uint64_t)2 * i + 1) * full /
						  (2 * PRICE_BLOCKS));
	pb->m = pb->all ? nelems : (uint64_t)pb->n_sel * per;
}

/* Element of the tensor at sample j of n, evenly spaced over the chunks
 * priced on. */
static uint64_t sample_at(const struct pblocks *pb, uint64_t j, uint64_t n)
{
	uint64_t at = n == pb->m ? j : j * pb->m / n;

	return pb->all
		   ? at
		   : (uint64_t)pb->sel[at / pb->per] * pb->per + at % pb->per;
}

/* Factor codes of a rank-k part over every chunk of the tensor. */
static uint64_t factor_codes(const struct pblocks *pb, uint64_t cols,
			     uint32_t k)
{
	uint64_t cnt = 0;

	for (uint32_t b = 0; b < pb->n_blk; b++) {
		uint64_t first = (uint64_t)b * pb->per;
		uint32_t nb = (uint32_t)UDFS_MIN(pb->per, pb->nelems - first);
		uint64_t rows = udfs_lowrank_rows(cols, first, nb);

		cnt +=
		    (rows + cols) * UDFS_MIN(k, udfs_mix_kmax(rows, cols, nb));
	}
	return cnt;
}

#define N_RANKS (sizeof(ranks) / sizeof(*ranks))

/* Low-rank values of every rank of ranks[] at one sampled element whose
 * row of U is u and column of V is v (ks columns each): the decoder's sum
 * over c in order from zero (codec/mix.c) stopped at each rank, so that
 * one pass gives what each rank's expansion would. */
static void expand_ranks(const float *u, const float *v, uint32_t ks,
			 uint64_t j, float *const *l)
{
	float s = 0.0f;
	uint32_t c = 0;

	for (size_t ri = 0; ri < N_RANKS; ri++) {
		uint32_t kb = ranks[ri] < ks ? ranks[ri] : ks;

		for (; c < kb; c++)
			s += u[c] * v[c];
		l[ri][j] = s;
	}
}

/* Histogram of the codes in columns [c0, c1) of an n x k code matrix. */
static void hist_cols(const uint8_t *codes, uint64_t n, uint32_t k, uint32_t c0,
		      uint32_t c1, uint64_t *hist)
{
	for (uint64_t i = 0; i < n; i++)
		for (uint32_t c = c0; c < c1; c++)
			hist[codes[i * k + c]]++;
}

/*
 * Low-rank parts of every rank of ranks[] at fbits bits: their values at
 * the sampled elements into l[ri] (computed as the decoder does) and their
 * estimated code bytes into bytes[ri]. The factors of each chunk are
 * quantized once at its largest rank: a column's codes and scale do not
 * depend on how many columns are kept, so the rank-k factors are the first
 * k columns of those.
 */
static void lowrank_samples(const struct mix_svd *sv, const struct pblocks *pb,
			    uint64_t n, uint32_t fbits, float *const *l,
			    double *bytes)
{
	uint64_t hist[N_RANKS][256] = {{0}}, cnt[N_RANKS] = {0}, j = 0;

	for (uint32_t s = 0; s < pb->n_sel; s++) {
		uint64_t first = (uint64_t)pb->sel[s] * pb->per;
		uint64_t end = UDFS_MIN(first + pb->per, pb->nelems);
		uint32_t ks = sv[s].k, c0 = 0;
		uint64_t h[256] = {0};
		struct mix_factors f;
		float *uf, *vf;

		if (ks == 0) {
			for (; j < n && sample_at(pb, j, n) < end; j++)
				for (size_t ri = 0; ri < N_RANKS; ri++)
					l[ri][j] = 0;
			continue;
		}
		udfs_mix_factors_make(&sv[s], ks, fbits, &f);
		uf = udfs_xmalloc(f.rows * ks * sizeof(float) + 1);
		vf = udfs_xmalloc(f.cols * ks * sizeof(float) + 1);
		udfs_mix_factors_dequant(&f, uf, vf);
		for (; j < n && sample_at(pb, j, n) < end; j++) {
			uint64_t e = sample_at(pb, j, n);
			uint64_t row = e / f.cols - first / f.cols;

			expand_ranks(uf + row * ks, vf + (e % f.cols) * ks, ks,
				     j, l);
		}
		/* h: the chunk's codes in columns [0, kb) */
		for (size_t ri = 0; ri < N_RANKS; ri++) {
			uint32_t kb = ranks[ri] < ks ? ranks[ri] : ks;

			hist_cols(f.uc, f.rows, ks, c0, kb, h);
			hist_cols(f.vc, f.cols, ks, c0, kb, h);
			c0 = kb;
			for (unsigned b = 0; b < 256; b++)
				hist[ri][b] += h[b];
			cnt[ri] += (f.rows + f.cols) * kb;
		}
		free(uf);
		free(vf);
		udfs_mix_factors_free(&f);
	}
	for (size_t ri = 0; ri < N_RANKS; ri++) {
		uint64_t all;
		double bits;

		bytes[ri] = 0;
		if (!cnt[ri])
			continue;
		all =
		    pb->all ? cnt[ri] : factor_codes(pb, sv[0].cols, ranks[ri]);
		bits = 1.02 * entropy_bits(hist[ri], 256, cnt[ri]);
		if (all != cnt[ri])
			bits = bits * (double)all / (double)cnt[ri];
		bytes[ri] = UDFS_MIN(bits, (double)all * fbits) / 8 + 8;
	}
}

/* Bytes of the lossless (xor) plane of a tensor: its first chunk encoded,
 * scaled to the whole (an estimate; the real-bytes pass of --ratio
 * corrects it when exact storage is chosen). */
static int exact_bytes(const struct add_group *g, const udfs_st_tensor *st,
		       const unsigned char *cur, const unsigned char *base,
		       double *bytes)
{
	uint64_t len = st->end - st->begin;
	size_t n = (size_t)UDFS_MIN((uint64_t)UDFS_CHUNK_BYTES, len);
	unsigned es = udfs_dtype_size(st->dtype);
	void *out = NULL;
	size_t out_len = 0;
	int err;

	*bytes = 0;
	if (!len)
		return 0;
	err = udfs_plane_encode(cur, base, n, es ? es : 1, g->o->level, &out,
				&out_len);
	free(out);
	if (!err)
		*bytes = (double)out_len * (double)len / (double)n;
	return err;
}

/* Candidates with a low-rank part: each rank and factor width, then every
 * residual of what it leaves, on the sample ds of n elements. */
static void lowrank_cands(struct ptensor *t, const struct mix_svd *sv,
			  uint32_t kmax, const struct pblocks *pb,
			  const float *ds, uint64_t n,
			  struct trellis_scales *ts)
{
	enum { N_FBITS = sizeof(fbits_set) };
	float *lv = udfs_xmalloc(N_FBITS * N_RANKS * n * sizeof(float) + 1);
	float *l[N_FBITS][N_RANKS];
	double bytes[N_FBITS][N_RANKS];
	float *r = udfs_xmalloc(n * sizeof(float) + 1);
	struct resid rs;

	for (size_t fi = 0; fi < N_FBITS; fi++) {
		for (size_t ri = 0; ri < N_RANKS; ri++)
			l[fi][ri] = lv + (fi * N_RANKS + ri) * n;
		lowrank_samples(sv, pb, n, fbits_set[fi], l[fi], bytes[fi]);
	}
	for (size_t ri = 0; ri < N_RANKS && ranks[ri] <= kmax; ri++)
		for (size_t fi = 0; fi < N_FBITS; fi++) {
			struct cand base = {
			    .c = {.rank = ranks[ri], .fbits = fbits_set[fi]}};

			base.bytes = bytes[fi][ri];
			for (uint64_t j = 0; j < n; j++)
				r[j] = ds[j] - l[fi][ri][j];
			resid_init(&rs, r, n, (double)pb->nelems / (double)n);
			rs.l2 = udfs_sum_squares(l[fi][ri], n) * rs.up;
			residual_cands(t, &rs, &base, pb->n_blk, pb->nelems,
				       ts);
			resid_free(&rs);
		}
	free(r);
	free(lv);
}

/* The largest rank chunk sel[i] of pb holds. */
static uint32_t sel_kmax(const struct pblocks *pb, uint64_t cols, uint32_t i,
			 uint64_t *rows)
{
	uint64_t first = (uint64_t)pb->sel[i] * pb->per;
	uint32_t nb = (uint32_t)UDFS_MIN(pb->per, pb->nelems - first);

	*rows = udfs_lowrank_rows(cols, first, nb);
	return udfs_mix_kmax(*rows, cols, nb);
}

/* Elements of a delta a norm pass computes at a time (price_tensor). */
#define NORM_BLOCK 16384

/*
 * The delta of a tensor is never made whole for its pricing: its norm is
 * summed a block at a time, and the priced chunks' rows are made one chunk
 * at a time in a per-thread buffer, so a pricing job holds one chunk's rows
 * instead of 4 bytes per element of its tensor. The same values, the same
 * sums: the same choices.
 */
struct pdelta {
	int dtype;
	const unsigned char *cur, *base;
	float *buf; /* UDFS_SCRATCH_DELTA */
};

/* The delta of elements [from, from + n) into p->buf. */
static void pdelta_make(const struct pdelta *p, uint64_t from, uint64_t n)
{
	size_t es = udfs_dtype_size(p->dtype);

	udfs_add_delta_range(p->dtype, n, p->cur + from * es,
			     p->base + from * es, p->buf);
}

/* ||d||^2 of the whole delta, with the bits of udfs_sum_squares(). */
static double pdelta_norm2(const struct pdelta *p, uint64_t n)
{
	udfs_sumsq a = {{0}, 0};

	for (uint64_t k = 0; k < n; k += NORM_BLOCK) {
		uint64_t m = UDFS_MIN((uint64_t)NORM_BLOCK, n - k);

		pdelta_make(p, k, m);
		udfs_sumsq_add(&a, p->buf, m);
	}
	return udfs_sumsq_end(&a);
}

/* Floats of the largest priced block, whole rows (udfs_mix_block_svd). */
static uint64_t pblock_floats(const struct pblocks *pb, uint64_t cols)
{
	uint64_t most = NORM_BLOCK;

	for (uint32_t i = 0; i < pb->n_sel; i++) {
		uint64_t first = (uint64_t)pb->sel[i] * pb->per;
		uint32_t nb = (uint32_t)UDFS_MIN(pb->per, pb->nelems - first);

		most =
		    UDFS_MAX(most, udfs_lowrank_rows(cols, first, nb) * cols);
	}
	return most;
}

/* The SVDs of the priced chunks into pr, the largest rank they hold, and
 * the samples ds[0, ns) of the delta (sample_at: they lie in those
 * chunks). */
static int priced_svds(const struct pdelta *p, uint64_t cols,
		       const struct pblocks *pb, float *ds, uint64_t ns,
		       struct mix_priced *pr, uint32_t *kmax)
{
	uint64_t k = 0;
	int err = 0;

	*kmax = 0;
	pr->n_sel = pb->n_sel;
	for (uint32_t i = 0; i < pb->n_sel && !err; i++) {
		uint64_t first = (uint64_t)pb->sel[i] * pb->per, rows;
		uint32_t nb = (uint32_t)UDFS_MIN(pb->per, pb->nelems - first);
		uint32_t kb = sel_kmax(pb, cols, i, &rows);
		uint64_t row0 = first / cols * cols, at;

		/* The block's whole rows, as the SVD reads them. */
		pdelta_make(p, row0, udfs_lowrank_rows(cols, first, nb) * cols);
		for (; k < ns && (at = sample_at(pb, k, ns)) < first + nb; k++)
			ds[k] = p->buf[at - row0];
		pr->sel[i] = pb->sel[i];
		err = udfs_mix_block_svd(p->buf, cols, first - row0, nb, kb,
					 &pr->sv[i]);
		*kmax = UDFS_MAX(*kmax, pr->sv[i].k);
	}
	return err;
}

/* Bytes of the priced SVDs of tensor st (priced_svds). */
static uint64_t priced_bytes(const udfs_st_tensor *st)
{
	uint64_t cols = st->nelems / st->shape[0], sum = 0, rows;
	struct pblocks pb;

	pblocks_init(&pb, st->nelems,
		     UDFS_CHUNK_BYTES / udfs_dtype_size(st->dtype));
	for (uint32_t i = 0; i < pb.n_sel; i++) {
		uint32_t k = sel_kmax(&pb, cols, i, &rows);

		sum += (rows + cols) * k * sizeof(float);
	}
	return sum;
}

/* Price every candidate code of tensor i (a worker thread). */
static int price_tensor(void *ctx, size_t i)
{
	struct plan_job *j = ctx;
	struct ptensor *t = &j->pt[i];
	const udfs_source_file *sf = &j->am->src->files[t->file];
	const udfs_st_tensor *st = &sf->st->tensors[t->tensor];
	struct tensor_plan *p = &j->am->plan[t->file][t->tensor];
	const unsigned char *cur = udfs_source_tensor_bytes(sf, st);
	const unsigned char *base = udfs_add_base_bytes(j->g, p->base);
	uint64_t n = st->nelems, cols = n / st->shape[0], ns;
	uint32_t kmax = 0;
	struct pdelta pd = {.dtype = st->dtype, .cur = cur, .base = base};
	float *ds;
	struct mix_priced *pr = udfs_xcalloc(1, sizeof(*pr));
	struct cand ex = {.exact = true}, none = {0};
	struct trellis_scales ts = {{0}};
	struct pblocks pb;
	struct resid rs;
	int err;

	pblocks_init(&pb, n, UDFS_CHUNK_BYTES / udfs_dtype_size(st->dtype));
	ns = UDFS_MIN(pb.m, (uint64_t)SAMPLE_MAX);
	ds = udfs_xmalloc(ns * sizeof(float) + 1);
	pd.buf = udfs_scratch(UDFS_SCRATCH_DELTA,
			      pblock_floats(&pb, cols) * sizeof(float));
	if (!pd.buf) {
		err = udfs_error(-ENOMEM, "out of memory");
		goto out;
	}
	if (udfs_interrupted) {
		err = udfs_error(-EINTR, "interrupted");
		goto out;
	}
	t->scale = 1;
	t->cols = cols;
	t->codes = j->g->o->codes;
	t->norm2 = pdelta_norm2(&pd, n);
	/* Each element's error counts relative to its tensor's delta. */
	t->w = t->norm2 > 0 ? (double)n / t->norm2 : 0;
	err = priced_svds(&pd, cols, &pb, ds, ns, pr, &kmax);
	if (err)
		goto out;
	t->s2 = udfs_sum_squares(ds, ns) * (double)n / (double)ns;
	err = exact_bytes(j->g, st, cur, base, &ex.bytes);
	if (err)
		goto out;
	add_cand(t, &ex);
	resid_init(&rs, ds, ns, (double)n / (double)ns);
	residual_cands(t, &rs, &none, pb.n_blk, n, &ts);
	resid_free(&rs);
	lowrank_cands(t, pr->sv, kmax, &pb, ds, ns, &ts);
	if (t->keep_svd && kmax > 0) {
		p->priced = pr;
		pr = NULL;
	}
out:
	udfs_mix_priced_free(pr);
	free(ds);
	return err;
}

/* Index of the candidate of t minimizing its distortion relative to
 * ||d||^2 + lambda * bytes. */
static size_t pick_lambda(const struct ptensor *t, double lambda)
{
	size_t best = 0;
	double bv = INFINITY;

	for (size_t c = 0; c < t->n_cand; c++) {
		double v =
		    t->cand[c].dist + lambda * t->cand[c].bytes * t->scale;

		if (v < bv) {
			bv = v;
			best = c;
		}
	}
	return best;
}

static double total_bytes(const struct ptensor *pt, size_t n, double lambda)
{
	double sum = 0;

	for (size_t i = 0; i < n; i++) {
		const struct ptensor *t = &pt[i];

		sum += t->cand[pick_lambda(t, lambda)].bytes * t->scale;
	}
	return sum;
}

/* The candidate of t that lowers its distortion most per added byte
 * within room more bytes, and that gain (0 and t->pick: none). */
static size_t best_upgrade(const struct ptensor *t, double room, double *gain)
{
	const struct cand *p = &t->cand[t->pick];
	double dp = p->dist;
	size_t best = t->pick;

	*gain = 0;
	for (size_t c = 0; c < t->n_cand; c++) {
		double more = (t->cand[c].bytes - p->bytes) * t->scale;
		double less = dp - t->cand[c].dist;

		if (more > 0 && more <= room && less / more > *gain) {
			*gain = less / more;
			best = c;
		}
	}
	return best;
}

/*
 * The choice of a lambda is on each tensor's lower convex hull of
 * distortion against bytes, whose points may be far apart: at the lambda
 * where the choice first fits, a large tensor, or many alike (the layers
 * of one model), change their pick at once and the bytes jump past the
 * budget. Spend what is left greedily: the candidate, of any tensor, that
 * lowers the distortion most per added byte and still fits, until none
 * does. Each tensor's best upgrade is kept and found again only when it
 * was taken or no longer fits (the room only shrinks), so a step costs a
 * pass over the tensors, not over every candidate.
 */
static void fill_budget(struct ptensor *pt, size_t n, double budget)
{
	size_t *up = udfs_xmalloc((n + 1) * sizeof(*up));
	double *gain = udfs_xmalloc((n + 1) * sizeof(*gain)), room = budget;

	for (size_t i = 0; i < n; i++)
		room -= pt[i].cand[pt[i].pick].bytes * pt[i].scale;
	for (size_t i = 0; i < n; i++)
		up[i] = best_upgrade(&pt[i], room, &gain[i]);
	for (;;) {
		size_t bi = n;
		double more;

		for (size_t i = 0; i < n; i++)
			if (gain[i] > 0 && (bi == n || gain[i] > gain[bi]))
				bi = i;
		if (bi == n)
			break;
		more = (pt[bi].cand[up[bi]].bytes -
			pt[bi].cand[pt[bi].pick].bytes) *
		       pt[bi].scale;
		if (more <= room) {
			pt[bi].pick = up[bi];
			room -= more;
		}
		up[bi] = best_upgrade(&pt[bi], room, &gain[bi]);
	}
	free(up);
	free(gain);
}

/* Bisect lambda (log scale) for the best choice within budget bytes. */
static int choose_budget(struct ptensor *pt, size_t n, double budget)
{
	double lo = -30, hi = 30;

	if (total_bytes(pt, n, pow(10, hi)) > budget)
		return -ERANGE;
	for (int it = 0; it < 60; it++) {
		double mid = (lo + hi) / 2;

		if (total_bytes(pt, n, pow(10, mid)) > budget)
			lo = mid;
		else
			hi = mid;
	}
	for (size_t i = 0; i < n; i++)
		pt[i].pick = pick_lambda(&pt[i], pow(10, hi));
	fill_budget(pt, n, budget);
	return 0;
}

/*
 * The smallest candidate within relative error e_t, per tensor, where a
 * tensor of less than SMALL_SHARE of the bytes of the model's largest
 * eligible tensor gets the tighter e_t = e * sqrt(share / SMALL_SHARE):
 * small tensors (output heads, routers, a last layer) cost little to keep
 * close, and are often the most sensitive (bench/FIDELITY.md, toylora).
 * Measured against the largest tensor, not the whole model: in a deep or
 * mixture-of-experts model every tensor is a small part of the whole, and
 * a rule by share of the total tightened them all (3000 equal tensors were
 * stored exactly).
 */
#define SMALL_SHARE 0.05
static void choose_max_error(struct ptensor *pt, size_t n, double e)
{
	double largest = 0;

	for (size_t i = 0; i < n; i++)
		largest = fmax(largest, pt[i].cand[0].bytes);
	for (size_t i = 0; i < n; i++) {
		struct ptensor *t = &pt[i];
		double share = largest > 0 ? t->cand[0].bytes / largest : 1;
		double et = e * sqrt(fmin(1.0, share / SMALL_SHARE));

		t->pick = 0; /* exact */
		for (size_t c = 0; c < t->n_cand; c++)
			if (!t->cand[c].c.seeded &&
			    t->cand[c].err2 <= et * et * t->norm2 &&
			    t->cand[c].bytes < t->cand[t->pick].bytes)
				t->pick = c;
	}
}

/* Write the pick of each tensor into the model's plan. */
static void apply_picks(struct add_model *am, struct ptensor *pt, size_t n,
			uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		const struct cand *c = &pt[i].cand[pt[i].pick];
		struct tensor_plan *p = &am->plan[pt[i].file][pt[i].tensor];

		p->enc = UDFS_ENC_XOR;
		memset(&p->lp, 0, sizeof(p->lp));
		memset(&p->mix, 0, sizeof(p->mix));
		if (c->exact)
			continue;
		p->enc = UDFS_ENC_ADAPTIVE;
		p->mix = c->c;
		p->mix.cols = pt[i].cols;
		p->mix.est_bytes = c->bytes;
		p->mix.est_err =
		    pt[i].norm2 > 0 ? sqrt(c->err2 / pt[i].norm2) : 0;
		p->lp.gain = 1.0f;
		p->lp.mask = c->c.seeded     ? UDFS_MASK_SEEDED
			     : c->c.rate > 0 ? UDFS_MASK_EXPLICIT
					     : UDFS_MASK_NONE;
		if (c->c.seeded) {
			const udfs_st_tensor *st =
			    &am->src->files[pt[i].file]
				 .st->tensors[pt[i].tensor];

			p->lp.gain = (float)(1.0 / (1.0 - c->c.rate));
			p->lp.seed = udfs_seeded_key(seed, st->name);
		}
		p->lp.rate = c->c.rate;
		p->lp.values = c->c.res == MIX_RES_CODES     ? UDFS_VAL_CODES
			       : c->c.res == MIX_RES_TRELLIS ? UDFS_VAL_TRELLIS
							     : UDFS_VAL_SIGN;
		p->lp.bits =
		    c->c.res == MIX_RES_CODES || c->c.res == MIX_RES_TRELLIS
			? c->c.rbits
			: 0;
		p->lp.lo = c->c.res == MIX_RES_CODES ? c->lo : 0;
		p->lp.step = c->c.res == MIX_RES_NONE ? 0 : c->step;
	}
}

/* Real pack bytes of tensor i's pick (a worker thread). */
static int measure_tensor(void *ctx, size_t i)
{
	struct plan_job *j = ctx;
	struct ptensor *t = &j->pt[i];
	const udfs_source_file *sf = &j->am->src->files[t->file];
	const udfs_st_tensor *st = &sf->st->tensors[t->tensor];
	const struct tensor_plan *p = &j->am->plan[t->file][t->tensor];
	unsigned es = udfs_dtype_size(st->dtype);
	struct mix_tensor *mt = NULL;
	int err;

	t->real = 0;
	if (p->enc != UDFS_ENC_ADAPTIVE) {
		t->real = (uint64_t)t->cand[t->pick].bytes;
		return 0;
	}
	err = udfs_mix_tensor_prepare(
	    p, st->dtype, st->nelems, udfs_source_tensor_bytes(sf, st),
	    udfs_add_base_bytes(j->g, p->base), 1, &mt);
	for (uint64_t off = 0; !err && off < st->nelems * es;
	     off += UDFS_CHUNK_BYTES) {
		uint64_t len =
		    UDFS_MIN((uint64_t)UDFS_CHUNK_BYTES, st->nelems * es - off);
		void *out = NULL;
		size_t out_len = 0;

		err =
		    udfs_mix_tensor_chunk(mt, p, st->dtype, off / es,
					  (uint32_t)(len / es), &out, &out_len);
		free(out);
		t->real += out_len;
	}
	udfs_mix_tensor_free(mt);
	return err;
}

/* The header of sf is its base file's, as the catalog will find it: the
 * file of the first tensor planned against the base (udfs(5), files). */
static bool header_shared(const udfs_source_file *sf,
			  const struct tensor_plan *plan)
{
	const udfs_file *bf = NULL;

	for (size_t k = 0; k < sf->st->n_tensors && !bf; k++)
		if (plan[k].base)
			bf = plan[k].base->file;
	return udfs_file_has_header(bf, sf->map, sf->st->data_offset);
}

/* The tensor map record of a tensor of len bytes planned as p, as the
 * catalog counts it (format/tmap.h): its head and base reference exactly,
 * the parameters when lossy and the chunk references as estimated (the
 * chunks of a lossy tensor are small: a two-byte length). */
static double record_bytes(const struct tensor_plan *p, uint64_t len,
			   bool lossy)
{
	double n = 1 + (lossy ? UDFS_LOSSY_PARAM_BYTES : 0);

	if (p->base)
		n += (double)(udfs_tmap_varint_bytes(p->base->file->ino) +
			      udfs_tmap_varint_bytes(p->base->begin));
	if (p->enc == UDFS_ENC_SAME)
		return n;
	return n +
	       (double)(UDFS_CHUNK_REF_BYTES - lossy) *
		   (double)((len + UDFS_CHUNK_BYTES - 1) / UDFS_CHUNK_BYTES);
}

/* Bytes of the model that do not depend on the choice: catalog rows as
 * udfs_catalog_model_meta_bytes() counts them (a header that is the
 * base's costs nothing; tensor map records), the pack header, and the
 * lossless planes of the tensors that are not eligible. */
static int fixed_bytes(struct add_group *g, struct add_model *am,
		       const bool *const *elig, double *out)
{
	double sum = 128 + 16;
	int err = 0;

	for (size_t i = 0; i < am->src->n_files && !err; i++) {
		const udfs_source_file *sf = &am->src->files[i];

		sum += 64 + 1;
		if (sf->st && !header_shared(sf, am->plan[i]))
			sum += (double)sf->st->data_offset;
		if (!sf->st) {
			udfs_st_tensor raw = {.dtype = UDFS_DT_U8,
					      .end = sf->size};
			double b = 0;

			const struct tensor_plan *p = &am->plan[i][0];

			sum += record_bytes(p, sf->size, false);
			if (sf->size && p->enc != UDFS_ENC_SAME)
				err = exact_bytes(
				    g, &raw, sf->map,
				    p->base ? udfs_add_base_bytes(g, p->base)
					    : NULL,
				    &b);
			sum += b;
			continue;
		}
		for (size_t k = 0; k < sf->st->n_tensors && !err; k++) {
			const udfs_st_tensor *st = &sf->st->tensors[k];
			const struct tensor_plan *p = &am->plan[i][k];
			uint64_t len = st->end - st->begin;
			double b = 0;

			sum += record_bytes(p, len, elig[i][k]);
			if (p->enc == UDFS_ENC_SAME || len == 0 || elig[i][k])
				continue;
			err = exact_bytes(
			    g, st, udfs_source_tensor_bytes(sf, st),
			    p->base ? udfs_add_base_bytes(g, p->base) : NULL,
			    &b);
			sum += b;
		}
	}
	*out = sum;
	return err;
}

/* Real pack bytes of the picks of pt, measured; each tensor's estimates
 * are rescaled by its real / estimated bytes. */
static int measure_picks(struct add_group *g, struct plan_job *job, size_t n,
			 double *real)
{
	int err = udfs_parallel_for(g->o->jobs, n, measure_tensor, job);

	*real = 0;
	for (size_t i = 0; i < n && !err; i++) {
		struct ptensor *t = &job->pt[i];

		*real += (double)t->real;
		if (t->cand[t->pick].bytes > 0 && t->real > 0)
			t->scale = (double)t->real / t->cand[t->pick].bytes;
	}
	return err;
}

/*
 * --ratio: choose within the budget, measure the real bytes, and choose
 * again with the estimates corrected, up to RATIO_PASSES times: the
 * largest choice that fits is kept (a first choice on estimates alone
 * left ~5% of the budget unused on stories260K at 25x), stopping early
 * within RATIO_SLACK of the budget. A choice over the budget shrinks
 * what the next one is given.
 */
#define RATIO_PASSES 8
#define RATIO_SLACK 0.01
static int plan_ratio(struct add_group *g, struct add_model *am,
		      struct plan_job *job, size_t n, double fixed)
{
	double source = 0, limit, target, real = 0, best = -1;
	size_t *picks = udfs_xcalloc(n + 1, sizeof(*picks));
	bool reach = true;
	int err = 0;

	for (size_t i = 0; i < am->src->n_files; i++)
		source += (double)am->src->files[i].size;
	limit = target = source / g->o->ratio - fixed;
	for (int it = 0; it < RATIO_PASSES && !err; it++) {
		reach = target > 0 && choose_budget(job->pt, n, target) == 0;
		if (!reach)
			break;
		apply_picks(am, job->pt, n, g->o->seed);
		udfs_add_progress_phase(g, am->name, "measuring", (uint64_t)it,
					RATIO_PASSES, "passes");
		err = measure_picks(g, job, n, &real);
		if (!err && real <= limit + 0.5 && real > best) {
			best = real;
			for (size_t i = 0; i < n; i++)
				picks[i] = job->pt[i].pick;
		}
		if (real <= limit + 0.5 && real >= limit * (1 - RATIO_SLACK))
			break;
		if (real > limit + 0.5 && it >= 2)
			target *= limit / real;
	}
	if (!err && best >= 0) {
		for (size_t i = 0; i < n; i++)
			job->pt[i].pick = picks[i];
		apply_picks(am, job->pt, n, g->o->seed);
	} else if (!err && !reach) {
		err = udfs_error(
		    -ERANGE,
		    "--ratio %g is out of reach for %s: its lossless part alone takes %.0f of the %.0f bytes",
		    g->o->ratio, am->name, fixed, source / g->o->ratio);
	} else if (!err) {
		err = udfs_error(
		    -ERANGE,
		    "--ratio %g: the chosen codes take %.0f bytes, more than the %.0f left for them",
		    g->o->ratio, real, limit);
	}
	free(picks);
	return err;
}

/* Which tensors keep their priced SVDs (PRICED_KEEP_BYTES): decided from
 * the shapes, in order, so the same at any job count. */
static void choose_kept_svds(const struct add_model *am, struct ptensor *pt,
			     size_t n)
{
	uint64_t held = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t b = priced_bytes(
		    &am->src->files[pt[i].file].st->tensors[pt[i].tensor]);

		pt[i].keep_svd = held + b <= PRICED_KEEP_BYTES;
		if (pt[i].keep_svd)
			held += b;
	}
}

/* The kept SVDs cut to the chosen rank, or freed where the pick has no
 * low-rank part. */
static void trim_kept_svds(struct add_model *am, const struct ptensor *pt,
			   size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct tensor_plan *p = &am->plan[pt[i].file][pt[i].tensor];

		if (!p->priced)
			continue;
		if (p->enc == UDFS_ENC_ADAPTIVE && p->mix.rank > 0) {
			udfs_mix_priced_truncate(p->priced, p->mix.rank);
			continue;
		}
		udfs_mix_priced_free(p->priced);
		p->priced = NULL;
	}
}

static int plan_model(struct add_group *g, struct add_model *am)
{
	const udfs_add_opts *o = g->o;
	const udfs_source *src = am->src;
	struct plan_job job = {.g = g, .am = am};
	bool **elig = udfs_xcalloc(src->n_files + 1, sizeof(*elig));
	size_t n = 0;
	double fixed = 0;
	int err;

	for (size_t i = 0; i < src->n_files; i++) {
		const udfs_source_file *sf = &src->files[i];

		elig[i] = udfs_xcalloc(sf->st ? sf->st->n_tensors + 1 : 1, 1);
		for (size_t k = 0; sf->st && k < sf->st->n_tensors; k++) {
			if (!udfs_lossy_eligible(o, &am->plan[i][k],
						 &sf->st->tensors[k]))
				continue;
			elig[i][k] = true;
			job.pt =
			    udfs_xrealloc(job.pt, (n + 1) * sizeof(*job.pt));
			job.pt[n++] = (struct ptensor){.file = i, .tensor = k};
		}
	}
	choose_kept_svds(am, job.pt, n);
	udfs_add_progress_phase(g, am->name, "pricing codes", 0, n, "tensors");
	err = udfs_parallel_for(o->jobs, n, price_tensor, &job);
	if (!err && o->ratio > 0)
		err = fixed_bytes(g, am, (const bool *const *)elig, &fixed);
	if (!err && o->ratio > 0) {
		err = plan_ratio(g, am, &job, n, fixed);
	} else if (!err) {
		choose_max_error(job.pt, n, o->max_error);
		apply_picks(am, job.pt, n, o->seed);
	}
	if (!err)
		trim_kept_svds(am, job.pt, n);
	for (size_t i = 0; i < n; i++) {
		const struct tensor_plan *p =
		    &am->plan[job.pt[i].file][job.pt[i].tensor];

		if (p->enc == UDFS_ENC_ADAPTIVE)
			am->lossy_elems += src->files[job.pt[i].file]
					       .st->tensors[job.pt[i].tensor]
					       .nelems;
		free(job.pt[i].cand);
	}
	for (size_t i = 0; i < src->n_files; i++)
		free(elig[i]);
	free(elig);
	free(job.pt);
	return err;
}

/* The reconstructed delta of a seeded-code tensor, as the reader will
 * see it (chunks encoded and decoded), into d (nelems floats). */
static int decoded_delta(struct add_group *g, const udfs_source_file *sf,
			 const udfs_st_tensor *st, const struct tensor_plan *p,
			 float *d)
{
	const unsigned char *cur = udfs_source_tensor_bytes(sf, st);
	const unsigned char *base = udfs_add_base_bytes(g, p->base);
	unsigned es = udfs_dtype_size(st->dtype);
	unsigned char *rec = udfs_xmalloc(UDFS_CHUNK_BYTES);
	struct mix_tensor *mt = NULL;
	int err = udfs_mix_tensor_prepare(p, st->dtype, st->nelems, cur, base,
					  1, &mt);

	for (uint64_t off = 0; !err && off < st->nelems * es;
	     off += UDFS_CHUNK_BYTES) {
		uint32_t n = (uint32_t)(UDFS_MIN((uint64_t)UDFS_CHUNK_BYTES,
						 st->nelems * es - off) /
					es);
		void *out = NULL;
		size_t out_len = 0;

		err = udfs_mix_tensor_chunk(mt, p, st->dtype, off / es, n, &out,
					    &out_len);
		if (!err)
			err = udfs_lossy_decode_chunk(&p->lp, st->dtype,
						      off / es, n, out, out_len,
						      base + off, rec);
		for (uint32_t k = 0; !err && k < n; k++)
			d[off / es + k] =
			    udfs_dtype_load_f32(st->dtype, rec, k) -
			    udfs_dtype_load_f32(st->dtype, base + off, k);
		free(out);
	}
	udfs_mix_tensor_free(mt);
	free(rec);
	return err;
}

/* The tensors of a group with seeded (UltraDelta-like) codes, whose
 * nuclear norms run in parallel, one per worker thread. */
struct seeded_job {
	struct add_group *g;
	size_t n;
	struct seeded_item {
		size_t model, file, tensor;
		double norm;
	} * it;
};

static int seeded_norm(void *ctx, size_t i)
{
	struct seeded_job *j = ctx;
	struct seeded_item *it = &j->it[i];
	struct add_model *am = &j->g->models[it->model];
	const udfs_source_file *sf = &am->src->files[it->file];
	const udfs_st_tensor *st = &sf->st->tensors[it->tensor];
	float *d = udfs_malloc_huge(st->nelems * sizeof(float) + 1);
	int err = d ? 0 : -ENOMEM;

	if (!err && udfs_interrupted)
		err = udfs_error(-EINTR, "interrupted");
	if (!err)
		err = decoded_delta(j->g, sf, st,
				    &am->plan[it->file][it->tensor], d);
	if (!err)
		err = udfs_nuclear_norm(d, st->shape[0],
					st->nelems / st->shape[0], &it->norm);
	free(d);
	return err;
}

/* Add model m's tensors with seeded codes to j. */
static void seeded_items(struct seeded_job *j, size_t m)
{
	const struct add_model *am = &j->g->models[m];

	for (size_t f = 0; f < am->src->n_files; f++) {
		const udfs_source_file *sf = &am->src->files[f];

		for (size_t k = 0; sf->st && k < sf->st->n_tensors; k++) {
			const struct tensor_plan *p = &am->plan[f][k];

			if (p->enc != UDFS_ENC_ADAPTIVE || !p->mix.seeded)
				continue;
			j->it =
			    udfs_xrealloc(j->it, (j->n + 1) * sizeof(*j->it));
			j->it[j->n++] = (struct seeded_item){
			    .model = m, .file = f, .tensor = k};
		}
	}
}

/* T[m]: the sum of the nuclear norms of the reconstructed deltas of model
 * m's tensors with seeded codes, summed in tensor order. */
static int seeded_trace_norms(struct add_group *g, double *T)
{
	struct seeded_job j = {.g = g};
	int err;

	for (size_t m = 0; m < g->n; m++)
		seeded_items(&j, m);
	udfs_add_progress_phase(g, g->models[0].name, "trace norm", 0, j.n,
				"tensors");
	udfs_blas_threads(1);
	err = udfs_parallel_for(g->o->jobs, j.n, seeded_norm, &j);
	for (size_t i = 0; i < j.n; i++)
		T[j.it[i].model] += j.it[i].norm;
	free(j.it);
	return err;
}

/*
 * A group add: UltraDelta's trace-norm factor gamma_i = T_min / T_i
 * (udfs-compress(1)) over the tensors whose residual is UltraDelta's
 * seeded, rescaled code, applied to their residual's gain.
 */
static int group_trace_norm(struct add_group *g)
{
	double *T = udfs_xcalloc(g->n, sizeof(double)), tmin = INFINITY;
	int err = seeded_trace_norms(g, T);

	for (size_t i = 0; i < g->n && !err; i++)
		if (T[i] > 0 && T[i] < tmin)
			tmin = T[i];
	for (size_t i = 0; i < g->n && !err && isfinite(tmin); i++) {
		struct add_model *am = &g->models[i];

		for (size_t f = 0; T[i] > 0 && f < am->src->n_files; f++)
			for (size_t k = 0; am->src->files[f].st &&
					   k < am->src->files[f].st->n_tensors;
			     k++)
				if (am->plan[f][k].enc == UDFS_ENC_ADAPTIVE &&
				    am->plan[f][k].mix.seeded)
					am->plan[f][k].lp.gain *=
					    (float)(tmin / T[i]);
	}
	free(T);
	return err;
}

int udfs_mix_plan_group(struct add_group *g)
{
	int err = 0;

	for (size_t i = 0; i < g->n && !err; i++) {
		double t0 = udfs_now();

		err = plan_model(g, &g->models[i]);
		g->models[i].seconds += udfs_now() - t0;
		g->models[i].target_sparsity = 0;
	}
	if (!err && g->n > 1)
		err = group_trace_norm(g);
	return err;
}

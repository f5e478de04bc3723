// SPDX-License-Identifier: MIT
/*
 * The adaptive method's tensor encoder: fits the low-rank part of each
 * chunk (a truncated SVD of the tensor rows the chunk touches, factors
 * quantized to symmetric codes), computes the residual the low-rank part
 * leaves, keeps its largest elements and quantizes them, and cuts the
 * result into composite chunks (codec/mix.c). plan_budget.c uses the same
 * functions to price candidate codes, so what it plans is what is written.
 *
 * Memory: a few float copies of the tensor, plus the factors of its
 * chunks. The SVD runs on one chunk's rows at a time (1 MiB of output).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy_i.h"
#include "codec/mix.h"
#include "codec/trellis.h"
#include "common/dtype.h"
#include "common/pool.h"
#include "common/util.h"
#include "write/add_i.h"
#include "write/linalg.h"
#include "write/mix_i.h"
#include "write/trellis.h"
#include "write/ultradelta.h"

struct mix_tensor {
	uint64_t n, cols;
	uint32_t per_chunk;	 /* elements per chunk */
	struct mix_factors *blk; /* per chunk, rank > 0 only */
	uint32_t n_blk;
	uint8_t *keep; /* residual: 1 = kept; NULL when no residual */
	/* residual codes, or sign bits (1 = negative); a trellis's path
	 * bits, those of chunk [first, ...) from codes + first on */
	uint8_t *codes;
	uint64_t kept;
	/* The low-rank part's values as decoded (n floats; NULL for rank
	 * 0), kept for the add's error figures, which would otherwise
	 * expand the factors a second time. */
	float *lr;
};

uint32_t udfs_mix_kmax(uint64_t rows, uint64_t cols, uint32_t n)
{
	uint64_t k = rows < cols ? rows : cols;

	if (k > MIX_RANK_MAX)
		k = MIX_RANK_MAX;
	if (rows + cols > 0 && k * (rows + cols) > n)
		k = n / (rows + cols);
	return (uint32_t)k;
}

int udfs_mix_block_svd(const float *d, uint64_t cols, uint64_t first,
		       uint32_t n, uint32_t kmax, struct mix_svd *b)
{
	uint64_t rows = udfs_lowrank_rows(cols, first, n);
	uint64_t kk = rows < cols ? rows : cols;
	float *u = NULL, *s = NULL, *v = NULL;
	int err;

	memset(b, 0, sizeof(*b));
	b->rows = rows;
	b->cols = cols;
	if (kmax == 0)
		return 0;
	if (kk > kmax)
		kk = kmax;
	u = malloc(rows * kk * sizeof(float) + 1);
	s = malloc(kk * sizeof(float) + 1);
	v = malloc(cols * kk * sizeof(float) + 1);
	if (!u || !s || !v) {
		err = -ENOMEM;
		goto out;
	}
	err = udfs_svd_top(d + (first / cols) * cols, rows, cols, kk, u, s, v);
	if (err)
		goto out;
	/* U and V absorb sqrt(s) each. */
	b->k = (uint32_t)kk;
	b->u = udfs_xmalloc(rows * b->k * sizeof(float) + 1);
	b->v = udfs_xmalloc(cols * b->k * sizeof(float) + 1);
	for (uint32_t c = 0; c < b->k; c++) {
		float r = sqrtf(s[c] > 0 ? s[c] : 0);

		for (uint64_t i = 0; i < rows; i++)
			b->u[i * b->k + c] = u[i * kk + c] * r;
		for (uint64_t j = 0; j < cols; j++)
			b->v[j * b->k + c] = v[j * kk + c] * r;
	}
out:
	free(u);
	free(s);
	free(v);
	return err;
}

void udfs_mix_svd_free(struct mix_svd *b)
{
	free(b->u);
	free(b->v);
	memset(b, 0, sizeof(*b));
}

/* The first k columns of the n x stride matrix x, which is freed. */
static float *first_cols(float *x, uint64_t n, uint32_t stride, uint32_t k)
{
	float *y = udfs_xmalloc(n * k * sizeof(float) + 1);

	for (uint64_t i = 0; i < n; i++)
		memcpy(y + i * k, x + i * stride, k * sizeof(float));
	free(x);
	return y;
}

void udfs_mix_priced_truncate(struct mix_priced *pr, uint32_t k)
{
	for (uint32_t i = 0; i < pr->n_sel; i++) {
		struct mix_svd *b = &pr->sv[i];

		if (b->k <= k)
			continue;
		b->u = first_cols(b->u, b->rows, b->k, k);
		b->v = first_cols(b->v, b->cols, b->k, k);
		b->k = k;
	}
}

void udfs_mix_priced_free(struct mix_priced *pr)
{
	for (uint32_t i = 0; pr && i < pr->n_sel; i++)
		udfs_mix_svd_free(&pr->sv[i]);
	free(pr);
}

/* The planner's SVD of chunk b, or NULL. */
static const struct mix_svd *priced_svd(const struct mix_priced *pr, uint32_t b)
{
	for (uint32_t i = 0; pr && i < pr->n_sel; i++)
		if (pr->sel[i] == b)
			return &pr->sv[i];
	return NULL;
}

/* The codes of x[0, 8) at scales s[0, 8) > 0 as quant_factor's loop
 * makes them, with no branch and no libm call, which -O2 vectorizes: the
 * quotient clamped to [-m, m] (NaN to -m, where lrintf's conversion
 * leaves it), then rounded as lrintf does, by adding and taking away
 * 1.5 * 2^23. */
static void quant8(const float *restrict x, const float *restrict s, int m,
		   uint8_t *restrict codes)
{
	const float magic = 0x1.8p23f, fm = (float)m;

	for (int j = 0; j < 8; j++) {
		float q = x[j] / s[j];

		q = q > -fm ? q : -fm;
		q = q < fm ? q : fm;
		codes[j] = (uint8_t)(int)((q + magic) - magic + fm);
	}
}

/* The code of x at scale s, as lrintf rounds; 0 takes m. */
static uint8_t quant1(float x, float s, int m)
{
	long q = s > 0 ? lrintf(x / s) : 0;

	q = q < -m ? -m : q > m ? m : q;
	return (uint8_t)(q + m);
}

/* Codes and per-column scales of the first k columns of an n x stride
 * factor: symmetric, scale = max |x| / m. Row by row, as the factor lies
 * in memory; the same operations per element as column by column. */
static void quant_factor(const float *x, uint64_t n, uint32_t stride,
			 uint32_t k, uint32_t bits, uint8_t *codes,
			 float *scale)
{
	int m = (1 << (bits - 1)) - 1;
	bool whole[MIX_RANK_MAX / 8 + 1];

	memset(whole, 1, sizeof(whole));
	for (uint32_t c = 0; c < k; c++)
		scale[c] = 0.0f; /* the largest |x| until the end */
	for (uint64_t i = 0; i < n; i++)
		for (uint32_t c = 0; c < k; c++) {
			float a = fabsf(x[i * stride + c]);

			/* fmaxf without the libm call: NaN leaves it */
			scale[c] = a > scale[c] ? a : scale[c];
		}
	for (uint32_t c = 0; c < k; c++)
		scale[c] = scale[c] > 0 ? scale[c] / (float)m : 0.0f;
	/* groups of 8 columns of nonzero scales go through quant8 */
	for (uint32_t c = 0; c < k; c++)
		if (!(scale[c] > 0))
			whole[c / 8] = false;
	for (uint64_t i = 0; i < n; i++)
		for (uint32_t c = 0; c < k; c += 8) {
			const float *xi = x + i * stride + c;
			uint32_t w = UDFS_MIN(8, k - c);

			if (w == 8 && whole[c / 8]) {
				quant8(xi, scale + c, m, codes + i * k + c);
				continue;
			}
			for (uint32_t t = 0; t < w; t++)
				codes[i * k + c + t] =
				    quant1(xi[t], scale[c + t], m);
		}
}

void udfs_mix_factors_make(const struct mix_svd *b, uint32_t k, uint32_t bits,
			   struct mix_factors *f)
{
	f->k = k;
	f->bits = bits;
	f->rows = b->rows;
	f->cols = b->cols;
	f->uc = udfs_xmalloc(b->rows * k + 1);
	f->vc = udfs_xmalloc(b->cols * k + 1);
	f->us = udfs_xmalloc(k * sizeof(float) + 1);
	f->vs = udfs_xmalloc(k * sizeof(float) + 1);
	quant_factor(b->u, b->rows, b->k, k, bits, f->uc, f->us);
	quant_factor(b->v, b->cols, b->k, k, bits, f->vc, f->vs);
}

void udfs_mix_factors_dequant(const struct mix_factors *f, float *uf, float *vf)
{
	udfs_lowrank_dequant(f->uc, f->rows, f->k, f->bits, f->us, uf);
	udfs_lowrank_dequant(f->vc, f->cols, f->k, f->bits, f->vs, vf);
}

void udfs_mix_factors_add(const struct mix_factors *f, uint64_t first,
			  uint32_t n, float *acc)
{
	float *uf = udfs_xmalloc(f->rows * f->k * sizeof(float) + 1);
	float *vf = udfs_xmalloc(f->cols * f->k * sizeof(float) + 1);
	float *vt = udfs_xmalloc(f->cols * f->k * sizeof(float) + 1);

	udfs_mix_factors_dequant(f, uf, vf);
	for (uint64_t j = 0; j < f->cols; j++)
		for (uint32_t c = 0; c < f->k; c++)
			vt[c * f->cols + j] = vf[j * f->k + c];
	udfs_lowrank_expand_t(uf, vt, f->k, f->cols, first, n, acc);
	free(uf);
	free(vf);
	free(vt);
}

void udfs_mix_factors_free(struct mix_factors *f)
{
	free(f->uc);
	free(f->vc);
	free(f->us);
	free(f->vs);
	memset(f, 0, sizeof(*f));
}

/* One chunk's low-rank part, on a worker thread of fit_lowrank. */
struct fit_job {
	struct mix_tensor *mt;
	const struct mix_code *c;
	const struct mix_priced *pr;
	const float *d;
	float *l;
};

static int fit_block(void *ctx, size_t b)
{
	struct fit_job *j = ctx;
	struct mix_tensor *mt = j->mt;
	uint64_t first = (uint64_t)b * mt->per_chunk;
	uint32_t n = (uint32_t)UDFS_MIN(mt->per_chunk, mt->n - first);
	const struct mix_svd *priced;
	struct mix_svd sv;
	uint32_t k =
	    udfs_mix_kmax(udfs_lowrank_rows(mt->cols, first, n), mt->cols, n);
	int err;

	if (udfs_interrupted)
		return udfs_error(-EINTR, "interrupted");
	if (k > j->c->rank)
		k = j->c->rank;
	if (k == 0)
		return 0; /* a sliver of a chunk: residual only */
	priced = priced_svd(j->pr, (uint32_t)b);
	if (priced && priced->k >= k) {
		udfs_mix_factors_make(priced, k, j->c->fbits, &mt->blk[b]);
		udfs_mix_factors_add(&mt->blk[b], first, n, j->l + first);
		return 0;
	}
	err = udfs_mix_block_svd(j->d, mt->cols, first, n, k, &sv);
	if (!err) {
		udfs_mix_factors_make(&sv, sv.k, j->c->fbits, &mt->blk[b]);
		udfs_mix_factors_add(&mt->blk[b], first, n, j->l + first);
	}
	udfs_mix_svd_free(&sv);
	return err;
}

/* Low-rank part of every chunk into mt->blk, and its values into l: the
 * chunks on up to `jobs` threads, each SVD on one (the same factors at
 * any count); a chunk the planner priced takes its SVD from pr. */
static int fit_lowrank(struct mix_tensor *mt, const struct mix_code *c,
		       const struct mix_priced *pr, const float *d, float *l,
		       int jobs)
{
	struct fit_job j = {.mt = mt, .c = c, .pr = pr, .d = d, .l = l};

	mt->blk = udfs_xcalloc(mt->n_blk, sizeof(*mt->blk));
	return udfs_parallel_for(jobs, mt->n_blk, fit_block, &j);
}

uint8_t udfs_mix_quant(float x, float lo, float step, unsigned bits)
{
	float q = rintf((x - lo) / step);
	float top = (float)((1u << bits) - 1);

	return (uint8_t)(q < 0 ? 0 : q > top ? top : q);
}

/* r[i] -= l[i], 64 at a time: a fixed count, which the compiler
 * vectorizes at -O2. */
static void subtract(float *restrict r, const float *restrict l, uint64_t n)
{
	uint64_t i = 0;

	for (; i + 64 <= n; i += 64)
		for (int j = 0; j < 64; j++)
			r[i + j] -= l[i + j];
	for (; i < n; i++)
		r[i] -= l[i];
}

/*
 * With no branch and no libm call, so that -O2 vectorizes it: the quotient
 * is clamped to [0, top] first (NaN to 0, as the conversion of
 * udfs_mix_quant leaves it), which rint leaves where it was since both
 * ends are integers, then rounded to the nearest even integer by adding
 * and taking away 1.5 * 2^23 (exact below 2^22), as rintf does.
 */
void udfs_mix_quant64(const float *restrict r, float lo, float step,
		      unsigned bits, uint8_t *restrict codes)
{
	const float magic = 0x1.8p23f, top = (float)((1u << bits) - 1);

	for (int i = 0; i < 64; i++) {
		float q = (r[i] - lo) / step;

		q = q > 0 ? q : 0;
		q = q < top ? q : top;
		codes[i] = (uint8_t)(int)((q + magic) - magic);
	}
}

/* The residual's codes, or its sign bits (1 = negative), of the delta d
 * less the low-rank values l (NULL: none), 64 at a time: the residual is
 * never stored, which spares a pass over memory. */
static void residual_codes(const float *d, const float *l, uint64_t n,
			   uint8_t res, const udfs_lossy_params *lp,
			   uint8_t *codes)
{
	uint64_t i = 0;
	float r[64];

	for (; i + 64 <= n; i += 64) {
		for (int j = 0; j < 64; j++)
			r[j] = l ? d[i + j] - l[i + j] : d[i + j];
		if (res == MIX_RES_SIGN)
			for (int j = 0; j < 64; j++)
				codes[i + j] = r[j] < 0;
		else
			udfs_mix_quant64(r, lp->lo, lp->step, lp->bits,
					 codes + i);
	}
	for (; i < n; i++) {
		float x = l ? d[i] - l[i] : d[i];

		codes[i] = res == MIX_RES_SIGN
			       ? x < 0
			       : udfs_mix_quant(x, lp->lo, lp->step, lp->bits);
	}
}

/* The trellis path of each chunk's residual, on a worker thread. */
struct path_job {
	const struct mix_tensor *mt;
	const struct mix_code *c;
	const float *r; /* the residual */
	uint8_t *bits;
};

static int path_block(void *ctx, size_t b)
{
	struct path_job *j = ctx;
	uint64_t first = (uint64_t)b * j->mt->per_chunk;
	uint32_t n = (uint32_t)UDFS_MIN(j->mt->per_chunk, j->mt->n - first);

	if (udfs_interrupted)
		return udfs_error(-EINTR, "interrupted");
	return udfs_trellis_search(j->r + first, n, j->c->rbits, j->c->search,
				   j->bits + first);
}

/* A trellis residual of every element: the chunks' paths (each starts
 * at state 0) on up to `jobs` threads. */
static int trellis_paths(struct mix_tensor *mt, const struct mix_code *c,
			 float *d, int jobs)
{
	struct path_job j = {.mt = mt, .c = c, .r = d, .bits = mt->codes};

	if (mt->lr)
		subtract(d, mt->lr, mt->n);
	memset(mt->keep, 1, mt->n);
	mt->kept = mt->n;
	return udfs_parallel_for(jobs, mt->n_blk, path_block, &j);
}

int udfs_mix_tensor_prepare(const struct tensor_plan *p, int dtype,
			    uint64_t nelems, const void *cur, const void *base,
			    int jobs, struct mix_tensor **out)
{
	const struct mix_code *c = &p->mix;
	struct mix_tensor *mt = udfs_xcalloc(1, sizeof(*mt));
	float *d = udfs_xmalloc(nelems * sizeof(float) + 1);
	const float *lr; /* the low-rank values the residual leaves out */
	bool magnitude = !c->seeded && c->rate > 0; /* a mask of the largest */
	int64_t kept;
	int err = 0;

	if (c->rank && c->cols && nelems % c->cols) { /* SVDs read whole rows */
		free(d);
		free(mt);
		return udfs_error(
		    -EINVAL,
		    "low-rank code: %llu elements are not rows of %llu",
		    (unsigned long long)nelems, (unsigned long long)c->cols);
	}
	mt->n = nelems;
	mt->cols = c->cols ? c->cols : 1;
	mt->per_chunk = UDFS_CHUNK_BYTES / udfs_dtype_size(dtype);
	mt->n_blk = (uint32_t)((nelems + mt->per_chunk - 1) / mt->per_chunk);
	udfs_add_delta_range(dtype, nelems, cur, base, d);
	if (c->rank) {
		mt->lr = udfs_xcalloc(nelems + 1, sizeof(float));
		err = fit_lowrank(mt, c, p->priced, d, mt->lr, jobs);
	}
	lr = mt->lr;
	if (err || c->res == MIX_RES_NONE)
		goto out;
	if (mt->lr && magnitude) { /* the mask needs the residual itself */
		subtract(d, mt->lr, nelems);
		lr = NULL;
	}
	mt->keep = udfs_xmalloc(nelems + 1);
	mt->codes = udfs_xmalloc(nelems + 1);
	if (c->res == MIX_RES_TRELLIS) {
		err = trellis_paths(mt, c, d, jobs);
		goto out;
	}
	if (c->seeded) {
		kept =
		    udfs_ud_prune_seeded(nelems, c->rate, p->lp.seed, mt->keep);
		if (kept < 0) {
			err = (int)kept;
			goto out;
		}
	} else if (magnitude) {
		kept = udfs_ud_prune_magnitude(d, nelems, c->rate, mt->keep);
		if (kept < 0) {
			err = (int)kept;
			goto out;
		}
	} else {
		memset(mt->keep, 1, nelems);
		kept = (int64_t)nelems;
	}
	mt->kept = (uint64_t)kept;
	residual_codes(d, lr, nelems, c->res, &p->lp, mt->codes);
out:
	free(d);
	if (err) {
		udfs_mix_tensor_free(mt);
		return err;
	}
	*out = mt;
	return 0;
}

/* The version 1 chunk of the residual of elements [first, first + n). */
static int residual_chunk(const struct mix_tensor *mt,
			  const struct tensor_plan *p, int dtype,
			  uint64_t first, uint32_t n, void **out,
			  size_t *out_len)
{
	uint32_t *kept, k = 0;
	uint8_t *vals;
	int err;

	if (p->lp.mask == UDFS_MASK_NONE) /* all kept: the codes as they are */
		return udfs_lossy_encode_chunk(&p->lp, dtype, first, n, NULL, n,
					       mt->codes + first, out, out_len);
	kept = udfs_xmalloc(((size_t)n + 1) * sizeof(uint32_t));
	vals = udfs_xmalloc((size_t)n + 1);
	for (uint32_t i = 0; i < n; i++) {
		if (!mt->keep[first + i])
			continue;
		vals[k] = mt->codes[first + i];
		kept[k++] = i;
	}
	err = udfs_lossy_encode_chunk(&p->lp, dtype, first, n, kept, k, vals,
				      out, out_len);
	free(kept);
	free(vals);
	return err;
}

int udfs_mix_tensor_chunk(const struct mix_tensor *mt,
			  const struct tensor_plan *p, int dtype,
			  uint64_t first, uint32_t n, void **out,
			  size_t *out_len)
{
	const struct mix_factors *f =
	    mt->blk ? &mt->blk[first / mt->per_chunk] : NULL;
	udfs_lowrank lr;
	void *res = NULL;
	size_t res_len = 0;
	int err = 0;

	if (f && f->k) {
		lr = (udfs_lowrank){.k = f->k,
				    .bits = f->bits,
				    .cols = f->cols,
				    .u_codes = f->uc,
				    .v_codes = f->vc,
				    .u_scale = f->us,
				    .v_scale = f->vs};
	}
	if (mt->keep)
		err = residual_chunk(mt, p, dtype, first, n, &res, &res_len);
	if (!err)
		err = udfs_mix_encode_chunk(f && f->k ? &lr : NULL, first, n,
					    res, res_len, out, out_len);
	free(res);
	return err;
}

/* The sum a reader forms for elements [first, first + n) of mt before
 * rounding onto the base, in the decoder's order: the low-rank part,
 * then the residual's values. */
static void recon_sum(const struct mix_tensor *mt, const struct tensor_plan *p,
		      uint64_t first, uint32_t n, float *acc)
{
	const struct mix_factors *f =
	    mt->blk ? &mt->blk[first / mt->per_chunk] : NULL;
	const float *lr = f && f->k ? mt->lr + first : NULL;
	const uint8_t *codes = mt->keep ? mt->codes + first : NULL;
	float lut[UDFS_TRELLIS_STATES * UDFS_TRELLIS_VMAX];

	if (codes && p->lp.values == UDFS_VAL_TRELLIS) { /* every element */
		udfs_trellis_lut(&p->lp, lut);
		udfs_trellis_expand(lut, p->lp.bits, codes, n, acc);
		for (uint32_t i = 0; lr && i < n; i++)
			acc[i] = lr[i] + acc[i];
		return;
	}
	if (codes)
		udfs_lossy_value_lut(&p->lp, lut);
	if (codes && p->lp.mask == UDFS_MASK_NONE &&
	    p->lp.values == UDFS_VAL_CODES) { /* all kept: one pass */
		for (uint32_t i = 0; i < n; i++)
			acc[i] = (lr ? lr[i] : 0.0f) + lut[codes[i]];
		return;
	}
	if (lr)
		memcpy(acc, lr, (size_t)n * sizeof(float));
	else
		memset(acc, 0, (size_t)n * sizeof(float));
	for (uint32_t i = 0; codes && i < n; i++)
		if (mt->keep[first + i])
			acc[i] +=
			    lut[p->lp.values == UDFS_VAL_CODES ? codes[i]
							       : codes[i] & 1];
}

void udfs_mix_tensor_recon(const struct mix_tensor *mt,
			   const struct tensor_plan *p, int dtype,
			   uint64_t first, uint32_t n, const void *base,
			   void *rec)
{
	float *acc = udfs_xmalloc(((size_t)n + 1) * sizeof(float));

	/* one rounding onto the base; acc == 0 keeps the base bits */
	recon_sum(mt, p, first, n, acc);
	memcpy(rec, base, (size_t)n * udfs_dtype_size(dtype));
	if (dtype == UDFS_DT_BF16)
		udfs_mix_round_bf16(rec, acc, n);
	for (uint32_t i = 0; dtype != UDFS_DT_BF16 && i < n; i++) {
		float b;

		if (acc[i] == 0.0f)
			continue;
		b = udfs_dtype_load_f32(dtype, base, i);
		udfs_dtype_store_f32(dtype, rec, i,
				     udfs_lossy_finite_sum(dtype, b, acc[i]));
	}
	free(acc);
}

uint64_t udfs_mix_tensor_kept(const struct mix_tensor *mt)
{
	return mt->blk ? mt->n : mt->kept;
}

void udfs_mix_tensor_free(struct mix_tensor *mt)
{
	if (!mt)
		return;
	for (uint32_t b = 0; mt->blk && b < mt->n_blk; b++)
		udfs_mix_factors_free(&mt->blk[b]);
	free(mt->blk);
	free(mt->keep);
	free(mt->codes);
	free(mt->lr);
	free(mt);
}

void udfs_mix_code_name(const struct mix_code *c, const udfs_lossy_params *lp,
			char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	if (c->rank)
		at += (size_t)snprintf(buf, len, "lr%ux%u", c->rank, c->fbits);
	if (c->res != MIX_RES_NONE && at < len)
		at += (size_t)snprintf(buf + at, len - at, "%s%s%u",
				       at ? "+" : "",
				       c->res == MIX_RES_SIGN	   ? "sign"
				       : c->res == MIX_RES_TRELLIS ? "tcq"
								   : "q",
				       c->res == MIX_RES_SIGN ? 1u : lp->bits);
	if (c->res != MIX_RES_NONE && c->rate > 0 && at < len)
		at += (size_t)snprintf(buf + at, len - at, "@%s%.0f%%",
				       c->seeded ? "rand" : "top",
				       100.0 * (1.0 - c->rate));
	if (at == 0)
		snprintf(buf, len, "zero");
}

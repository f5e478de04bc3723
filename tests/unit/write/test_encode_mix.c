// SPDX-License-Identifier: MIT
/*
 * Unit tests of the adaptive method's tensor encoder (src/write/encode_mix.c):
 * a chunk the planner priced takes its factors from the planner's SVD
 * (struct mix_priced; a made-up one here, so that a recomputed SVD would
 * show), at any job count, while the other chunks compute theirs; cutting
 * the SVDs to the chosen rank leaves the factors of that rank bit for bit
 * as they were; the residual's codes (computed 64 at a time, vectorized)
 * are udfs_mix_quant's for every element: ties, both ends, beyond them,
 * infinities and NaN; a trellis residual's chunks decode to exactly the
 * encoder's reconstruction, at any job count.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec/lossy.h"
#include "codec/lossy_i.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "write/add_i.h"
#include "write/mix_i.h"

enum { COLS = 512, ROWS = 1024, RANK = 4, FBITS = 8 };
#define N ((uint64_t)ROWS * COLS)
#define PER ((uint64_t)UDFS_CHUNK_BYTES / 4) /* F32: 512 rows a chunk */

static uint64_t rs = 0x243f6a8885a308d3ULL;

static float unif(void)
{
	return (float)(udfs_splitmix64(&rs) >> 40) / 16777216.0f - 0.5f;
}

/* A delta of rank 3 plus noise in d (N floats). */
static void make_delta(float *d)
{
	float u[ROWS][3], v[COLS][3];

	for (int i = 0; i < ROWS; i++)
		for (int c = 0; c < 3; c++)
			u[i][c] = unif();
	for (int j = 0; j < COLS; j++)
		for (int c = 0; c < 3; c++)
			v[j][c] = unif();
	for (uint64_t e = 0; e < N; e++)
		d[e] = (u[e / COLS][0] * v[e % COLS][0] +
			u[e / COLS][1] * v[e % COLS][1] +
			u[e / COLS][2] * v[e % COLS][2]) *
			   0.01f +
		       unif() * 0.0001f;
}

/* The reconstruction of chunk b from factors f alone (a code with no
 * residual), as udfs_mix_tensor_recon rounds it onto base. */
static void expect_chunk(const struct mix_factors *f, uint32_t b,
			 const float *base, float *out)
{
	float *acc = calloc(PER, sizeof(float));

	udfs_mix_factors_add(f, b * PER, (uint32_t)PER, acc);
	for (uint64_t i = 0; i < PER; i++)
		out[i] = acc[i] == 0.0f
			     ? base[b * PER + i]
			     : udfs_lossy_finite_sum(UDFS_DT_F32,
						     base[b * PER + i], acc[i]);
	free(acc);
}

/* Chunk b of the tensor prepared with plan p on jobs threads, rebuilt. */
static void recon_chunk(const struct tensor_plan *p, const float *cur,
			const float *base, uint32_t b, int jobs, float *out)
{
	struct mix_tensor *mt = NULL;

	CHECK_EQ_INT(
	    udfs_mix_tensor_prepare(p, UDFS_DT_F32, N, cur, base, jobs, &mt),
	    0);
	if (mt)
		udfs_mix_tensor_recon(mt, p, UDFS_DT_F32, b * PER,
				      (uint32_t)PER, base + b * PER, out);
	udfs_mix_tensor_free(mt);
}

static bool factors_equal(const struct mix_factors *a,
			  const struct mix_factors *b)
{
	return a->k == b->k && a->rows == b->rows && a->cols == b->cols &&
	       memcmp(a->uc, b->uc, a->rows * a->k) == 0 &&
	       memcmp(a->vc, b->vc, a->cols * a->k) == 0 &&
	       memcmp(a->us, b->us, a->k * sizeof(float)) == 0 &&
	       memcmp(a->vs, b->vs, a->k * sizeof(float)) == 0;
}

static void test_priced_chunk_used(void)
{
	float *dd = malloc(N * sizeof(float));
	float *d = malloc(N * sizeof(float)),
	      *other = malloc(N * sizeof(float));
	float *base = calloc(N, sizeof(float)),
	      *cur = malloc(N * sizeof(float));
	float *got = malloc(PER * sizeof(float)),
	      *want = malloc(PER * sizeof(float));
	struct mix_priced *pr = calloc(1, sizeof(*pr));
	struct tensor_plan p = {.enc = UDFS_ENC_ADAPTIVE};
	struct mix_svd own;
	struct mix_factors f;

	make_delta(d);
	make_delta(other); /* another delta: its SVD is not the tensor's */
	for (uint64_t e = 0; e < N; e++) {
		base[e] = unif() * 0.04f;
		cur[e] = base[e] + d[e];
		dd[e] = cur[e] - base[e]; /* the delta as the encoder sees it */
	}
	/* chunk 1 priced, on the other delta's SVD of rank 16 */
	pr->n_sel = 1;
	pr->sel[0] = 1;
	CHECK_EQ_INT(
	    udfs_mix_block_svd(other, COLS, PER, (uint32_t)PER, 16, &pr->sv[0]),
	    0);
	p.mix = (struct mix_code){
	    .cols = COLS, .rank = RANK, .fbits = FBITS, .res = MIX_RES_NONE};
	p.priced = pr;
	for (int jobs = 1; jobs <= 2; jobs++) {
		udfs_mix_factors_make(&pr->sv[0], RANK, FBITS, &f);
		expect_chunk(&f, 1, base, want);
		udfs_mix_factors_free(&f);
		recon_chunk(&p, cur, base, 1, jobs, got);
		CHECK(memcmp(got, want, PER * sizeof(float)) == 0);
		/* chunk 0 was not priced: its own SVD, at the code's rank */
		CHECK_EQ_INT(
		    udfs_mix_block_svd(dd, COLS, 0, (uint32_t)PER, RANK, &own),
		    0);
		udfs_mix_factors_make(&own, own.k, FBITS, &f);
		expect_chunk(&f, 0, base, want);
		udfs_mix_factors_free(&f);
		udfs_mix_svd_free(&own);
		recon_chunk(&p, cur, base, 0, jobs, got);
		CHECK(memcmp(got, want, PER * sizeof(float)) == 0);
	}
	udfs_mix_priced_free(pr);
	free(d);
	free(other);
	free(dd);
	free(base);
	free(cur);
	free(got);
	free(want);
}

static void test_truncate(void)
{
	float *d = malloc(N * sizeof(float));
	struct mix_priced *pr = calloc(1, sizeof(*pr));
	struct mix_factors full[2], cut[2];

	make_delta(d);
	pr->n_sel = 2;
	for (uint32_t i = 0; i < 2; i++) {
		pr->sel[i] = i;
		CHECK_EQ_INT(udfs_mix_block_svd(d, COLS, i * PER, (uint32_t)PER,
						32, &pr->sv[i]),
			     0);
		udfs_mix_factors_make(&pr->sv[i], 8, FBITS, &full[i]);
	}
	udfs_mix_priced_truncate(pr, 8);
	for (uint32_t i = 0; i < 2; i++) {
		CHECK_EQ_INT((int)pr->sv[i].k, 8);
		udfs_mix_factors_make(&pr->sv[i], 8, FBITS, &cut[i]);
		CHECK(factors_equal(&full[i], &cut[i]));
		udfs_mix_factors_free(&full[i]);
		udfs_mix_factors_free(&cut[i]);
	}
	/* a rank above what is held leaves it as it is */
	udfs_mix_priced_truncate(pr, 16);
	CHECK_EQ_INT((int)pr->sv[0].k, 8);
	udfs_mix_priced_free(pr);
	udfs_mix_priced_free(NULL);
	free(d);
}

/* The residual codes of cur (m elements, rows of 100, a zero base) under
 * a code of the given rank: each must be udfs_mix_quant's of the delta
 * less the low-rank value, which a code of the same rank with no residual
 * rebuilds. */
static void check_codes(uint8_t rank, const float *cur, int m)
{
	enum { BITS = 4 };
	const float lo = -0.3f, step = 0.04f;
	float *base = calloc(m, sizeof(float)),
	      *got = malloc(m * sizeof(float));
	float *lr = malloc(m * sizeof(float)), lut[256];
	struct tensor_plan p = {.enc = UDFS_ENC_ADAPTIVE}, q;
	struct mix_tensor *mt = NULL, *mq = NULL;

	p.mix = (struct mix_code){.cols = 100,
				  .rank = rank,
				  .fbits = 8,
				  .res = MIX_RES_CODES,
				  .rbits = BITS};
	p.lp = (udfs_lossy_params){.mask = UDFS_MASK_NONE,
				   .values = UDFS_VAL_CODES,
				   .bits = BITS,
				   .lo = lo,
				   .step = step,
				   .gain = 1.0f};
	q = p;
	q.mix.res = MIX_RES_NONE;
	CHECK_EQ_INT(udfs_mix_tensor_prepare(&q, UDFS_DT_F32, (uint64_t)m, cur,
					     base, 1, &mq),
		     0);
	CHECK_EQ_INT(udfs_mix_tensor_prepare(&p, UDFS_DT_F32, (uint64_t)m, cur,
					     base, 1, &mt),
		     0);
	udfs_lossy_value_lut(&p.lp, lut);
	if (mt && mq) {
		udfs_mix_tensor_recon(mq, &q, UDFS_DT_F32, 0, (uint32_t)m, base,
				      lr);
		udfs_mix_tensor_recon(mt, &p, UDFS_DT_F32, 0, (uint32_t)m, base,
				      got);
	}
	for (int i = 0; mt && mq && i < m; i++) {
		float v =
		    lr[i] + lut[udfs_mix_quant(cur[i] - lr[i], lo, step, BITS)];

		v = v == 0.0f ? 0.0f : udfs_lossy_finite_sum(UDFS_DT_F32, 0, v);
		CHECK(memcmp(&got[i], &v, sizeof(v)) == 0);
	}
	udfs_mix_tensor_free(mt);
	udfs_mix_tensor_free(mq);
	free(base);
	free(got);
	free(lr);
}

static void test_residual_codes(void)
{
	enum { M = 1000 }; /* not a multiple of 64: a tail too */
	const float lo = -0.3f, step = 0.04f;
	float *cur = malloc(M * sizeof(float));

	for (int i = 0; i < M; i++) /* half-way points between codes, and
				     * values from far below the first level
				     * to far above the last */
		cur[i] = i % 3 ? lo + step * ((float)(i % 50) / 2 - 4)
			       : lo + step * 24 * unif() * 2;
	check_codes(2, cur, M); /* less a low-rank part */
	cur[7] = INFINITY;
	cur[8] = -INFINITY;
	cur[9] = NAN;
	check_codes(0, cur, M);
	free(cur);
}

/*
 * A trellis residual (after a low-rank part of rank `rank`), on a tensor
 * of several chunks and a tail in dtype: each chunk as written decodes to
 * exactly what udfs_mix_tensor_recon computes, at one job and at three,
 * and the residual's error is what a 1/v-bit trellis code leaves.
 */
static void check_trellis(int dtype, uint8_t rank, uint8_t v)
{
	unsigned es = udfs_dtype_size(dtype);
	/* whole rows of 256, as a tensor's are; the tail a part chunk */
	uint64_t per = UDFS_CHUNK_BYTES / es, n = 2 * per + 3 * 256;
	uint8_t *cur = malloc(n * es), *base = malloc(n * es);
	uint8_t *want = malloc(per * es), *got = malloc(per * es);
	struct tensor_plan p = {.enc = UDFS_ENC_ADAPTIVE};
	struct mix_tensor *mt = NULL, *m3 = NULL;
	double e2 = 0, d2 = 0;

	for (uint64_t i = 0; i < n; i++) {
		float b = unif() * 0.1f, d = unif() * 0.01f;

		udfs_dtype_store_f32(dtype, base, i, b);
		udfs_dtype_store_f32(dtype, cur, i, b + d);
	}
	p.mix = (struct mix_code){.cols = 256,
				  .rank = rank,
				  .fbits = 8,
				  .res = MIX_RES_TRELLIS,
				  .rbits = v,
				  .search = 0.0029f * 0.9f};
	p.lp = (udfs_lossy_params){.mask = UDFS_MASK_NONE,
				   .values = UDFS_VAL_TRELLIS,
				   .bits = v,
				   .step = 0.0029f * 0.9f,
				   .gain = 1.0f};
	CHECK_EQ_INT(udfs_mix_tensor_prepare(&p, dtype, n, cur, base, 1, &mt),
		     0);
	CHECK_EQ_INT(udfs_mix_tensor_prepare(&p, dtype, n, cur, base, 3, &m3),
		     0);
	for (uint64_t first = 0; mt && m3 && first < n; first += per) {
		uint32_t k = (uint32_t)(n - first < per ? n - first : per);
		void *c1 = NULL, *c3 = NULL;
		size_t l1 = 0, l3 = 0;

		CHECK_EQ_INT(
		    udfs_mix_tensor_chunk(mt, &p, dtype, first, k, &c1, &l1),
		    0);
		CHECK_EQ_INT(
		    udfs_mix_tensor_chunk(m3, &p, dtype, first, k, &c3, &l3),
		    0);
		CHECK(l1 == l3 && c1 && c3 && memcmp(c1, c3, l1) == 0);
		/* one path bit per v values, and a few bytes of headers */
		CHECK(rank || l1 <= (k + v - 1) / v / 8 + 16);
		udfs_mix_tensor_recon(mt, &p, dtype, first, k,
				      base + first * es, want);
		CHECK_EQ_INT(udfs_lossy_decode_chunk(&p.lp, dtype, first, k, c1,
						     l1, base + first * es,
						     got),
			     0);
		CHECK(memcmp(want, got, (size_t)k * es) == 0);
		for (uint32_t i = 0; i < k; i++) {
			float w = udfs_dtype_load_f32(dtype, cur, first + i);
			float g = udfs_dtype_load_f32(dtype, got, i);
			float b = udfs_dtype_load_f32(dtype, base, first + i);

			e2 += (double)(g - w) * (g - w);
			d2 += (double)(w - b) * (w - b);
		}
		free(c1);
		free(c3);
	}
	/* a 1/v-bit code of Gaussian-like values: well below the delta */
	CHECK(e2 < (v == 1 ? 0.45 : 0.85) * d2);
	udfs_mix_tensor_free(mt);
	udfs_mix_tensor_free(m3);
	free(cur);
	free(base);
	free(want);
	free(got);
}

static void test_trellis(void)
{
	check_trellis(UDFS_DT_F32, 0, 1);
	check_trellis(UDFS_DT_BF16, 0, 2);
	check_trellis(UDFS_DT_BF16, 2, 1);
	check_trellis(UDFS_DT_F16, 0, 4);
}

int main(void)
{
	test_trellis();
	test_residual_codes();
	test_priced_chunk_used();
	test_truncate();
	CHECK_DONE();
}

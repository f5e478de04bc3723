// SPDX-License-Identifier: MIT
/*
 * Unit tests of udfs_nuclear_norm (src/write/linalg.c) on matrices whose
 * nuclear norm is known: a diagonal embedded in a wider and a taller matrix,
 * and rank-1 outer products u v^T (norm |u| |v|); of udfs_svd_top against
 * the full thin SVD; on a square pruned matrix (the worst case of the float32
 * decomposition) against a double SVD. With UDFS_BENCH=1 in the
 * environment it also prints the nuclear-norm time of a few sizes.
 */
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/prng.h"
#include "common/util.h"
#include "write/linalg.h"
#include "write/ultradelta.h"

static uint64_t rs = 0x2545f4914f6cdd1dULL;

static double unif(void)
{
	return (double)(udfs_splitmix64(&rs) >> 11) / 9007199254740992.0;
}

static void test_diag(void)
{
	float m[4 * 5] = {0}, t[5 * 4] = {0};
	double nn = -1;

	m[0 * 5 + 0] = 3;
	m[1 * 5 + 1] = -2; /* singular values are |d| */
	m[2 * 5 + 2] = 1;
	CHECK_EQ_INT(udfs_nuclear_norm(m, 4, 5, &nn), 0);
	CHECK_NEAR(nn, 6.0, 6e-4);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 5; j++)
			t[j * 4 + i] = m[i * 5 + j];
	CHECK_EQ_INT(udfs_nuclear_norm(t, 5, 4, &nn), 0);
	CHECK_NEAR(nn, 6.0, 6e-4);
	CHECK_EQ_INT(udfs_nuclear_norm(m, 0, 5, &nn), 0);
	CHECK_NEAR(nn, 0.0, 0);
}

static void test_rank1(size_t rows, size_t cols)
{
	float *u = malloc(rows * sizeof(*u)), *v = malloc(cols * sizeof(*v));
	float *m = malloc(rows * cols * sizeof(*m));
	double nu = 0, nv = 0, nn = -1;

	for (size_t i = 0; i < rows; i++) {
		u[i] = (float)(unif() - 0.5);
		nu += (double)u[i] * u[i];
	}
	for (size_t j = 0; j < cols; j++) {
		v[j] = (float)(unif() - 0.3) * 1e-3f;
		nv += (double)v[j] * v[j];
	}
	for (size_t i = 0; i < rows; i++)
		for (size_t j = 0; j < cols; j++)
			m[i * cols + j] = u[i] * v[j];
	CHECK_EQ_INT(udfs_nuclear_norm(m, rows, cols, &nn), 0);
	/* float32 SVD: the other singular values are rounding noise */
	CHECK_NEAR(nn / (sqrt(nu) * sqrt(nv)), 1.0, 1e-4 * (1 + rows / 256.0));
	free(u);
	free(v);
	free(m);
}

/* Sum of two orthogonal rank-1 terms: norm |a||b| + |c||d|. */
static void test_rank2(void)
{
	enum { R = 6, C = 8 };
	float m[R * C];
	float a[R] = {1, 1, 1, 1, 0, 0}, b[C] = {1, -1, 1, -1, 1, -1, 1, -1};
	float c[R] = {0, 0, 0, 0, 2, 2}, d[C] = {1, 1, 1, 1, 1, 1, 1, 1};
	double nn = 0;

	for (int i = 0; i < R; i++)
		for (int j = 0; j < C; j++)
			m[i * C + j] = a[i] * b[j] + c[i] * d[j];
	CHECK_EQ_INT(udfs_nuclear_norm(m, R, C, &nn), 0);
	CHECK_NEAR(nn, 2 * sqrt(8.0) + sqrt(8.0) * sqrt(8.0), 1e-4 * 14);
}

/* m (rows x cols) += `terms` rank-1 terms of halving scale, plus uniform
 * noise of amplitude `noise`. */
static void fill_terms(float *m, size_t rows, size_t cols, size_t terms,
		       double noise)
{
	double *a = malloc(rows * sizeof(*a)), *b = malloc(cols * sizeof(*b));

	for (size_t c = 0; c < terms; c++) {
		for (size_t i = 0; i < rows; i++)
			a[i] = unif() - 0.5;
		for (size_t j = 0; j < cols; j++)
			b[j] = unif() - 0.5;
		for (size_t i = 0; i < rows; i++)
			for (size_t j = 0; j < cols; j++)
				m[i * cols + j] +=
				    (float)(a[i] * b[j] / (double)(1u << c));
	}
	for (size_t i = 0; i < rows * cols; i++)
		m[i] += (float)((unif() - 0.5) * noise);
	free(a);
	free(b);
}

/* The top-k triplets of m and its full thin SVD, for the tests below. */
struct svd_pair {
	size_t rows, cols, k, r;
	float *u, *s, *v, *fu, *fs, *fv;
};

static void svd_pair_run(struct svd_pair *p, const float *m, size_t rows,
			 size_t cols, size_t k)
{
	float *u2, *s2, *v2;

	p->rows = rows;
	p->cols = cols;
	p->k = k;
	p->r = rows < cols ? rows : cols;
	p->u = malloc(rows * k * 4);
	p->v = malloc(cols * k * 4);
	p->s = malloc(k * 4);
	p->fu = malloc(rows * p->r * 4);
	p->fv = malloc(cols * p->r * 4);
	p->fs = malloc(p->r * 4);
	u2 = malloc(rows * k * 4);
	v2 = malloc(cols * k * 4);
	s2 = malloc(k * 4);
	CHECK_EQ_INT(udfs_svd_top(m, rows, cols, k, p->u, p->s, p->v), 0);
	CHECK_EQ_INT(udfs_svd(m, rows, cols, p->fu, p->fs, p->fv), 0);
	/* deterministic: the same bits again */
	CHECK_EQ_INT(udfs_svd_top(m, rows, cols, k, u2, s2, v2), 0);
	CHECK(!memcmp(u2, p->u, rows * k * 4) && !memcmp(s2, p->s, k * 4) &&
	      !memcmp(v2, p->v, cols * k * 4));
	free(u2);
	free(v2);
	free(s2);
}

static void svd_pair_free(struct svd_pair *p)
{
	free(p->u);
	free(p->v);
	free(p->s);
	free(p->fu);
	free(p->fv);
	free(p->fs);
}

/* ||m - U diag(s) V^T||_F^2 / ||m||_F^2 of the top-k triplets. */
static double rel_resid2(const float *m, const struct svd_pair *p)
{
	double e = 0, t = 0;

	for (size_t i = 0; i < p->rows; i++)
		for (size_t j = 0; j < p->cols; j++) {
			double x = m[i * p->cols + j];

			for (size_t c = 0; c < p->k; c++)
				x -= (double)p->u[i * p->k + c] * p->s[c] *
				     p->v[j * p->k + c];
			e += x * x;
			t += (double)m[i * p->cols + j] * m[i * p->cols + j];
		}
	return e / t;
}

/* The largest of |U^T U - I| over the k columns of u (rows x k). */
static double orth_err(const float *u, size_t rows, size_t k)
{
	double worst = 0;

	for (size_t a = 0; a < k; a++)
		for (size_t b = 0; b < k; b++) {
			double d = a == b ? -1 : 0;

			for (size_t i = 0; i < rows; i++)
				d += (double)u[i * k + a] * u[i * k + b];
			worst = fmax(worst, fabs(d));
		}
	return worst;
}

/*
 * udfs_svd_top (only the k largest triplets) against the thin SVD on a
 * matrix of distinct singular values (six halving terms plus noise): the
 * same values, and vectors equal up to sign. Sizes choose its three paths
 * (linalg.c): the full eigensolver where the block would be half the
 * Gram matrix or more (60 x 200, k = 20), subspace iteration on the
 * formed Gram matrix (60 x 200, k = 4; 300 x 50, k = 5), and on two
 * products with M (300 x 600 and 600 x 300, k = 2).
 */
static void test_svd_top(size_t rows, size_t cols, size_t k)
{
	float *m = calloc(rows * cols, sizeof(*m));
	struct svd_pair p;

	fill_terms(m, rows, cols, 6, 1e-4);
	svd_pair_run(&p, m, rows, cols, k);
	for (size_t c = 0; c < k && c < 6; c++) {
		double du = 0, dv = 0, sg;

		CHECK_NEAR(p.s[c] / p.fs[0], p.fs[c] / p.fs[0], 1e-4);
		sg = p.u[c] * p.fu[c] < 0 ? -1 : 1; /* the sign is free */
		for (size_t i = 0; i < rows; i++)
			du = fmax(
			    du, fabs(p.u[i * k + c] - sg * p.fu[i * p.r + c]));
		for (size_t j = 0; j < cols; j++)
			dv = fmax(
			    dv, fabs(p.v[j * k + c] - sg * p.fv[j * p.r + c]));
		CHECK(du < 2e-3 && dv < 2e-3);
	}
	CHECK(orth_err(rows <= cols ? p.u : p.v, rows <= cols ? rows : cols,
		       k) < 1e-4);
	svd_pair_free(&p);
	free(m);
}

/* An exactly rank-5 matrix, k above the rank: the five values and the
 * matrix itself come back, the other values are zero. */
static void test_svd_top_lowrank(size_t rows, size_t cols, size_t k)
{
	float *m = calloc(rows * cols, sizeof(*m));
	struct svd_pair p;

	fill_terms(m, rows, cols, 5, 0);
	svd_pair_run(&p, m, rows, cols, k);
	for (size_t c = 0; c < 5; c++)
		CHECK_NEAR(p.s[c] / p.fs[0], p.fs[c] / p.fs[0], 1e-4);
	for (size_t c = 5; c < k; c++)
		CHECK(p.s[c] < 1e-3 * p.fs[0]);
	CHECK(rel_resid2(m, &p) < 1e-6); /* 1e-3 of its norm: float noise */
	svd_pair_free(&p);
	free(m);
}

/* A uniform random matrix (a flat spectrum, the worst case of subspace
 * iteration, where the vectors beyond the first are not well defined):
 * each value at most the exact one (Ritz values interlace), the rank-k
 * part as good as the truncated SVD within 2% of its residual energy, and
 * that residual what the values say (V = M^T U / s). */
static void test_svd_top_flat(size_t rows, size_t cols, size_t k)
{
	float *m = calloc(rows * cols, sizeof(*m));
	double all = 0, best = 0, got;
	struct svd_pair p;

	fill_terms(m, rows, cols, 0, 1.0);
	svd_pair_run(&p, m, rows, cols, k);
	for (size_t c = 0; c < p.r; c++) {
		all += (double)p.fs[c] * p.fs[c];
		best += c < k ? 0 : (double)p.fs[c] * p.fs[c];
	}
	got = all;
	for (size_t c = 0; c < k; c++) {
		CHECK(p.s[c] <= p.fs[c] * (1 + 1e-4));
		got -= (double)p.s[c] * p.s[c];
	}
	CHECK(got / best < 1.02);
	CHECK_NEAR(rel_resid2(m, &p) * all / got, 1.0, 1e-3);
	svd_pair_free(&p);
	free(m);
}

/* A delta of huge or tiny values (whose float Gram matrix would overflow
 * or underflow) gives the triplets of the same matrix at a normal scale,
 * scaled; a NaN or an infinity gives no triplets (all zero) rather than
 * an error. */
static void test_svd_top_range(size_t rows, size_t cols, size_t k)
{
	float *m = calloc(rows * cols, sizeof(*m));
	float *x = malloc(rows * cols * sizeof(*x));
	struct svd_pair p;
	float *u = malloc(rows * k * 4), *v = malloc(cols * k * 4);
	float *s = malloc(k * 4);
	float scales[2] = {0x1p100f, 0x1p-100f};

	fill_terms(m, rows, cols, 6, 1e-4);
	svd_pair_run(&p, m, rows, cols, k);
	for (int t = 0; t < 2; t++) {
		bool same = true;

		for (size_t i = 0; i < rows * cols; i++)
			x[i] = m[i] * scales[t];
		CHECK_EQ_INT(udfs_svd_top(x, rows, cols, k, u, s, v), 0);
		for (size_t c = 0; c < k && c < 6; c++) {
			double du = 0, sg = u[c] * p.fu[c] < 0 ? -1 : 1;

			same = same && fabs(s[c] / scales[t] - p.fs[c]) <
					   1e-4 * p.fs[0];
			for (size_t i = 0; i < rows; i++)
				du = fmax(du, fabs(u[i * k + c] -
						   sg * p.fu[i * p.r + c]));
			same = same && du < 2e-3;
		}
		CHECK(same);
	}
	x[7] = INFINITY;
	CHECK_EQ_INT(udfs_svd_top(x, rows, cols, k, u, s, v), 0);
	CHECK(s[0] == 0 && u[0] == 0 && v[0] == 0);
	x[7] = NAN;
	CHECK_EQ_INT(udfs_svd_top(x, rows, cols, k, u, s, v), 0);
	CHECK(s[0] == 0 && u[0] == 0 && v[0] == 0);
	svd_pair_free(&p);
	free(m);
	free(x);
	free(u);
	free(v);
	free(s);
}

/* A square matrix pruned to 10% like a lossy delta: the float32 Gram
 * decomposition loses the smallest singular values to rounding, which
 * must stay far below the precision the trace-norm factor needs. */
static void test_pruned(size_t n)
{
	float *m = calloc(n * n, sizeof(*m));
	double *a = malloc(n * n * sizeof(*a)), *s = malloc(n * sizeof(*s));
	double ref = 0, nn = -1;

	for (size_t i = 0; i < n * n; i++)
		if (unif() < 0.1)
			m[i] = (float)((unif() - 0.5) * 1e-2);
	for (size_t i = 0; i < n * n; i++)
		a[i] = m[i];
	CHECK_EQ_INT(LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n,
				    (lapack_int)n, a, (lapack_int)n, s, NULL, 1,
				    NULL, 1),
		     0);
	for (size_t i = 0; i < n; i++)
		ref += s[i];
	CHECK_EQ_INT(udfs_nuclear_norm(m, n, n, &nn), 0);
	CHECK_NEAR(nn / ref, 1.0, 1e-3);
	free(m);
	free(a);
	free(s);
}

/* A sum of squares over pieces (each but the last a multiple of 8) has
 * the bits of the whole one: the adaptive planner sums a delta a block at
 * a time, and its choices must not move. */
static void test_sumsq_pieces(void)
{
	static const uint64_t pieces[] = {8, 16, 24, 4096, 16384};
	uint64_t r = 3, n = 100003;
	float *d = malloc(n * sizeof(float));

	for (uint64_t i = 0; i < n; i++)
		d[i] = (float)((double)(udfs_splitmix64(&r) >> 11) * 0x1p-53 -
			       0.5) *
		       (float)(1 + i % 7);
	for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
		udfs_sumsq a = {{0}, 0};
		double whole = udfs_sum_squares(d, n), sum;

		for (uint64_t k = 0; k < n; k += pieces[p])
			udfs_sumsq_add(&a, d + k,
				       n - k < pieces[p] ? n - k : pieces[p]);
		sum = udfs_sumsq_end(&a);
		CHECK(memcmp(&sum, &whole, sizeof(sum)) == 0);
	}
	free(d);
}

static void bench(void)
{
	size_t sz[4][2] = {
	    {512, 512}, {1024, 1024}, {2048, 2048}, {4096, 1024}};

	for (int t = 0; t < 4; t++) {
		size_t n = sz[t][0] * sz[t][1];
		float *m = malloc(n * sizeof(*m));
		double nn, t0;

		for (size_t i = 0; i < n; i++)
			m[i] = (float)(unif() - 0.5) * 1e-3f;
		t0 = udfs_now();
		CHECK_EQ_INT(udfs_nuclear_norm(m, sz[t][0], sz[t][1], &nn), 0);
		fprintf(stderr, "nuclear norm %zu x %zu: %.3f s\n", sz[t][0],
			sz[t][1], udfs_now() - t0);
		free(m);
	}
}

int main(void)
{
	test_diag();
	test_rank1(1, 1);
	test_rank1(7, 3);
	test_rank1(64, 200);
	test_rank1(300, 40);
	test_rank2();
	test_pruned(400);
	test_sumsq_pieces();
	test_svd_top(60, 200, 20);
	test_svd_top(60, 200, 4);
	test_svd_top(300, 50, 5);
	test_svd_top(300, 600, 2);
	test_svd_top(600, 300, 2);
	test_svd_top_lowrank(100, 300, 8);
	test_svd_top_lowrank(400, 200, 2 * 4 + 8);
	test_svd_top_lowrank(300, 600, 6);
	test_svd_top_flat(200, 400, 8);
	test_svd_top_flat(400, 800, 32);
	test_svd_top_range(300, 600, 2);
	test_svd_top_range(60, 200, 4);
	test_svd_top_range(60, 200, 20);
	if (getenv("UDFS_BENCH"))
		bench();
	CHECK_DONE();
}

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

/* udfs_svd_top (only the k largest triplets, through the Gram matrix)
 * against the thin SVD: the same singular values, and singular vectors
 * equal up to sign, on a wide and a tall matrix with distinct values. */
static void test_svd_top(size_t rows, size_t cols, size_t k)
{
	size_t r = rows < cols ? rows : cols;
	float *m = calloc(rows * cols, sizeof(*m));
	float *u = malloc(rows * k * sizeof(*u)), *v = malloc(cols * k * 4);
	float *s = malloc(k * sizeof(*s)), *fu = malloc(rows * r * 4);
	float *fv = malloc(cols * r * 4), *fs = malloc(r * sizeof(*fs));

	/* six rank-1 terms of halving scale, plus noise: distinct values */
	for (size_t c = 0; c < 6; c++) {
		double a[512], b[512];

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
		m[i] += (float)(unif() - 0.5) * 1e-4f;
	CHECK_EQ_INT(udfs_svd_top(m, rows, cols, k, u, s, v), 0);
	CHECK_EQ_INT(udfs_svd(m, rows, cols, fu, fs, fv), 0);
	for (size_t c = 0; c < k; c++) {
		double du = 0, dv = 0, sg;

		CHECK_NEAR(s[c] / fs[0], fs[c] / fs[0], 1e-4);
		sg = u[c] * fu[c] < 0 ? -1 : 1; /* the sign is free */
		for (size_t i = 0; i < rows; i++)
			du = fmax(du, fabs(u[i * k + c] - sg * fu[i * r + c]));
		for (size_t j = 0; j < cols; j++)
			dv = fmax(dv, fabs(v[j * k + c] - sg * fv[j * r + c]));
		CHECK(du < 2e-3 && dv < 2e-3);
	}
	free(m);
	free(u);
	free(v);
	free(s);
	free(fu);
	free(fv);
	free(fs);
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
	test_svd_top(60, 200, 4);
	test_svd_top(300, 50, 5);
	if (getenv("UDFS_BENCH"))
		bench();
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * Unit tests of udfs_nuclear_norm_slq (src/write/linalg.c), the stochastic
 * Lanczos estimate of the nuclear norm, against the exact
 * udfs_nuclear_norm on the spectra the trace-norm rescale meets: a square
 * and a tall random matrix (flat spectra), low rank plus noise (a few
 * large singular values over a bulk), a 10%-dense pruned, quantized delta
 * (a few levels times a gain; its products go through compressed rows)
 * and a 40%-dense one (dense products), and an exactly low-rank matrix
 * (Lanczos breaks down early). Each within TOL of the exact norm, the same
 * double on a second call, and udfs_nuclear_norm_auto exact up to
 * UDFS_NUCLEAR_EXACT_MAX rows or columns. With UDFS_BENCH=1 it prints
 * the time of both methods on a few sizes (the threshold's measurement).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/prng.h"
#include "common/util.h"
#include "write/linalg.h"

/* The relative error allowed: random and pruned matrices come within
 * 0.6%, low rank plus noise within 0.8% (sampling error of the probes). */
#define TOL 0.01

static uint64_t rs = 0x9e3779b97f4a7c15ULL;

static double unif(void)
{
	return (double)(udfs_splitmix64(&rs) >> 11) / 9007199254740992.0;
}

/* A standard normal deviate (Box-Muller). */
static double gauss(void)
{
	double u = unif() + 1e-300, v = unif();

	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void fill_random(float *m, size_t rows, size_t cols, double scale)
{
	for (size_t i = 0; i < rows * cols; i++)
		m[i] = (float)(gauss() * scale);
}

/* `terms` rank-1 terms of halving scale plus normal noise. */
static void fill_lowrank(float *m, size_t rows, size_t cols, size_t terms,
			 double noise)
{
	double *a = malloc(rows * sizeof(*a)), *b = malloc(cols * sizeof(*b));

	fill_random(m, rows, cols, noise);
	for (size_t c = 0; c < terms; c++) {
		for (size_t i = 0; i < rows; i++)
			a[i] = gauss() / sqrt((double)rows);
		for (size_t j = 0; j < cols; j++)
			b[j] = gauss() / (double)(1u << c);
		for (size_t i = 0; i < rows; i++)
			for (size_t j = 0; j < cols; j++)
				m[i * cols + j] += (float)(a[i] * b[j]);
	}
	free(a);
	free(b);
}

/* A pruned, quantized delta: 10% of the elements kept, each one of 16
 * levels times a gain (what the planner's pruned_delta hands over). */
static void fill_pruned(float *m, size_t rows, size_t cols)
{
	for (size_t i = 0; i < rows * cols; i++)
		m[i] = unif() < 0.1
			   ? 3.1e-4f * (float)((int)(unif() * 16) - 8) + 1e-4f
			   : 0.0f;
}

/* 40% kept: above the density where the estimate's products go through
 * compressed rows. */
static void fill_pruned_dense(float *m, size_t rows, size_t cols)
{
	for (size_t i = 0; i < rows * cols; i++)
		m[i] = unif() < 0.4 ? 2e-4f * (float)((int)(unif() * 16) - 8)
				    : 0.0f;
}

/* The estimate within TOL of the exact norm, the same bits twice. */
static void check_estimate(const char *what, const float *m, size_t rows,
			   size_t cols)
{
	double exact = -1, est = -1, again = -2;

	CHECK_EQ_INT(udfs_nuclear_norm(m, rows, cols, &exact), 0);
	CHECK_EQ_INT(udfs_nuclear_norm_slq(m, rows, cols, &est), 0);
	CHECK_EQ_INT(udfs_nuclear_norm_slq(m, rows, cols, &again), 0);
	fprintf(stderr, "%s %zu x %zu: exact %.6g estimate %.6g (%+.3f%%)\n",
		what, rows, cols, exact, est, 100 * (est / exact - 1));
	CHECK(exact > 0);
	CHECK_NEAR(est / exact, 1.0, TOL);
	CHECK(memcmp(&est, &again, sizeof(est)) == 0);
}

static void test_shape(const char *what, size_t rows, size_t cols,
		       void (*fill)(float *, size_t, size_t))
{
	float *m = malloc(rows * cols * sizeof(*m));

	fill(m, rows, cols);
	check_estimate(what, m, rows, cols);
	free(m);
}

static void random_delta(float *m, size_t rows, size_t cols)
{
	fill_random(m, rows, cols, 1e-3);
}

static void lowrank_noise(float *m, size_t rows, size_t cols)
{
	fill_lowrank(m, rows, cols, 8, 0.05);
}

/* Exactly rank 5: every Lanczos column stops early. */
static void lowrank_exact(float *m, size_t rows, size_t cols)
{
	memset(m, 0, rows * cols * sizeof(*m));
	fill_lowrank(m, rows, cols, 5, 0);
}

/* The exact method below the threshold (the same bits as
 * udfs_nuclear_norm), the estimate above it. */
static void test_auto(void)
{
	size_t n = UDFS_NUCLEAR_EXACT_MAX, big = n + 64;
	float *m = malloc(big * big * sizeof(*m));
	double a = -1, b = -2;

	fill_pruned(m, n, n + 100);
	CHECK_EQ_INT(udfs_nuclear_norm_auto(m, n, n + 100, &a), 0);
	CHECK_EQ_INT(udfs_nuclear_norm(m, n, n + 100, &b), 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	fill_pruned(m, big, big);
	CHECK_EQ_INT(udfs_nuclear_norm_auto(m, big, big, &a), 0);
	CHECK_EQ_INT(udfs_nuclear_norm_slq(m, big, big, &b), 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	free(m);
	/* Much taller than wide: exact when dense (slq_cheaper), estimated
	 * when pruned (compressed rows make it the cheaper). */
	m = malloc(8 * big * big * sizeof(*m));
	fill_random(m, 8 * big, big, 1e-3);
	CHECK_EQ_INT(udfs_nuclear_norm_auto(m, 8 * big, big, &a), 0);
	CHECK_EQ_INT(udfs_nuclear_norm(m, 8 * big, big, &b), 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	fill_pruned(m, 8 * big, big);
	CHECK_EQ_INT(udfs_nuclear_norm_auto(m, 8 * big, big, &a), 0);
	CHECK_EQ_INT(udfs_nuclear_norm_slq(m, 8 * big, big, &b), 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK_EQ_INT(udfs_nuclear_norm(m, 8 * big, big, &b), 0);
	CHECK_NEAR(a / b, 1.0, TOL);
	free(m);
}

/* m's nonzeros as compressed rows. */
static void to_csr(const float *m, size_t rows, size_t cols, udfs_csr *a)
{
	uint64_t e = 0;

	a->rows = rows;
	a->cols = cols;
	a->ptr = malloc((rows + 1) * sizeof(*a->ptr));
	a->col = malloc((rows * cols + 1) * sizeof(*a->col));
	a->val = malloc((rows * cols + 1) * sizeof(*a->val));
	for (size_t r = 0; r < rows; r++) {
		a->ptr[r] = e;
		for (size_t c = 0; c < cols; c++)
			if (m[r * cols + c] != 0.0f) {
				a->col[e] = (uint32_t)c;
				a->val[e++] = m[r * cols + c];
			}
	}
	a->ptr[rows] = e;
}

/* udfs_nuclear_norm_csr: the same double as udfs_nuclear_norm_auto of
 * the dense matrix, whichever way it goes (estimated from the rows,
 * exact, estimated through dense products). */
static void test_csr(void)
{
	struct {
		size_t rows, cols;
		void (*fill)(float *, size_t, size_t);
	} c[4] = {{700, 900, fill_pruned},
		  {4000, 600, fill_pruned},
		  {300, 500, fill_pruned},
		  {600, 700, fill_pruned_dense}};

	for (int i = 0; i < 4; i++) {
		float *m = malloc(c[i].rows * c[i].cols * sizeof(*m));
		double a = -1, b = -2;
		udfs_csr sp;

		c[i].fill(m, c[i].rows, c[i].cols);
		to_csr(m, c[i].rows, c[i].cols, &sp);
		CHECK_EQ_INT(udfs_nuclear_norm_csr(&sp, &a), 0);
		CHECK_EQ_INT(
		    udfs_nuclear_norm_auto(m, c[i].rows, c[i].cols, &b), 0);
		CHECK(memcmp(&a, &b, sizeof(a)) == 0);
		udfs_csr_free(&sp);
		free(m);
	}
}

/* Two estimates of one matrix on two threads at once (what a group add
 * at --jobs 2 runs): each the same double as on the main thread. */
struct on_thread {
	const float *m;
	size_t rows, cols;
	double out;
};

static void *estimate_thread(void *arg)
{
	struct on_thread *t = arg;

	if (udfs_nuclear_norm_slq(t->m, t->rows, t->cols, &t->out))
		t->out = -1;
	return NULL;
}

static void test_threads(void)
{
	size_t rows = 700, cols = 900;
	float *m = malloc(rows * cols * sizeof(*m));
	struct on_thread t[2] = {{m, rows, cols, -2}, {m, rows, cols, -3}};
	pthread_t th[2];
	double ref = -4;

	fill_pruned(m, rows, cols);
	CHECK_EQ_INT(udfs_nuclear_norm_slq(m, rows, cols, &ref), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ_INT(
		    pthread_create(&th[i], NULL, estimate_thread, &t[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK(memcmp(&t[i].out, &ref, sizeof(ref)) == 0);
	}
	free(m);
}

static void bench(void)
{
	size_t sz[5][2] = {
	    {512, 512}, {768, 2048}, {1024, 1024}, {1024, 2816}, {13948, 1024}};

	for (int t = 0; t < 5; t++) {
		size_t n = sz[t][0] * sz[t][1];
		float *m = malloc(n * sizeof(*m));
		double a, b, t0, t1, t2;

		fill_pruned(m, sz[t][0], sz[t][1]);
		t0 = udfs_now();
		CHECK_EQ_INT(udfs_nuclear_norm(m, sz[t][0], sz[t][1], &a), 0);
		t1 = udfs_now();
		CHECK_EQ_INT(udfs_nuclear_norm_slq(m, sz[t][0], sz[t][1], &b),
			     0);
		t2 = udfs_now();
		fprintf(
		    stderr, "%zu x %zu: exact %.3f s, slq %.3f s (%+.3f%%)\n",
		    sz[t][0], sz[t][1], t1 - t0, t2 - t1, 100 * (b / a - 1));
		free(m);
	}
}

int main(void)
{
	udfs_blas_threads(1);
	test_shape("random", 600, 600, random_delta);
	test_shape("random", 1500, 400, random_delta);
	test_shape("low rank + noise", 500, 700, lowrank_noise);
	test_shape("low rank + noise", 1024, 1024, lowrank_noise);
	test_shape("pruned", 640, 640, fill_pruned);
	test_shape("pruned", 300, 900, fill_pruned);
	test_shape("pruned", 1500, 400, fill_pruned);
	test_shape("pruned, denser", 500, 700, fill_pruned_dense);
	test_shape("rank 5", 400, 300, lowrank_exact);
	test_auto();
	test_csr();
	test_threads();
	if (getenv("UDFS_BENCH"))
		bench();
	CHECK_DONE();
}

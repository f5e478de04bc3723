// SPDX-License-Identifier: MIT
/*
 * Unit tests of the trellis value kind's encoder (src/write/trellis.c) and
 * its codebook (src/codec/trellis.c): the Viterbi path is the cheapest of
 * all paths (brute force on short inputs), the same bits at every SIMD
 * level, and on Gaussian data it reaches the distortion a trellis code is
 * known for (far below a scalar quantizer of the same bits). With
 * UDFS_BENCH=1 it prints the search's speed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "codec/simd.h"
#include "codec/trellis.h"
#include "common/prng.h"
#include "common/util.h"
#include "write/trellis.h"

static uint64_t rs = 0x9e3779b97f4a7c15ULL;

static double unif(void)
{
	return (double)(udfs_splitmix64(&rs) >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
	return sqrt(-2 * log(1 - unif())) * cos(2 * M_PI * unif());
}

/* Squared error of the path bits against x at scale. */
static double path_cost(const float *x, uint32_t n, unsigned v, float scale,
			const uint8_t *bits)
{
	udfs_lossy_params p = {.values = UDFS_VAL_TRELLIS,
			       .bits = (uint8_t)v,
			       .step = scale,
			       .gain = 1.0f};
	float lut[UDFS_TRELLIS_STATES * UDFS_TRELLIS_VMAX], y[64];
	double e = 0;

	udfs_trellis_lut(&p, lut);
	udfs_trellis_expand(lut, v, bits, n, y);
	for (uint32_t i = 0; i < n; i++)
		e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
	return e;
}

/* The search's path costs no more than any of the 2^steps paths. */
static void test_optimal(unsigned v, uint32_t n)
{
	uint32_t steps = (n + v - 1) / v;
	uint8_t bits[64], best[64];
	float x[64];
	double least = INFINITY;

	for (uint32_t i = 0; i < n; i++)
		x[i] = (float)gauss();
	for (uint32_t m = 0; m < 1u << steps; m++) {
		double e;

		for (uint32_t t = 0; t < steps; t++)
			bits[t] = (uint8_t)(m >> t & 1);
		e = path_cost(x, n, v, 0.9f, bits);
		least = fmin(least, e);
	}
	CHECK_EQ_INT(udfs_trellis_search(x, n, v, 0.9f, best), 0);
	CHECK(path_cost(x, n, v, 0.9f, best) <= least * (1 + 1e-5));
}

/* Relative squared error of the least-squares scaled path on n Gaussian
 * values, and the same bits with the SIMD levels capped at each lower one. */
static double gauss_error(unsigned v, uint32_t n)
{
	float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
	uint8_t *bits = malloc(n), *bits2 = malloc(n);
	udfs_lossy_params p = {.values = UDFS_VAL_TRELLIS,
			       .bits = (uint8_t)v,
			       .step = 1.0f,
			       .gain = 1.0f};
	float lut[UDFS_TRELLIS_STATES * UDFS_TRELLIS_VMAX];
	double xy = 0, yy = 0, xx = 0;
	int cap;

	for (uint32_t i = 0; i < n; i++)
		x[i] = (float)gauss();
	CHECK_EQ_INT(udfs_trellis_search(x, n, v, 0.8f, bits), 0);
	for (int level = UDFS_SIMD_BASE; level < UDFS_SIMD_AVX512; level++) {
		cap = udfs_simd_cap(level);
		CHECK_EQ_INT(udfs_trellis_search(x, n, v, 0.8f, bits2), 0);
		udfs_simd_cap(cap);
		CHECK(memcmp(bits, bits2, (n + v - 1) / v) == 0);
	}
	udfs_trellis_lut(&p, lut);
	udfs_trellis_expand(lut, v, bits, n, y);
	for (uint32_t i = 0; i < n; i++) {
		xy += (double)x[i] * y[i];
		yy += (double)y[i] * y[i];
		xx += (double)x[i] * x[i];
	}
	free(x);
	free(y);
	free(bits);
	free(bits2);
	return 1 - xy * xy / (yy * xx);
}

static void test_codebook(void)
{
	double s = 0, s2 = 0;
	unsigned n = UDFS_TRELLIS_STATES * UDFS_TRELLIS_VMAX;

	for (unsigned i = 0; i < n; i++) {
		double c = udfs_trellis_codebook(i / 4, i % 4);

		s += c;
		s2 += c * c;
	}
	CHECK(fabs(s / n) < 0.1);
	CHECK(fabs(s2 / n - 1) < 0.15);
	/* fixed bits: a change here changes every stored trellis */
	CHECK(udfs_trellis_codebook(0, 0) == udfs_trellis_codebook(0, 0));
}

static void bench(void)
{
	uint32_t n = 1u << 19;
	float *x = malloc(n * sizeof(float));
	uint8_t *bits = malloc(n);

	for (uint32_t i = 0; i < n; i++)
		x[i] = (float)gauss();
	for (unsigned v = 1; v <= UDFS_TRELLIS_VMAX; v++) {
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		udfs_trellis_search(x, n, v, 0.8f, bits);
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("v=%u: %.1f ms for %u values\n", v,
		       (double)(b.tv_sec - a.tv_sec) * 1e3 +
			   (double)(b.tv_nsec - a.tv_nsec) / 1e6,
		       n);
	}
	free(x);
	free(bits);
}

int main(void)
{
	/* Rate-distortion bound of a Gaussian at 1/v bits: 2^(-2/v);
	 * a 1-bit scalar quantizer reaches 0.36, 256-state trellises
	 * about 0.27 at 1 bit. */
	double bound[5] = {0, 0.33, 0.58, 0.71, 0.78};

	test_codebook();
	for (unsigned v = 1; v <= UDFS_TRELLIS_VMAX; v++) {
		double e = gauss_error(v, 100000);

		printf("v=%u: relative error %.3f (bound %.3f)\n", v, e,
		       pow(2, -2.0 / v));
		CHECK(e < bound[v]);
		CHECK(e > pow(2, -2.0 / v));
		test_optimal(v, 14 * v);
		test_optimal(v, 14 * v - 1);
	}
	test_optimal(1, 1);
	if (getenv("UDFS_BENCH"))
		bench();
	CHECK_DONE();
}

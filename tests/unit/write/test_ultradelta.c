// SPDX-License-Identifier: MIT
/*
 * Unit tests of the UltraDelta core (src/write/ultradelta.c): quantization edge
 * cases and half-even ties, the code histogram and std (whole or summed
 * over blocks, as the planner does), the mixed sparsity allocation on
 * hand-computed cases, exact group-wise pruning counts, seeded masks that
 * agree across calls and threads, the magnitude top-k, and the paper's
 * ratio accounting.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec/lossy.h"
#include "common/prng.h"
#include "common/util.h"
#include "write/ultradelta.h"

static uint64_t rs = 88172645463325252ULL;

static uint64_t xr(void) { return udfs_splitmix64(&rs); }

static double unif(void) { return (double)(xr() >> 11) / 9007199254740992.0; }

static double rhe(double x)
{
	return nearbyint(x); /* default mode: half to even */
}

static void test_quantize(void)
{
	float d[16], lo = 0, step = 0;
	uint8_t c[16];

	for (int i = 0; i < 16; i++)
		d[i] = 0.25f;
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 4, c, &lo, &step), 1);
	CHECK_EQ_INT(udfs_ud_quantize(d, 0, 4, c, &lo, &step), 1);
	d[3] = NAN;
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 4, c, &lo, &step), -EDOM);
	udfs_error_clear();
	d[3] = INFINITY;
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 4, c, &lo, &step), -EDOM);
	udfs_error_clear();
	d[3] = -INFINITY;
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 4, c, &lo, &step), -EDOM);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 9, c, &lo, &step), -EINVAL);
	udfs_error_clear();
	/* Finite deltas whose 1-bit step overflows a float (lo + 0 * step
	 * would decode to a NaN): the tensor stays exact. */
	d[3] = FLT_MAX;
	d[4] = -FLT_MAX;
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 1, c, &lo, &step), -EDOM);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 4, c, &lo, &step), 0);
	CHECK(isfinite(step));

	/* two values: codes 0 and 2^b - 1 */
	for (int i = 0; i < 16; i++)
		d[i] = i % 2 ? 0.5f : -0.25f;
	CHECK_EQ_INT(udfs_ud_quantize(d, 16, 4, c, &lo, &step), 0);
	CHECK(lo == -0.25f);
	CHECK(step == (float)(0.75 / 15));
	for (int i = 0; i < 16; i++)
		CHECK_EQ_INT(c[i], i % 2 ? 15 : 0);

	/* ties land exactly on .5 with min 0, max 7, 3 bits: half to even */
	{
		float t[9] = {0, 7, 0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f};
		int want[9] = {0, 7, 0, 2, 2, 4, 4, 6, 6}, exact = 0;

		CHECK_EQ_INT(udfs_ud_quantize(t, 9, 3, c, &lo, &step), 0);
		for (int i = 0; i < 9; i++) {
			double x = ((double)t[i] - 0.0) / 7.0 * 7.0;

			if (x != floor(x) + 0.5 && i >= 2)
				continue; /* not an exact tie in double */
			exact++;
			CHECK_EQ_INT(c[i], want[i]);
		}
		CHECK(exact >= 6);
		CHECK(lo == 0.0f && step == 1.0f);
	}
	/* bits = 1: 0.5 is a tie and goes to 0 */
	{
		float t[3] = {0, 1, 0.5f};

		CHECK_EQ_INT(udfs_ud_quantize(t, 3, 1, c, &lo, &step), 0);
		CHECK_EQ_INT(c[0], 0);
		CHECK_EQ_INT(c[1], 1);
		CHECK_EQ_INT(c[2], 0);
	}
	/* agreement with a direct computation on random data, 8 bits */
	{
		enum { N = 10000 };
		float *r = malloc(N * sizeof(*r));
		uint8_t *rc = malloc(N);
		double mn = 1e9, mx = -1e9;
		int bad = 0;

		for (int i = 0; i < N; i++) {
			r[i] = (float)(unif() - 0.3) * 0.01f;
			mn = fmin(mn, r[i]);
			mx = fmax(mx, r[i]);
		}
		CHECK_EQ_INT(udfs_ud_quantize(r, N, 8, rc, &lo, &step), 0);
		for (int i = 0; i < N; i++)
			bad += rc[i] !=
			       (uint8_t)rhe((r[i] - mn) / (mx - mn) * 255.0);
		CHECK_EQ_INT(bad, 0);
		CHECK(lo == (float)mn);
		CHECK(step == (float)((mx - mn) / 255.0));
		free(r);
		free(rc);
	}
}

/* The pieces of udfs_ud_quantize: extremes of slices combined, and the
 * multiply-then-check fast path of the codes, against the division
 * formula on random deltas, on the exact halves and on their float
 * neighbours (where the fast path must defer to the division). */
static void test_quantize_pieces(void)
{
	enum { N = 60000, S = 7 };
	float *d = malloc(N * sizeof(*d)), lo, step;
	uint8_t *c = malloc(N);
	unsigned bits[4] = {1, 3, 4, 8};

	for (int b = 0; b < 4; b++) {
		double L = (double)((1u << bits[b]) - 1), mn = 1, mx = -1;
		int bad = 0;

		for (int i = 0; i < N; i++) {
			double x = unif() * L;

			if (i % 3 == 1) /* a half, or a float next to one */
				x = floor(x) + 0.5;
			d[i] = (float)(x / L * 0.02 - 0.01);
			if (i % 3 == 1 && i % 2)
				d[i] = nextafterf(d[i], i % 4 == 1 ? 1 : -1);
		}
		d[0] = -0.01f;
		d[1] = 0.01f;
		for (int sl = 0; sl < S; sl++) {
			double a, z;
			size_t at = (size_t)N * sl / S;
			size_t n = (size_t)N * (sl + 1) / S - at;

			CHECK_EQ_INT(udfs_ud_minmax(d + at, n, &a, &z), 0);
			mn = sl ? fmin(mn, a) : a;
			mx = sl ? fmax(mx, z) : z;
		}
		CHECK(mn == -0.01f && mx == 0.01f);
		CHECK_EQ_INT(
		    udfs_ud_quantize_params(mn, mx, N, bits[b], &lo, &step), 0);
		for (int sl = 0; sl < S; sl++) {
			size_t at = (size_t)N * sl / S;

			udfs_ud_quantize_range(d + at,
					       (size_t)N * (sl + 1) / S - at,
					       bits[b], mn, mx, c + at);
		}
		for (int i = 0; i < N; i++)
			bad += c[i] != (uint8_t)rhe(((double)d[i] - mn) /
						    (mx - mn) * L);
		CHECK_EQ_INT(bad, 0);
	}
	free(d);
	free(c);
}

static void test_code_std(void)
{
	uint8_t c[1000];
	double sum = 0, sq = 0, mean;
	float lo = -0.125f, step = 0.01f;

	for (int i = 0; i < 1000; i++) {
		c[i] = (uint8_t)(xr() % 16);
		sum += lo + c[i] * (double)step;
	}
	mean = sum / 1000;
	for (int i = 0; i < 1000; i++) {
		double q = lo + c[i] * (double)step - mean;

		sq += q * q;
	}
	CHECK_NEAR(udfs_ud_code_std(c, 1000, 4, lo, step), sqrt(sq / 1000),
		   1e-12);
	CHECK_NEAR(udfs_ud_code_std(c, 0, 4, lo, step), 0.0, 0.0);
}

/* udfs_ud_hist counts every code, four at a time and the tail, added to
 * what hist holds: blocks of any length sum to the whole's histogram, and
 * its std is udfs_ud_code_std's, bit for bit. */
static void test_hist(void)
{
	enum { N = 4099 };
	uint8_t c[N];
	uint64_t want[256] = {0}, whole[256] = {0}, parts[256] = {0};
	size_t at = 0, len = 1;

	for (int i = 0; i < N; i++) {
		c[i] = (uint8_t)(i % 3 ? xr() % 16 : xr() % 256);
		want[c[i]]++;
	}
	udfs_ud_hist(c, N, whole);
	for (; at < N; at += len, len = len * 2 + 1)
		udfs_ud_hist(c + at, at + len > N ? N - at : len, parts);
	for (int k = 0; k < 256; k++) {
		CHECK_EQ_INT((int)whole[k], (int)want[k]);
		CHECK_EQ_INT((int)parts[k], (int)want[k]);
	}
	CHECK(udfs_ud_hist_std(whole, -0.3f, 0.02f) ==
	      udfs_ud_code_std(c, N, 8, -0.3f, 0.02f));
	memset(whole, 0, sizeof(whole));
	CHECK(udfs_ud_hist_std(whole, -0.3f, 0.02f) == 0.0);
}

static void test_allocate(void)
{
	double rates[6], budget = 0;
	int group[6];

	{
		double sig[3] = {3, 1, 2};
		uint64_t ne[3] = {100, 100, 100};

		udfs_ud_allocate(3, sig, ne, 0.9, 0.01, rates, group);
		CHECK_EQ_INT(group[1], 0);
		CHECK_EQ_INT(group[2], 1);
		CHECK_EQ_INT(group[0], 2);
		CHECK_NEAR(rates[1], 0.91, 1e-12);
		CHECK_NEAR(rates[2], 0.90, 1e-12);
		CHECK_NEAR(rates[0], 0.89, 1e-12);
	}
	{
		/* N = 210: thresholds 70 and 140. Sorted: 1 (20, low),
		 * 5 (80, mid), 2 (110, mid), 3 (150, high; the tie with 2
		 * keeps input order), 0 (160), 4 (210). */
		double sig[6] = {0.5, 0.1, 0.3, 0.3, 0.9, 0.2};
		uint64_t ne[6] = {10, 20, 30, 40, 50, 60};
		int want[6] = {2, 0, 1, 2, 2, 1};

		udfs_ud_allocate(6, sig, ne, 0.9, 0.02, rates, group);
		for (int i = 0; i < 6; i++) {
			CHECK_EQ_INT(group[i], want[i]);
			budget += rates[i] * (double)ne[i];
		}
		CHECK_NEAR(rates[1], 0.92, 1e-12);
		CHECK_NEAR(rates[5], 0.90, 1e-12);
		CHECK_NEAR(rates[3], 0.896, 1e-12);
		CHECK_NEAR(budget, 0.9 * 210, 1e-9);
		/* group may be NULL */
		udfs_ud_allocate(6, sig, ne, 0.9, 0.02, rates, NULL);
		CHECK_NEAR(rates[0], 0.896, 1e-12);
	}
	{
		/* random, unclamped: the budget holds exactly */
		enum { M = 50 };
		double sig[M], r[M], b = 0;
		uint64_t ne[M], n = 0;

		for (int i = 0; i < M; i++) {
			sig[i] = unif();
			ne[i] = 1000 + xr() % 100000;
			n += ne[i];
		}
		udfs_ud_allocate(M, sig, ne, 0.95, 0.01, r, NULL);
		for (int i = 0; i < M; i++)
			b += r[i] * (double)ne[i];
		CHECK_NEAR(b / (double)n, 0.95, 1e-12);
	}
	{
		/* clamps: low would be 1.03, high negative */
		double sig[3] = {1, 2, 3};
		uint64_t ne[3] = {100, 100, 100};

		udfs_ud_allocate(3, sig, ne, 0.98, 0.05, rates, group);
		CHECK_NEAR(rates[0], 0.999, 0);
		CHECK_NEAR(rates[1], 0.98, 1e-12);
		CHECK_NEAR(rates[2], 0.93, 1e-12);
		udfs_ud_allocate(3, sig, ne, 0.5, 0.6, rates, group);
		CHECK_NEAR(rates[2], 0.0, 0);
	}
	{
		/* one tensor: its running total is N > 2N/3, so it is high
		 * and the budget gives it s */
		double sig[1] = {1};
		uint64_t ne[1] = {1000};

		udfs_ud_allocate(1, sig, ne, 0.9, 0.01, rates, group);
		CHECK_EQ_INT(group[0], 2);
		CHECK_NEAR(rates[0], 0.9, 1e-12);
	}
}

static void test_groupwise(void)
{
	enum { N = 100003 };
	uint8_t *c = malloc(N), *k1 = malloc(N), *k2 = malloc(N),
		*k3 = malloc(N);
	uint64_t cnt[16] = {0}, kept[16] = {0}, total = 0;
	int64_t nk;
	int same = 1, diff = 0;

	for (int i = 0; i < N; i++) {
		/* a peaked histogram with rare extreme levels */
		int v =
		    7 + (int)((unif() - 0.5) * 4) + (int)((unif() - 0.5) * 4);

		if (i % 997 == 0)
			v = (int)(xr() % 16);
		c[i] = (uint8_t)v;
		cnt[v]++;
	}
	for (double r = 0.5; r < 1.0; r += 0.07) {
		nk = udfs_ud_prune_groupwise(c, N, 4, r, 42, k1);
		memset(kept, 0, sizeof(kept));
		total = 0;
		for (int i = 0; i < N; i++) {
			kept[c[i]] += k1[i];
			total += k1[i];
		}
		CHECK_EQ_INT(nk, total);
		for (int v = 0; v < 16; v++)
			CHECK_EQ_INT(kept[v],
				     cnt[v] - (uint64_t)rhe(cnt[v] * r));
	}
	nk = udfs_ud_prune_groupwise(c, N, 4, 0.9, 7, k1);
	CHECK_EQ_INT(udfs_ud_prune_groupwise(c, N, 4, 0.9, 7, k2), nk);
	CHECK_EQ_INT(udfs_ud_prune_groupwise(c, N, 4, 0.9, 8, k3), nk);
	for (int i = 0; i < N; i++) {
		same &= k1[i] == k2[i];
		diff += k1[i] != k3[i];
	}
	CHECK(same);
	CHECK(diff > 1000);
	/* uniform within a group: the first and second half of the tensor
	 * keep about the same number */
	{
		int64_t a = 0, b = 0;

		for (int i = 0; i < N; i++)
			*(i < N / 2 ? &a : &b) += k1[i];
		CHECK(llabs(a - b) < 6 * sqrt((double)nk));
	}
	CHECK_EQ_INT(udfs_ud_prune_groupwise(c, N, 4, 0.0, 1, k1), N);
	CHECK_EQ_INT(udfs_ud_prune_groupwise(c, N, 4, 1.0, 1, k1), 0);
	free(c);
	free(k1);
	free(k2);
	free(k3);
}

struct seeded_job {
	uint8_t *keep;
	size_t n;
	int64_t kept;
};

static void *seeded_thread(void *arg)
{
	struct seeded_job *j = arg;

	j->kept =
	    udfs_ud_prune_seeded(j->n, 0.9, udfs_seeded_key(1, "w.q"), j->keep);
	return NULL;
}

/* The group-wise walk in uneven pieces, as add runs it while encoding,
 * keeps the same elements as one walk. */
static void test_pruner_pieces(void)
{
	enum { N = 70001 };
	uint8_t *c = malloc(N), *k1 = malloc(N), *k2 = malloc(N);
	uint64_t hist[256] = {0};
	struct udfs_ud_pruner pr;
	int64_t nk, sum = 0;
	size_t at = 0, piece = 1;

	for (int i = 0; i < N; i++) {
		c[i] = (uint8_t)(xr() % 9 + (i % 5 == 0 ? 100 : 0));
		hist[c[i]]++;
	}
	nk = udfs_ud_prune_groupwise(c, N, 8, 0.85, 99, k1);
	udfs_ud_pruner_init(&pr, hist, 0.85, 99);
	while (at < N) {
		size_t m = piece < N - at ? piece : N - at;

		sum += udfs_ud_pruner_walk(&pr, c + at, m, k2 + at);
		at += m;
		piece = piece * 3 + 1;
	}
	CHECK_EQ_INT(sum, nk);
	CHECK(memcmp(k1, k2, N) == 0);
	free(c);
	free(k1);
	free(k2);
}

static void test_seeded(void)
{
	enum { N = 1 << 20 };
	struct seeded_job j[2];
	pthread_t t[2];
	uint8_t *k = malloc(N);
	int64_t nk;
	double mu = N * 0.1, sd = sqrt(N * 0.1 * 0.9);

	nk = udfs_ud_prune_seeded(N, 0.9, udfs_seeded_key(1, "w.q"), k);
	CHECK(fabs((double)nk - mu) < 4 * sd);
	for (int i = 0; i < 2; i++) {
		j[i].keep = malloc(N);
		j[i].n = N;
		CHECK_EQ_INT(pthread_create(&t[i], NULL, seeded_thread, &j[i]),
			     0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ_INT(j[i].kept, nk);
		CHECK(memcmp(j[i].keep, k, N) == 0);
		free(j[i].keep);
	}
	/* another tensor name gives another mask */
	{
		uint8_t *k2 = malloc(N);
		int d = 0;

		udfs_ud_prune_seeded(N, 0.9, udfs_seeded_key(1, "w.k"), k2);
		for (int i = 0; i < N; i++)
			d += k[i] != k2[i];
		CHECK(d > N / 10);
		free(k2);
	}
	CHECK_EQ_INT(udfs_seeded_threshold(0.0), 1ull << 53);
	CHECK_EQ_INT(udfs_seeded_threshold(1.0), 0);
	CHECK_EQ_INT(udfs_ud_prune_seeded(N, 0.0, 5, k), N);
	CHECK_EQ_INT(udfs_ud_prune_seeded(N, 1.0, 5, k), 0);
	for (double r = 0.5; r < 1.0; r += 0.12) {
		nk = udfs_ud_prune_seeded(N, r, 99, k);
		mu = N * (1 - r);
		sd = sqrt(N * r * (1 - r));
		CHECK(fabs((double)nk - mu) < 4 * sd);
	}
	free(k);
}

static const float *mag_d;

static int cmp_mag(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;
	float x = fabsf(mag_d[i]), y = fabsf(mag_d[j]);

	if (x != y)
		return x > y ? -1 : 1;
	return i - j;
}

static void test_magnitude(void)
{
	enum { N = 20011 };
	float *d = malloc(N * sizeof(*d));
	int *idx = malloc(N * sizeof(*idx));
	uint8_t *k = malloc(N), *want = calloc(N, 1);
	double sv[4] = {0.9, 0.5, 0.97, 0.0};

	for (int i = 0; i < N; i++) {
		/* many ties, both signs, and some values sharing the high
		 * 16 bits */
		d[i] = (float)((int)(xr() % 200) - 100) * 1e-3f;
		if (i % 3 == 0)
			d[i] = (float)(unif() - 0.5);
		idx[i] = i;
	}
	mag_d = d;
	qsort(idx, N, sizeof(*idx), cmp_mag);
	for (int t = 0; t < 4; t++) {
		int kk = N - (int)rhe(N * sv[t]), bad = 0;

		memset(want, 0, N);
		for (int i = 0; i < kk; i++)
			want[idx[i]] = 1;
		CHECK_EQ_INT(udfs_ud_prune_magnitude(d, N, sv[t], k), kk);
		for (int i = 0; i < N; i++)
			bad += k[i] != want[i];
		CHECK_EQ_INT(bad, 0);
	}
	CHECK_EQ_INT(udfs_ud_prune_magnitude(d, N, 1.0, k), 0);
	free(d);
	free(idx);
	free(k);
	free(want);
}

static void test_ratio(void)
{
	double want[4][2] = {{0.90, 18}, {0.95, 33}, {0.97, 51}, {0.99, 132}};

	for (int i = 0; i < 4; i++) {
		double r = udfs_ud_paper_ratio(want[i][0], 4, 1);

		CHECK(fabs(r / want[i][1] - 1) < 0.04);
	}
	/* golomb_bits(0.9) = 1/(1 - 0.9^4) + 2 */
	CHECK_NEAR(udfs_ud_paper_ratio(0.9, 4, 1),
		   16 / (0.1 * (4 + 1 / (1 - pow(0.9, 4)) + 2)), 1e-9);
	CHECK_NEAR(udfs_ud_paper_ratio(0.9, 4, 0), 40.0, 1e-9);
	CHECK(isinf(udfs_ud_paper_ratio(1.0, 4, 1)));
}

int main(void)
{
	test_quantize();
	test_quantize_pieces();
	test_code_std();
	test_hist();
	test_allocate();
	test_groupwise();
	test_pruner_pieces();
	test_seeded();
	test_magnitude();
	test_ratio();
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * Unit tests of the bulk seeded-mask generators (src/common/prng.c):
 * udfs_seeded_mask() and udfs_seeded_keep_bytes() must give exactly the
 * bits of udfs_seeded_keep() per element, and the levels' bulk forms those
 * of udfs_seeded_levels_keep(), for many seeds, drop rates (0 and 1
 * included), unaligned starts and lengths that are not a multiple of 64,
 * since the mask is part of the store format. The levels' rule is also
 * checked against udfs(5)'s words written out here, and its keep rate
 * against t / 2^16.
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "common/prng.h"

/* One rule's threshold, per-element draw and bulk forms. */
struct rule {
	uint64_t (*thr)(double rate);
	bool (*keep)(uint64_t seed, uint64_t idx, uint64_t thr);
	uint64_t (*mask)(uint64_t seed, uint64_t first, size_t n, uint64_t thr,
			 uint64_t *words);
	uint64_t (*bytes)(uint64_t seed, uint64_t first, size_t n, uint64_t thr,
			  uint8_t *keep);
};

static bool keep_v1(uint64_t seed, uint64_t idx, uint64_t thr)
{
	return udfs_seeded_keep(seed, idx, thr);
}

static uint64_t thr_levels(double rate) { return udfs_seeded_levels(rate); }

static bool keep_levels(uint64_t seed, uint64_t idx, uint64_t t)
{
	return udfs_seeded_levels_keep(seed, idx, (uint32_t)t);
}

static uint64_t mask_levels(uint64_t seed, uint64_t first, size_t n, uint64_t t,
			    uint64_t *words)
{
	return udfs_seeded_levels_mask(seed, first, n, (uint32_t)t, words);
}

static uint64_t bytes_levels(uint64_t seed, uint64_t first, size_t n,
			     uint64_t t, uint8_t *keep)
{
	return udfs_seeded_levels_keep_bytes(seed, first, n, (uint32_t)t, keep);
}

static const struct rule per_element = {
    udfs_seeded_threshold, keep_v1, udfs_seeded_mask, udfs_seeded_keep_bytes};
static const struct rule levels = {thr_levels, keep_levels, mask_levels,
				   bytes_levels};

static void check_range(const struct rule *ru, uint64_t seed, double rate,
			uint64_t first, size_t n)
{
	uint64_t thr = ru->thr(rate), want = 0;
	size_t nw = (n + 63) / 64;
	uint64_t *words = malloc((nw + 1) * sizeof(*words));
	uint8_t *keep = malloc(n + 1);
	int bad_mask = 0, bad_bytes = 0;

	CHECK(words && keep);
	words[nw] = 0x5a5a5a5a5a5a5a5aULL; /* must stay untouched */
	keep[n] = 7;
	uint64_t cm = ru->mask(seed, first, n, thr, words);
	uint64_t cb = ru->bytes(seed, first, n, thr, keep);

	for (size_t i = 0; i < n; i++) {
		bool k = ru->keep(seed, first + i, thr);

		want += k;
		bad_mask += (int)((words[i / 64] >> (i % 64) & 1) != k);
		bad_bytes += keep[i] != k;
	}
	if (n % 64)
		CHECK_EQ_INT(words[nw - 1] >> (n % 64), 0);
	CHECK_EQ_INT(bad_mask, 0);
	CHECK_EQ_INT(bad_bytes, 0);
	CHECK_EQ_INT(cm, want);
	CHECK_EQ_INT(cb, want);
	CHECK_EQ_INT(words[nw], 0x5a5a5a5a5a5a5a5aULL);
	CHECK_EQ_INT(keep[n], 7);
	free(words);
	free(keep);
}

/* udfs(5)'s rule as written there: all 16 levels, no skipping. */
static uint64_t spec_word(uint64_t seed, uint64_t block, uint32_t t)
{
	uint64_t w = 0;

	if (t == 1u << 16)
		return ~0ull;
	for (uint64_t k = 0; k < 16; k++) {
		uint64_t r =
		    udfs_mix64(seed + (16 * block + k + 1) * UDFS_GOLDEN64);

		w = (t >> k & 1) ? (w | r) : (w & r);
	}
	return w;
}

static void test_levels_spec(void)
{
	static const double rates[] = {0.0, 0.05, 0.3, 0.5, 0.75, 0.9, 1.0};
	uint64_t words[64];

	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		uint32_t t = udfs_seeded_levels(rates[r]);
		int bad = 0;

		udfs_seeded_levels_mask(77 + r, 64 * 1000, 64 * 64, t, words);
		for (uint64_t b = 0; b < 64; b++)
			bad += words[b] != spec_word(77 + r, 1000 + b, t);
		CHECK_EQ_INT(bad, 0);
	}
	CHECK_EQ_INT(udfs_seeded_levels(0.0), 1u << 16);
	CHECK_EQ_INT(udfs_seeded_levels(1.0), 0);
	CHECK_EQ_INT(udfs_seeded_levels(0.9), 6554); /* round(0.1 * 2^16) */
}

/* The kept share of 2^22 elements within 6 standard deviations of t /
 * 2^16 (a wrong level order or bit would be off by far more). */
static void test_levels_rate(void)
{
	static const double rates[] = {0.02, 0.3, 0.5, 0.9, 0.97, 0.999};
	enum { N = 1 << 22 };
	uint64_t *words = malloc(N / 8);

	CHECK(words);
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		double p = udfs_seeded_levels(rates[r]) / 65536.0;
		double got = (double)udfs_seeded_levels_mask(
				 5, 0, N, udfs_seeded_levels(rates[r]), words) /
			     N;

		CHECK(fabs(got - p) <= 6 * sqrt(p * (1 - p) / N));
	}
	free(words);
}

int main(void)
{
	static const double rates[] = {0.0, 0.1, 0.5, 0.9, 0.99, 1.0};
	static const size_t lens[] = {0, 1, 63, 64, 65, 127, 128, 1000, 4099};
	const struct rule *rules[2] = {&per_element, &levels};
	uint64_t s = 42;

	for (int u = 0; u < 2; u++)
		for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++)
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]);
			     l++)
				for (int k = 0; k < 6; k++) {
					uint64_t seed = udfs_splitmix64(&s);
					uint64_t first =
					    k < 2
						? (uint64_t)k * 64 + (uint64_t)k
						: udfs_splitmix64(&s) >>
						      (k * 8);

					check_range(rules[u], seed, rates[r],
						    first, lens[l]);
				}
	/* a whole 1 MiB BF16 chunk, at the end of the index range too */
	check_range(&per_element, 0x0123456789abcdefULL, 0.9,
		    UINT64_MAX - (1u << 19), 1u << 19);
	check_range(&per_element, 0, 0.5, 1u << 19, 1u << 19);
	check_range(&levels, 0x0123456789abcdefULL, 0.9, 1u << 19, 1u << 19);
	test_levels_spec();
	test_levels_rate();
	CHECK_DONE();
}

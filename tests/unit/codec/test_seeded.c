// SPDX-License-Identifier: MIT
/*
 * Unit tests of the bulk seeded-mask generators (src/common/prng.c):
 * udfs_seeded_mask() and udfs_seeded_keep_bytes() must give exactly the
 * bits of udfs_seeded_keep() per element, for many seeds, drop rates
 * (0 and 1 included), unaligned starts and lengths that are not a
 * multiple of 64, since the mask is part of the store format.
 */
#include <stdlib.h>

#include "check.h"
#include "common/prng.h"

static void check_range(uint64_t seed, double rate, uint64_t first, size_t n)
{
	uint64_t thr = udfs_seeded_threshold(rate), want = 0;
	size_t nw = (n + 63) / 64;
	uint64_t *words = malloc((nw + 1) * sizeof(*words));
	uint8_t *keep = malloc(n + 1);
	int bad_mask = 0, bad_bytes = 0;

	words[nw] = 0x5a5a5a5a5a5a5a5aULL; /* must stay untouched */
	keep[n] = 7;
	CHECK(words && keep);
	uint64_t cm = udfs_seeded_mask(seed, first, n, thr, words);
	uint64_t cb = udfs_seeded_keep_bytes(seed, first, n, thr, keep);

	for (size_t i = 0; i < n; i++) {
		bool k = udfs_seeded_keep(seed, first + i, thr);

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

int main(void)
{
	static const double rates[] = {0.0, 0.1, 0.5, 0.9, 0.99, 1.0};
	static const size_t lens[] = {0, 1, 63, 64, 65, 127, 128, 1000, 4099};
	uint64_t s = 42;

	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
			for (int k = 0; k < 6; k++) {
				uint64_t seed = udfs_splitmix64(&s);
				uint64_t first =
				    k < 2 ? (uint64_t)k * 64 + (uint64_t)k
					  : udfs_splitmix64(&s) >> (k * 8);

				check_range(seed, rates[r], first, lens[l]);
			}
	/* a whole 1 MiB BF16 chunk at the tensor's end of the index range */
	check_range(0x0123456789abcdefULL, 0.9, UINT64_MAX - (1u << 19),
		    1u << 19);
	check_range(0, 0.5, 1u << 19, 1u << 19);
	CHECK_DONE();
}

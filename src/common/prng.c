// SPDX-License-Identifier: MIT
/*
 * The parts of the seeded keep-mask that are not inline (prng.h): the
 * threshold of a drop rate, the key of a tensor and the bulk generators.
 */
#include "common/prng.h"

#include <math.h>
#include <string.h>

#include "common/util.h"

uint64_t udfs_seeded_threshold(double rate)
{
	if (!(rate > 0.0))
		rate = 0.0;
	if (rate > 1.0)
		rate = 1.0;
	/* The only floating-point step; exact IEEE arithmetic, so the same
	 * threshold on every machine. */
	return (uint64_t)llround((1.0 - rate) * 9007199254740992.0);
}

uint64_t udfs_seeded_key(uint64_t model_seed, const char *tensor_name)
{
	return udfs_mix64(model_seed ^ udfs_hash_str(tensor_name));
}

/*
 * The bulk generators run one finalizer per element like udfs_seeded_keep()
 * (the mask is part of the store format), but 64 independent elements at a
 * time: the loop over a block has no dependency between its iterations, so
 * GCC vectorizes the 64-bit multiplies (vpmullq with AVX-512, emulated with
 * AVX2). The clones let one binary use the best the CPU has; elsewhere the
 * plain version is the same arithmetic.
 */
#define SEEDED_CLONES UDFS_CLONES

/* keep[b] for the 64 elements whose splitmix64 states start at x. The
 * signed compare is the unsigned one (both sides are below 2^53) and
 * vectorizes without a bias. */
static inline __attribute__((always_inline)) void
keep64(uint64_t x, uint64_t threshold, uint8_t keep[64])
{
	for (unsigned b = 0; b < 64; b++)
		keep[b] = (int64_t)(udfs_mix64(x + b * UDFS_GOLDEN64) >> 11) <
			  (int64_t)threshold;
}

/* Bit b of the result is keep[b] (0 or 1): eight bytes at a time, each
 * multiply gathering the low bits of eight bytes into its top byte. */
static inline __attribute__((always_inline)) uint64_t
pack64(const uint8_t keep[64])
{
	uint64_t bits = 0;

	for (unsigned i = 0; i < 8; i++) {
		uint64_t v;

		memcpy(&v, keep + 8 * i, 8);
		bits |= ((v * 0x0102040810204080ULL) >> 56) << (8 * i);
	}
	return bits;
}

SEEDED_CLONES
uint64_t udfs_seeded_mask(uint64_t seed, uint64_t first, size_t n,
			  uint64_t threshold, uint64_t *words)
{
	size_t full = n / 64, w;
	uint64_t cnt = 0;
	uint8_t keep[64];

	for (w = 0; w < full; w++) {
		keep64(seed + (first + 64 * w + 1) * UDFS_GOLDEN64, threshold,
		       keep);
		words[w] = pack64(keep);
		cnt += (uint64_t)__builtin_popcountll(words[w]);
	}
	if (n % 64) {
		uint64_t bits = 0;

		for (unsigned b = 0; b < n % 64; b++)
			bits |= (uint64_t)udfs_seeded_keep(
				    seed, first + 64 * w + b, threshold)
				<< b;
		words[w] = bits;
		cnt += (uint64_t)__builtin_popcountll(bits);
	}
	return cnt;
}

SEEDED_CLONES
uint64_t udfs_seeded_keep_bytes(uint64_t seed, uint64_t first, size_t n,
				uint64_t threshold, uint8_t *keep)
{
	size_t i = 0;
	uint64_t cnt = 0;

	for (; i + 64 <= n; i += 64) {
		keep64(seed + (first + i + 1) * UDFS_GOLDEN64, threshold,
		       keep + i);
		for (unsigned b = 0; b < 64; b++)
			cnt += keep[i + b];
	}
	for (; i < n; i++) {
		keep[i] = udfs_seeded_keep(seed, first + i, threshold);
		cnt += keep[i];
	}
	return cnt;
}

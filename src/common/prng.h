/* SPDX-License-Identifier: MIT */
/*
 * xoshiro256** seeded through splitmix64: small, fast and the same on every
 * machine, so a seed names one pruning (ultradelta.c) or one fixture
 * (tests/gen/gen_model.c). Also the seeded keep-mask of the lossy chunks
 * (udfs(5), "Lossy chunk"), which the decoder regenerates from the seed:
 * its bits are part of the store format. The generators are inline: a few
 * instructions in hot loops; prng.c holds the rest.
 */
#ifndef UDFS_PRNG_H
#define UDFS_PRNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct udfs_rng {
	uint64_t s[4];
} udfs_rng;

/* The splitmix64 increment (the golden ratio in 64 bits). */
#define UDFS_GOLDEN64 0x9e3779b97f4a7c15ULL

/* The splitmix64 finalizer: a bijective multiply-xorshift mix of z. */
static inline uint64_t udfs_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Advance *x and return the next splitmix64 output. */
static inline uint64_t udfs_splitmix64(uint64_t *x)
{
	return udfs_mix64(*x += UDFS_GOLDEN64);
}

/* Seed all four words of r from seed through splitmix64. */
static inline void udfs_rng_seed(udfs_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = udfs_splitmix64(&seed);
}

static inline uint64_t udfs_rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* Next 64 random bits (xoshiro256**). */
static inline uint64_t udfs_rng_next(udfs_rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = udfs_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = udfs_rotl64(s[3], 45);
	return res;
}

/*
 * Seeded mask: true when element idx (index within the whole tensor) is
 * kept. Element idx draws output idx of a splitmix64 stream whose state
 * starts at seed (one finalizer per element; the stream passes BigCrush),
 * compared with a threshold derived from the drop rate by integer
 * arithmetic only, so it is identical on every machine and thread, and
 * any chunk can regenerate its own part.
 */
uint64_t udfs_seeded_threshold(double rate);
static inline bool udfs_seeded_keep(uint64_t seed, uint64_t idx,
				    uint64_t threshold)
{
	return (udfs_mix64(seed + (idx + 1) * UDFS_GOLDEN64) >> 11) < threshold;
}

/*
 * The seeded mask of n consecutive elements first .. first + n - 1 at once,
 * bit-identical to udfs_seeded_keep() per element and several times faster
 * (blocks of 64 elements that the compiler vectorizes). udfs_seeded_mask()
 * sets bit b of words[w] when element first + 64 w + b is kept (words holds
 * (n + 63) / 64 entries, bits past n are zero); udfs_seeded_keep_bytes()
 * sets keep[i] to 1 or 0. Both return the number of kept elements.
 */
uint64_t udfs_seeded_mask(uint64_t seed, uint64_t first, size_t n,
			  uint64_t threshold, uint64_t *words);
uint64_t udfs_seeded_keep_bytes(uint64_t seed, uint64_t first, size_t n,
				uint64_t threshold, uint8_t *keep);

/*
 * Seeded mask by levels (chunk mask format 5, written now): the same role,
 * a quarter of the draws. The keep probability is t / 2^16, t =
 * udfs_seeded_levels(rate) in 0..2^16; element idx is bit idx % 64 of the
 * word of its block of 64, B = idx / 64, folded over the levels k = 0..15
 * from W = 0: W = (bit k of t) ? W | R : W & R, R the splitmix64 finalizer
 * of seed + (16 B + k + 1) * UDFS_GOLDEN64 (each step halves the
 * probability and adds bit k's half: after the last it is t / 2^16;
 * t = 2^16 keeps every element). Levels below t's lowest set bit leave W
 * at 0, so they are skipped. Integer arithmetic only, as the first rule.
 * udfs_seeded_levels_keep() is one element (a test's reference);
 * udfs_seeded_levels_mask() and udfs_seeded_levels_keep_bytes() are the
 * bulk forms of udfs_seeded_mask() and udfs_seeded_keep_bytes() (the same
 * outputs and return values).
 */
uint32_t udfs_seeded_levels(double rate);
bool udfs_seeded_levels_keep(uint64_t seed, uint64_t idx, uint32_t t);
uint64_t udfs_seeded_levels_mask(uint64_t seed, uint64_t first, size_t n,
				 uint32_t t, uint64_t *words);
uint64_t udfs_seeded_levels_keep_bytes(uint64_t seed, uint64_t first, size_t n,
				       uint32_t t, uint8_t *keep);

/* Key of a tensor's seeded mask from the model seed and the tensor name. */
uint64_t udfs_seeded_key(uint64_t model_seed, const char *tensor_name);

#endif

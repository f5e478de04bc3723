/* SPDX-License-Identifier: MIT */
/*
 * xoshiro256** seeded through splitmix64: small, fast and the same on every
 * machine, so a seed names one pruning (ultradelta.c) or one fixture
 * (tests/gen/gen_model.c). Header-only: the generator is a few inline
 * instructions in hot loops.
 */
#ifndef UDFS_PRNG_H
#define UDFS_PRNG_H

#include <stdint.h>

typedef struct udfs_rng {
	uint64_t s[4];
} udfs_rng;

/* Advance *x and return the next splitmix64 output. */
static inline uint64_t udfs_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
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

#endif

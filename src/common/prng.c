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

/* ---- seeded mask by levels (prng.h) ------------------------------------ */

#define LEVELS 16 /* bits of the keep probability */

uint32_t udfs_seeded_levels(double rate)
{
	if (!(rate > 0.0))
		rate = 0.0;
	if (rate > 1.0)
		rate = 1.0;
	/* exact IEEE arithmetic, as udfs_seeded_threshold */
	return (uint32_t)llround((1.0 - rate) * (double)(1u << LEVELS));
}

/* The word of block b: bit j keeps element 64 b + j. */
static inline __attribute__((always_inline)) uint64_t
level_word(uint64_t seed, uint64_t b, uint32_t t)
{
	uint64_t x = seed + (b * LEVELS + 1) * UDFS_GOLDEN64, w = 0;

	if (t >= 1u << LEVELS)
		return ~0ull;
	for (unsigned k = t ? (unsigned)__builtin_ctz(t) : LEVELS; k < LEVELS;
	     k++) {
		uint64_t r = udfs_mix64(x + k * UDFS_GOLDEN64);

		w = (t >> k & 1) ? (w | r) : (w & r);
	}
	return w;
}

bool udfs_seeded_levels_keep(uint64_t seed, uint64_t idx, uint32_t t)
{
	return level_word(seed, idx / 64, t) >> (idx % 64) & 1;
}

/* Words of blocks b .. b + 7, eight chains side by side: each level is
 * one multiply-xorshift per word with no dependency between the words,
 * which the compiler vectorizes. */
static inline __attribute__((always_inline)) void
level_words8(uint64_t seed, uint64_t b, uint32_t t, uint64_t w[8])
{
	uint64_t x[8];

	for (int j = 0; j < 8; j++) {
		x[j] = seed + ((b + (uint64_t)j) * LEVELS + 1) * UDFS_GOLDEN64;
		w[j] = t >= 1u << LEVELS ? ~0ull : 0;
	}
	if (t == 0 || t >= 1u << LEVELS)
		return;
	for (unsigned k = (unsigned)__builtin_ctz(t); k < LEVELS; k++) {
		uint64_t add = k * UDFS_GOLDEN64;

		if (t >> k & 1)
			for (int j = 0; j < 8; j++)
				w[j] |= udfs_mix64(x[j] + add);
		else
			for (int j = 0; j < 8; j++)
				w[j] &= udfs_mix64(x[j] + add);
	}
}

SEEDED_CLONES
uint64_t udfs_seeded_levels_mask(uint64_t seed, uint64_t first, size_t n,
				 uint32_t t, uint64_t *words)
{
	size_t nw = (n + 63) / 64, w = 0;
	uint64_t cnt = 0;

	if (first % 64) { /* not at a block: element by element */
		memset(words, 0, nw * sizeof(*words));
		for (size_t i = 0; i < n; i++)
			if (udfs_seeded_levels_keep(seed, first + i, t)) {
				words[i / 64] |= 1ull << (i % 64);
				cnt++;
			}
		return cnt;
	}
	for (; w + 8 <= nw; w += 8)
		level_words8(seed, first / 64 + w, t, words + w);
	for (; w < nw; w++)
		words[w] = level_word(seed, first / 64 + w, t);
	if (n % 64)
		words[nw - 1] &= (1ull << (n % 64)) - 1;
	for (w = 0; w < nw; w++)
		cnt += (uint64_t)__builtin_popcountll(words[w]);
	return cnt;
}

/* keep[0..64) = the bits of w, low first, one 0 or 1 a byte: eight at a
 * time, the multiply copying a byte of w into every byte, the mask keeping
 * bit j in byte j, the add carrying any set bit into the byte's top. */
static inline __attribute__((always_inline)) void bits_to_bytes(uint64_t w,
								uint8_t *keep)
{
	for (int i = 0; i < 8; i++) {
		uint64_t t = ((w >> (8 * i)) & 0xff) * 0x0101010101010101ULL &
			     0x8040201008040201ULL;

		t = (t + 0x7f7f7f7f7f7f7f7fULL) >> 7 & 0x0101010101010101ULL;
		memcpy(keep + 8 * i, &t, 8);
	}
}

SEEDED_CLONES
uint64_t udfs_seeded_levels_keep_bytes(uint64_t seed, uint64_t first, size_t n,
				       uint32_t t, uint8_t *keep)
{
	uint64_t cnt = 0, w[8];
	size_t i = 0;

	if (first % 64) {
		for (; i < n; i++) {
			keep[i] = udfs_seeded_levels_keep(seed, first + i, t);
			cnt += keep[i];
		}
		return cnt;
	}
	for (; i + 512 <= n; i += 512) {
		level_words8(seed, (first + i) / 64, t, w);
		for (int j = 0; j < 8; j++) {
			bits_to_bytes(w[j], keep + i + 64 * (size_t)j);
			cnt += (uint64_t)__builtin_popcountll(w[j]);
		}
	}
	for (; i < n; i += 64) {
		uint64_t word = level_word(seed, (first + i) / 64, t);
		size_t m = n - i < 64 ? n - i : 64;

		for (size_t b = 0; b < m; b++) {
			keep[i + b] = word >> b & 1;
			cnt += keep[i + b];
		}
	}
	return cnt;
}

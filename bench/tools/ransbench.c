// SPDX-License-Identifier: MIT
/*
 * ransbench [-r ROUNDS] [-n CODES] [-b BITS] [-s SIGMA] [-k BLOCK]: the
 * 32-lane rANS value formats of the lossy codec (6: a stream per lane; 7:
 * four streams of eight lanes) side by side, at every vector level the CPU
 * has (bench/SPEED.md, session 29).
 *
 * Draws CODES (default 524288, one 1 MiB BF16 chunk of a dense residual)
 * codes of BITS bits (default 6), a rounded Gaussian of SIGMA codes
 * (default 2.7: 3.5 bits of entropy, as the default model's residual codes)
 * around the middle code, seeded. Encodes them in both formats
 * ROUNDS times (default 40) and decodes them ROUNDS times at each level, as
 * the chunk decoder does, BLOCK codes a call (default 1024); the formats
 * alternate within a round, so that a host changing speed shows in both.
 *
 * Prints one line per format with its bytes and the best round's encoding
 * time, then one per level: "LEVEL: format 6 T6 ns, format 7 T7 ns a
 * code". Exits 1 with a message if a decode differs from the codes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "codec/rans.h"
#include "codec/simd.h"
#include "common/prng.h"
#include "common/util.h"

static const char *const level_name[UDFS_SIMD_LEVELS] = {"scalar", "AVX2",
							 "AVX-512"};

/* n codes of b bits, a rounded Gaussian of sigma around the middle. */
static void make_codes(uint8_t *v, uint32_t n, unsigned b, double sigma)
{
	uint64_t st = 29;
	int top = (1 << b) - 1;

	for (uint32_t j = 0; j < n; j++) {
		double u1 = ((double)(udfs_splitmix64(&st) >> 11) + 1) / 0x1p53;
		double u2 = (double)(udfs_splitmix64(&st) >> 11) / 0x1p53;
		double g = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
		long c = lrint(top / 2.0 + sigma * g);

		v[j] = (uint8_t)(c < 0 ? 0 : c > top ? top : c);
	}
}

/* One decode of sec at the level in force, BLOCK codes a call: seconds,
 * or a negative number when it does not give v back. */
static double decode_once(const uint8_t *sec, size_t len, unsigned b,
			  bool shared, const uint8_t *v, uint32_t n,
			  uint32_t block, struct rans4_slot *tab, float *out)
{
	struct rans32_dec d;
	float lut[256];
	double t0;

	for (int c = 0; c < 256; c++)
		lut[c] = (float)c;
	if (udfs_rans32_dec_init(&d, sec, len, b, shared, lut, tab))
		return -1;
	t0 = udfs_now();
	for (uint32_t at = 0; at < n; at += block)
		udfs_rans32_decode(&d, at, out + at, UDFS_MIN(block, n - at));
	t0 = udfs_now() - t0;
	if (!udfs_rans32_dec_finish(&d))
		return -1;
	for (uint32_t j = 0; j < n; j++)
		if (out[j] != (float)v[j])
			return -1;
	return t0;
}

int main(int argc, char **argv)
{
	int rounds = 40, opt;
	uint32_t n = 524288, block = 1024;
	unsigned b = 6;
	double sigma = 2.7, enc_best[2] = {INFINITY, INFINITY};
	uint8_t *v, *sec[2] = {NULL, NULL};
	size_t len[2] = {0, 0};
	struct rans4_slot *tab = malloc(RANS_M * sizeof(*tab));
	float *out;

	while ((opt = getopt(argc, argv, "r:n:b:s:k:")) != -1) {
		if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 'n')
			n = (uint32_t)strtoul(optarg, NULL, 10);
		else if (opt == 'b')
			b = (unsigned)atoi(optarg);
		else if (opt == 's')
			sigma = atof(optarg);
		else if (opt == 'k')
			block = (uint32_t)strtoul(optarg, NULL, 10);
		else
			return fprintf(
				   stderr,
				   "usage: ransbench [-r ROUNDS] [-n CODES] "
				   "[-b BITS] [-s SIGMA] [-k BLOCK]\n"),
			       1;
	}
	if (rounds < 1 || n < 1 || b < 1 || b > 8 || block < 1 || !tab)
		return fprintf(stderr, "ransbench: bad arguments\n"), 1;
	v = malloc(n);
	out = malloc((size_t)n * sizeof(*out));
	if (!v || !out)
		return fprintf(stderr, "ransbench: out of memory\n"), 1;
	make_codes(v, n, b, sigma);
	for (int r = 0; r < rounds; r++)
		for (int f = 0; f < 2; f++) {
			double t0 = udfs_now();

			free(sec[f]);
			sec[f] = udfs_rans32_encode(v, n, b, f == 1, &len[f]);
			if (!sec[f])
				return fprintf(stderr,
					       "ransbench: out of memory\n"),
				       1;
			enc_best[f] = fmin(enc_best[f], udfs_now() - t0);
		}
	for (int f = 0; f < 2; f++)
		printf("format %d: %zu bytes, encode %.3f ns a code\n", 6 + f,
		       len[f], enc_best[f] * 1e9 / n);
	for (int l = 0; l < UDFS_SIMD_LEVELS; l++) {
		double best[2] = {INFINITY, INFINITY};

		udfs_simd_cap(l);
		if (udfs_simd_level() != l)
			continue;
		for (int r = 0; r < rounds; r++)
			for (int f = 0; f < 2; f++) {
				double t =
				    decode_once(sec[f], len[f], b, f == 1, v, n,
						block, tab, out);

				if (t < 0)
					return fprintf(stderr,
						       "ransbench: format %d "
						       "decodes wrong codes\n",
						       6 + f),
					       1;
				best[f] = fmin(best[f], t);
			}
		printf("%s: format 6 %.3f ns, format 7 %.3f ns a code\n",
		       level_name[l], best[0] * 1e9 / n, best[1] * 1e9 / n);
	}
	free(sec[0]);
	free(sec[1]);
	free(out);
	free(v);
	free(tab);
	return 0;
}

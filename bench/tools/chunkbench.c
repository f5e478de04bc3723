// SPDX-License-Identifier: MIT
/*
 * chunkbench [-s SPARSITY] [-r ROUNDS]: decode time of one seeded lossy
 * chunk, the daemon's work per 1 MiB read of an UltraDelta model with
 * `--mask seeded` (bench/SPEED.md, session 27).
 *
 * The chunk: 2^19 BF16 weights (1 MiB) of a random base, the elements a
 * seeded mask keeps at rate SPARSITY (default 0.9; the add stores rates
 * on a 1/512 grid, e.g. 0.900390625), and 4-bit codes of a Laplace
 * delta, encoded by the add's chunk encoder. Each round copies the base
 * into the output and decodes in place 20 times, as the daemon does after
 * its pread of the base; ROUNDS rounds (default 15).
 *
 * Prints "kept K, B bytes (mask format M, value format V), decode best T
 * us/chunk": the best round's mean, so that a busy host shows less in it.
 * Exits 1 with a message on a bad option or a codec error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/lossy.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"

enum { N = 1 << 19, DECODES = 20 };

static double unif(uint64_t *st)
{
	return (double)(udfs_splitmix64(st) >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv)
{
	double rate = 0.9, best = INFINITY;
	int rounds = 15, opt, ret;
	uint16_t *base = malloc((size_t)N * 2), *out = malloc((size_t)N * 2);
	uint32_t *kept = malloc((size_t)N * 4), n_kept = 0, t;
	uint8_t *codes = malloc(N);
	uint64_t st = 7;
	void *enc = NULL;
	size_t len = 0;
	udfs_lossy_params p = {.mask = UDFS_MASK_SEEDED,
			       .values = UDFS_VAL_CODES,
			       .bits = 4,
			       .lo = -0.0123f,
			       .step = 0.0017f,
			       .seed = 12345};

	while ((opt = getopt(argc, argv, "s:r:")) != -1) {
		if (opt == 's')
			rate = atof(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else
			goto usage;
	}
	if (optind != argc || !(rate >= 0 && rate < 1) || rounds < 1)
		goto usage;
	if (!base || !out || !kept || !codes) {
		fprintf(stderr, "chunkbench: out of memory\n");
		return 1;
	}
	p.rate = rate;
	p.gain = (float)(1 / (1 - rate));
	t = udfs_seeded_levels(rate);
	for (uint32_t i = 0; i < N; i++)
		udfs_dtype_store_f32(UDFS_DT_BF16, base, i,
				     (float)(unif(&st) - 0.5) * 0.1f);
	for (uint32_t i = 0; i < N; i++)
		if (udfs_seeded_levels_keep(p.seed, i, t))
			kept[n_kept++] = i;
	for (uint32_t j = 0; j < n_kept; j++) {
		double u = unif(&st) - 0.5;
		double x = (u < 0 ? 1 : -1) * log(1 - 2 * fabs(u) + 1e-300);
		long c = lrint(7.5 + 1.5 * x);

		codes[j] = (uint8_t)(c < 0 ? 0 : c > 15 ? 15 : c);
	}
	ret = udfs_lossy_encode_chunk(&p, UDFS_DT_BF16, 0, N, kept, n_kept,
				      codes, &enc, &len);
	if (ret < 0) {
		fprintf(stderr, "chunkbench: encode: %s\n",
			udfs_error_msg(ret));
		return 1;
	}
	for (int r = 0; r < rounds; r++) {
		double t0 = udfs_now();

		for (int i = 0; i < DECODES; i++) {
			memcpy(out, base, (size_t)N * 2);
			ret = udfs_lossy_decode_chunk(&p, UDFS_DT_BF16, 0, N,
						      enc, len, out, out);
			if (ret < 0) {
				fprintf(stderr, "chunkbench: decode: %s\n",
					udfs_error_msg(ret));
				return 1;
			}
		}
		best = fmin(best, (udfs_now() - t0) / DECODES);
	}
	printf("kept %u, %zu bytes (mask format %u, value format %u), decode "
	       "best %.1f us/chunk\n",
	       n_kept, len, ((uint8_t *)enc)[0] & 7u,
	       ((uint8_t *)enc)[0] >> 3 & 7u, best * 1e6);
	free(enc);
	free(codes);
	free(kept);
	free(out);
	free(base);
	return 0;
usage:
	fprintf(stderr, "usage: chunkbench [-s SPARSITY (0..1)] [-r ROUNDS]\n");
	return 2;
}

// SPDX-License-Identifier: MIT
/*
 * The lossy decoders allocate nothing per chunk (udfs(5) chunks are decoded
 * by the daemon on a few threads, from per-thread scratch): after a first
 * decode has sized the scratch, decoding chunks of every mask kind, value
 * kind and a composite chunk calls malloc, calloc and realloc zero times.
 * The counting wrappers stand in for glibc's allocator; under ASan, which
 * owns the allocator, the count is not taken and only the decodes run.
 */
#include <stdlib.h>

#include "check.h"
#include "codec/lossy.h"
#include "codec/mix.h"
#include "common/dtype.h"
#include "common/prng.h"

#if defined(__SANITIZE_ADDRESS__)
#define COUNTING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNTING 0
#endif
#endif
#ifndef COUNTING
#define COUNTING 1
#endif

static int n_alloc;

#if COUNTING
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
	n_alloc++;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	n_alloc++;
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	n_alloc++;
	return __libc_realloc(p, n);
}
#endif

enum { N = 1 << 19 }; /* a 1 MiB BF16 chunk */

/* One chunk of mask kind mask and value kind values at drop rate r. */
static void *encode(int mask, int values, double r, uint8_t *vals,
		    uint32_t *kept, udfs_lossy_params *p, size_t *len)
{
	uint64_t thr = udfs_seeded_threshold(r), s = (uint64_t)mask * 7 + 1;
	uint32_t t = udfs_seeded_levels(r);
	uint32_t n_kept = 0;
	void *out = NULL;

	*p = (udfs_lossy_params){.mask = (uint8_t)mask,
				 .values = (uint8_t)values,
				 .bits = 4,
				 .lo = -0.01f,
				 .step = 0.002f,
				 .gain = 2.0f,
				 .rate = mask == UDFS_MASK_NONE ? 0.0 : r,
				 .seed = 99};
	for (uint32_t i = 0; i < N; i++) {
		uint64_t x = udfs_splitmix64(&s);

		if (mask == UDFS_MASK_NONE ||
		    (mask == UDFS_MASK_SEEDED
			 ? udfs_seeded_levels_keep(p->seed, N + i, t)
			 : (x >> 11) >= thr))
			kept[n_kept++] = i;
	}
	for (uint32_t j = 0; j < 2 * n_kept; j++) {
		uint64_t x = udfs_splitmix64(&s);

		vals[j] = values == UDFS_VAL_CODES  ? (uint8_t)(5 + x % 3 - 1)
			  : values == UDFS_VAL_SIGN ? (uint8_t)(x & 1)
						    : (uint8_t)(x % 7);
	}
	CHECK_EQ_INT(udfs_lossy_encode_chunk(p, UDFS_DT_BF16, N, N, kept,
					     n_kept, vals, &out, len),
		     0);
	return out;
}

/* A composite chunk: rank 4 over rows of 1024, and a residual. */
static void *encode_mix(const void *res, size_t res_len, size_t *len)
{
	static uint8_t uc[(N / 1024) * 4], vc[1024 * 4];
	static const float sc[4] = {0.01f, 0.02f, 0.03f, 0.04f};
	udfs_lowrank lr = {.k = 4,
			   .bits = 4,
			   .cols = 1024,
			   .u_codes = uc,
			   .v_codes = vc,
			   .u_scale = sc,
			   .v_scale = sc};
	void *out = NULL;

	for (size_t i = 0; i < sizeof(uc); i++)
		uc[i] = (uint8_t)(i % 15);
	for (size_t i = 0; i < sizeof(vc); i++)
		vc[i] = (uint8_t)(i * 7 % 15);
	CHECK_EQ_INT(udfs_mix_encode_chunk(&lr, N, N, res, res_len, &out, len),
		     0);
	return out;
}

int main(void)
{
	static const double rates[] = {0.9, 0.3};
	uint8_t *base = calloc(N, 2), *out = malloc(2 * (size_t)N);
	uint8_t *vals = malloc(2 * (size_t)N);
	uint32_t *kept = malloc((size_t)N * sizeof(*kept));
	udfs_lossy_params p;

	for (int m = 0; m < 3; m++)
		for (int v = 0; v < 3; v++)
			for (int r = 0; r < 2; r++) {
				size_t len = 0, mlen = 0;
				void *enc = encode(m, v, rates[r], vals, kept,
						   &p, &len);
				void *mix = encode_mix(enc, len, &mlen);
				int before, ret;

				/* the first decodes size the scratch */
				udfs_lossy_decode_chunk(&p, UDFS_DT_BF16, N, N,
							enc, len, base, out);
				udfs_lossy_decode_chunk(&p, UDFS_DT_BF16, N, N,
							mix, mlen, base, out);
				before = n_alloc;
				ret = udfs_lossy_decode_chunk(&p, UDFS_DT_BF16,
							      N, N, enc, len,
							      base, out);
				CHECK_EQ_INT(ret, 0);
				ret = udfs_lossy_decode_chunk(&p, UDFS_DT_BF16,
							      N, N, mix, mlen,
							      base, out);
				CHECK_EQ_INT(ret, 0);
				CHECK_EQ_INT(n_alloc - before, 0);
				free(enc);
				free(mix);
			}
	free(base);
	free(out);
	free(vals);
	free(kept);
	CHECK_DONE();
}

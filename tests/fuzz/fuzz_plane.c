// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the lossless plane codec (udfs_plane_decode in
 * src/codec/codec.c), raw (no base) and against a base, for every element size.
 * The first 4 bytes choose the parameters, the rest is the input:
 *
 *   byte 0  bits 0-1: element size 1, 2, 4, 8
 *           bit 2: against a base (else raw)
 *           bit 3: round-trip mode
 *   byte 1-2  element count % 8193 (LE)
 *   byte 3  in decode mode, a wrong declared element size when non-zero
 *           and bit 4 of byte 0 is set (the chunk must then be refused)
 *
 * Decode mode hands the rest to udfs_plane_decode into an output buffer of
 * exactly n * es bytes (ASan catches any overrun) and requires 0 or -EIO.
 * Round-trip mode takes the rest as the current elements (repeated to fill
 * n * es bytes), encodes them against the base (or raw), decodes and
 * requires the exact bytes back; then it flips one byte of the encoded
 * chunk chosen by the input and requires 0 or -EIO from the decoder.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/plane.h"
#include "common/prng.h"
#include "common/util.h"

#define NMAX 8192

static uint8_t base[NMAX * 8];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void init_base(void)
{
	static int done;
	uint64_t x = 1;

	if (done)
		return;
	for (size_t i = 0; i < sizeof(base); i++) {
		base[i] = (uint8_t)udfs_splitmix64(&x);
	}
	done = 1;
}

static void roundtrip(const uint8_t *b, size_t n, unsigned es, const uint8_t *d,
		      size_t len)
{
	uint8_t *cur = malloc(n + 1), *out = malloc(n + 1);
	void *enc = NULL;
	size_t enc_len = 0;
	int ret;

	/* Runs of the input, so that zstd and zero planes both show up. */
	for (size_t i = 0; i < n; i++)
		cur[i] = len ? d[i % len] : 0;
	if (b && len && d[0] & 1)
		for (size_t i = 0; i < n; i++)
			cur[i] ^= b[i]; /* a small XOR delta */
	ret = udfs_plane_encode(cur, b, n, es, 1, &enc, &enc_len);
	if (ret != 0)
		abort();
	ret = udfs_plane_decode(enc, enc_len, b, n, es, out);
	if (ret != 0 || memcmp(out, cur, n) != 0)
		abort();
	if (enc_len && len > 1) {
		size_t at = (size_t)d[1] * 257 % enc_len;

		((uint8_t *)enc)[at] ^= (uint8_t)(len > 2 && d[2] ? d[2] : 1);
		ret = udfs_plane_decode(enc, enc_len, b, n, es, out);
		if (ret != 0 && ret != -EIO)
			abort();
		udfs_error_clear();
		/* Truncated: always refused. */
		ret = udfs_plane_decode(enc, enc_len - 1, b, n, es, out);
		if (ret != -EIO)
			abort();
		udfs_error_clear();
	}
	free(enc);
	free(out);
	free(cur);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned sizes[4] = {1, 2, 4, 8};
	const uint8_t *b;
	unsigned es;
	size_t n;
	uint8_t *out;
	int ret;

	if (size < 4)
		return 0;
	init_base();
	es = sizes[data[0] & 3];
	b = data[0] & 4 ? base : NULL;
	n = (size_t)((data[1] | data[2] << 8) % (NMAX + 1)) * es;
	if (data[0] & 8) {
		roundtrip(b, n, es, data + 4, size - 4);
		return 0;
	}
	out = malloc(n + 1);
	if (data[0] & 16 && data[3]) {
		/* A byte count that is not a multiple of es, or an es the
		 * codec does not know: must be refused, never decoded. */
		unsigned bad = data[3] % 2 ? es + 8 : es;
		size_t bn = data[3] % 2 ? n : n + (es > 1 ? 1 : 0);

		if (bad != es || bn != n) {
			ret = udfs_plane_decode(data + 4, size - 4, b, bn, bad,
						out);
			if (ret != -EIO)
				abort();
			udfs_error_clear();
		}
	}
	ret = udfs_plane_decode(data + 4, size - 4, b, n, es, out);
	if (ret != 0 && ret != -EIO)
		abort();
	udfs_error_clear();
	free(out);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the lossy chunk codec. The first 8 bytes choose the
 * parameters, the rest is the chunk:
 *
 *   byte 0  mask kind % 3          byte 1  value kind % 3
 *   byte 2  code bits (1..8)       byte 3  dtype (BF16, F16, F32) % 3
 *   byte 4-5  n % 4097 (LE)        byte 6  drop rate / 255
 *   byte 7  bit 0: round-trip mode
 *
 * Decode mode hands the rest to udfs_lossy_decode_chunk against a fixed
 * base and checks it returns 0 or -EIO. Round-trip mode builds a valid
 * chunk from the rest (bits as the explicit mask, bytes as values),
 * encodes it, decodes it and compares with the formula computed directly.
 * Output buffers are exactly n elements, so ASan catches any overrun.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy.h"
#include "codec/trellis.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"

#define NMAX 4096

static uint8_t base[NMAX * 4];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void init_base(void)
{
	static int done;
	uint64_t seed = 1, x;

	if (done)
		return;
	for (size_t i = 0; i < sizeof(base); i++) {
		x = udfs_splitmix64(&seed);
		/* keep exponents small so most bases are ordinary numbers */
		base[i] = (uint8_t)(i % 2 ? (x & 0x3f) | 0x30 : x);
	}
	done = 1;
}

/* The rule of udfs(5) for a finite base weight: a sum past the dtype's
 * range gives its largest finite value of that sign, a sum that is not a
 * number gives the base weight. */
static float finite_sum(int dt, float b, float d)
{
	float w = b + d;
	float max = dt == UDFS_DT_F16	 ? 65504.0f
		    : dt == UDFS_DT_BF16 ? 0x1.fep127f
					 : FLT_MAX;

	if (!isfinite(b) || fabsf(w) <= max)
		return w;
	if (isnan(w))
		return b;
	return w > 0 ? max : -max;
}

static void roundtrip(const udfs_lossy_params *p, int dt, uint32_t n,
		      const uint8_t *d, size_t len)
{
	unsigned es = udfs_dtype_size(dt);
	uint32_t *kept = malloc(((size_t)n + 1) * 4), nk = 0;
	uint8_t *vals = malloc(((size_t)n + 1) * 4), *out = malloc(n * es + 1),
		*want = malloc(n * es + 1);
	uint32_t t = udfs_seeded_levels(p->rate);
	void *enc = NULL;
	size_t enc_len = 0;
	int ret;

	for (uint32_t i = 0; i < n; i++) {
		int k;

		if (p->mask == UDFS_MASK_NONE)
			k = 1;
		else if (p->mask == UDFS_MASK_SEEDED)
			k = udfs_seeded_levels_keep(p->seed, 77 + i, t);
		else
			k = len ? d[(i / 8) % len] >> (i % 8) & 1 : 0;
		if (k)
			kept[nk++] = i;
	}
	for (uint32_t j = 0; j < nk * es; j++)
		vals[j] = len ? d[j % len] : 0;
	if (p->values == UDFS_VAL_CODES)
		for (uint32_t j = 0; j < nk; j++)
			vals[j] &= (uint8_t)((1u << p->bits) - 1);
	if (p->values == UDFS_VAL_SIGN || p->values == UDFS_VAL_TRELLIS)
		for (uint32_t j = 0; j < nk; j++)
			vals[j] &= 1; /* trellis: path bits, fewer than nk */
	memcpy(want, base, n * es);
	for (uint32_t j = 0, s = 0; j < nk; j++) {
		float q, dd, w, b = udfs_dtype_load_f32(dt, base, kept[j]);

		if (p->values == UDFS_VAL_CODES)
			q = p->lo + (float)vals[j] * p->step;
		else if (p->values == UDFS_VAL_SIGN)
			q = vals[j] ? -p->step : p->step;
		else if (p->values == UDFS_VAL_TRELLIS) {
			if (j % p->bits == 0)
				s = (s << 1 | vals[j / p->bits]) & 255;
			q = p->step * udfs_trellis_codebook(s, j % p->bits);
		} else
			q = udfs_dtype_load_f32(dt, vals, j);
		dd = p->gain * q;
		w = finite_sum(dt, b, dd);
		udfs_dtype_store_f32(dt, want, kept[j], w);
	}
	ret = udfs_lossy_encode_chunk(p, dt, 77, n, kept, nk, vals, &enc,
				      &enc_len);
	if (ret != 0)
		abort();
	ret = udfs_lossy_decode_chunk(p, dt, 77, n, enc, enc_len, base, out);
	if (ret != 0 || memcmp(out, want, n * es) != 0)
		abort();
	free(enc);
	free(want);
	free(out);
	free(vals);
	free(kept);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int dts[3] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	udfs_lossy_params p = {.lo = -0.01f,
			       .step = 0.003f,
			       .gain = 10.0f,
			       .seed = 0x1234567890abcdefULL};
	uint8_t *out;
	uint32_t n;
	int dt, ret;

	if (size < 8)
		return 0;
	init_base();
	p.mask = data[0] % 3;
	p.values = data[1] % 4;
	p.bits =
	    (uint8_t)(data[2] % (p.values == UDFS_VAL_TRELLIS ? 4 : 8) + 1);
	dt = dts[data[3] % 3];
	n = (uint32_t)(data[4] | data[5] << 8) % (NMAX + 1);
	p.rate = data[6] / 255.0;
	if (data[7] & 1) {
		roundtrip(&p, dt, n, data + 8, size - 8);
		return 0;
	}
	out = malloc((size_t)n * udfs_dtype_size(dt) + 1);
	ret = udfs_lossy_decode_chunk(&p, dt, 77, n, data + 8, size - 8, base,
				      out);
	if (ret != 0 && ret != -EIO)
		abort();
	udfs_error_clear();
	free(out);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the composite chunks of the adaptive method
 * (src/codec/mix.c). The first 8 bytes choose the parameters, the rest is
 * the chunk:
 *
 *   byte 0  dtype (BF16, F16, F32) % 3     byte 1  cols - 1
 *   byte 2-3  n % 2049 (LE)                byte 4  first element
 *   byte 5  rank % 4 + 1                   byte 6  factor bits % 7 + 2
 *   byte 7  bit 0: round-trip mode
 *
 * Decode mode hands the rest, with its first byte's version bits forced
 * to 2, to udfs_lossy_decode_chunk and checks it returns 0 or -EIO.
 * Round-trip mode builds factors from the rest, encodes a low-rank-only
 * chunk when it fits, decodes it and compares with the reconstruction
 * computed from udfs_lowrank_dequant and udfs_lowrank_expand. Output
 * buffers are exactly n elements, so ASan catches any overrun.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/mix.h"
#include "common/dtype.h"
#include "common/util.h"

#define NMAX 2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(int dt, uint64_t cols, uint64_t first, uint32_t n,
		      uint32_t k, uint32_t bits, const uint8_t *d, size_t len)
{
	unsigned es = udfs_dtype_size(dt);
	uint64_t rows = udfs_lowrank_rows(cols, first, n);
	uint8_t *uc, *vc, *base, *out, *want;
	float us[4], vs[4], *uf, *vf, *acc;
	void *enc = NULL;
	size_t enc_len = 0;
	udfs_lossy_params p = {.values = UDFS_VAL_SIGN, .gain = 1};
	int m = (1 << (bits - 1)) - 1;

	if (!n || !len || (rows + cols) * k > n)
		return;
	uc = malloc(rows * k + 1);
	vc = malloc(cols * k + 1);
	for (uint64_t i = 0; i < rows * k; i++)
		uc[i] = (uint8_t)(d[i % len] % (2 * m + 1));
	for (uint64_t i = 0; i < cols * k; i++)
		vc[i] = (uint8_t)(d[(i + 7) % len] % (2 * m + 1));
	for (uint32_t c = 0; c < k; c++) {
		us[c] = (float)(d[c % len] + 1) * 1e-3f;
		vs[c] = (float)(d[(c + 3) % len] + 1) * 1e-3f;
	}
	base = calloc(n, es);
	out = malloc((size_t)n * es);
	want = malloc((size_t)n * es);
	uf = malloc(rows * k * sizeof(float) + 4);
	vf = malloc(cols * k * sizeof(float) + 4);
	acc = calloc(n, sizeof(float));
	udfs_lowrank_dequant(uc, rows, k, bits, us, uf);
	udfs_lowrank_dequant(vc, cols, k, bits, vs, vf);
	udfs_lowrank_expand(uf, vf, k, cols, first, n, acc);
	for (uint32_t i = 0; i < n; i++)
		udfs_dtype_store_f32(dt, want, i, acc[i]);
	{
		udfs_lowrank lr = {.k = k,
				   .bits = bits,
				   .cols = cols,
				   .u_codes = uc,
				   .v_codes = vc,
				   .u_scale = us,
				   .v_scale = vs};

		if (udfs_mix_encode_chunk(&lr, first, n, NULL, 0, &enc,
					  &enc_len) != 0)
			abort();
	}
	if (udfs_lossy_decode_chunk(&p, dt, first, n, enc, enc_len, base,
				    out) != 0 ||
	    memcmp(out, want, (size_t)n * es) != 0)
		abort();
	free(enc);
	free(acc);
	free(uf);
	free(vf);
	free(want);
	free(out);
	free(base);
	free(uc);
	free(vc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int dts[3] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	static uint8_t base[NMAX * 4];
	udfs_lossy_params p = {.mask = UDFS_MASK_EXPLICIT,
			       .values = UDFS_VAL_CODES,
			       .bits = 3,
			       .lo = -0.01f,
			       .step = 0.003f,
			       .gain = 1.0f};
	uint8_t *out, *chunk;
	uint32_t n;
	int dt, ret;

	if (size < 8)
		return 0;
	dt = dts[data[0] % 3];
	n = (uint32_t)(data[2] | data[3] << 8) % (NMAX + 1);
	if (data[7] & 1) {
		roundtrip(dt, (uint64_t)data[1] + 1, data[4], n,
			  data[5] % 4u + 1, data[6] % 7u + 2, data + 8,
			  size - 8);
		return 0;
	}
	if (size == 8)
		return 0;
	if (data[6] & 0x80) { /* a trellis residual */
		p.mask = UDFS_MASK_NONE;
		p.values = UDFS_VAL_TRELLIS;
		p.bits = (uint8_t)(data[5] % 4 + 1);
	}
	chunk = malloc(size - 8);
	memcpy(chunk, data + 8, size - 8);
	chunk[0] = (uint8_t)((chunk[0] & 0x3f) | 0x80);
	out = malloc((size_t)n * udfs_dtype_size(dt) + 1);
	ret = udfs_lossy_decode_chunk(&p, dt, data[4], n, chunk, size - 8, base,
				      out);
	if (ret != 0 && ret != -EIO && ret != -ENOMEM)
		abort();
	udfs_error_clear();
	free(out);
	free(chunk);
	return 0;
}

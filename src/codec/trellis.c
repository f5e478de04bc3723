// SPDX-License-Identifier: MIT
/*
 * The trellis codebook and path expansion (codec/trellis.h). The codebook
 * is computed, not stored: value j of state s is the sum of the four
 * bytes of a 32-bit integer hash of 4 s + j, less their mean 510, over
 * their standard deviation (an Irwin-Hall sum, close to a Gaussian, which
 * is what a fine-tuning delta looks like). Integer steps and one float
 * multiply give the same bits everywhere.
 */
#include "codec/trellis.h"

/* A 32-bit integer hash with good avalanche (the "lowbias32" of
 * Wellons' hash prospector). */
static uint32_t hash32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

float udfs_trellis_codebook(unsigned s, unsigned j)
{
	uint32_t h = hash32((uint32_t)(s * UDFS_TRELLIS_VMAX + j));
	int sum = (int)(h & 255) + (int)(h >> 8 & 255) + (int)(h >> 16 & 255) +
		  (int)(h >> 24);

	/* 147.8 = sqrt(4 * (256^2 - 1) / 12), the sum's deviation */
	return (float)(sum - 510) * (1.0f / 147.8f);
}

void udfs_trellis_lut(const udfs_lossy_params *p, float *lut)
{
	unsigned v = p->bits;

	for (unsigned s = 0; s < UDFS_TRELLIS_STATES; s++)
		for (unsigned j = 0; j < v; j++)
			lut[s * v + j] =
			    p->gain * (p->step * udfs_trellis_codebook(s, j));
}

void udfs_trellis_expand(const float *lut, unsigned v, const uint8_t *bits,
			 uint32_t n, float *out)
{
	unsigned s = 0;

	for (uint32_t i = 0, t = 0; i < n; t++) {
		s = udfs_trellis_next(s, bits[t]);
		for (unsigned j = 0; j < v && i < n; j++)
			out[i++] = lut[s * v + j];
	}
}

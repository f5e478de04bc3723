/* SPDX-License-Identifier: MIT */
/*
 * The bitshift trellis of the trellis value kind (UDFS_VAL_TRELLIS,
 * udfs(5), "Trellis values"): 256 states, one path bit shifted in a step,
 * v = 1..4 values a step from a fixed pseudo-Gaussian codebook, so v
 * values cost one bit. The decoder only walks the path (codec/lossy.c);
 * the encoder's Viterbi search is write/trellis.c.
 */
#ifndef UDFS_CODEC_TRELLIS_H
#define UDFS_CODEC_TRELLIS_H

#include <stdint.h>

#include "codec/lossy.h"

#define UDFS_TRELLIS_STATES 256
#define UDFS_TRELLIS_VMAX 4

/* The state after state s takes path bit b. */
static inline unsigned udfs_trellis_next(unsigned s, unsigned b)
{
	return (s << 1 | b) & (UDFS_TRELLIS_STATES - 1);
}

/* Codebook value j (< UDFS_TRELLIS_VMAX) of state s: mean 0, variance
 * about 1, the same bits on every machine. */
float udfs_trellis_codebook(unsigned s, unsigned j);

/* The deltas of tensor parameters p (values UDFS_VAL_TRELLIS, bits = v):
 * lut[s * v + j] = gain * (step * codebook(s, j)), 256 * v entries. */
void udfs_trellis_lut(const udfs_lossy_params *p, float *lut);

/* The n values of the path whose bits (one byte, 0 or 1, a step;
 * ceil(n / v) of them) start at state 0: out[i] = lut[s * v + i % v] for
 * the state s of step i / v. */
void udfs_trellis_expand(const float *lut, unsigned v, const uint8_t *bits,
			 uint32_t n, float *out);

#endif

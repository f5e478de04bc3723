/* SPDX-License-Identifier: MIT */
/*
 * The encoder of the trellis value kind (codec/trellis.h): the path of
 * least squared error through the bitshift trellis, by Viterbi search.
 */
#ifndef UDFS_WRITE_TRELLIS_H
#define UDFS_WRITE_TRELLIS_H

#include <stdint.h>

/*
 * The path from state 0 whose values scale * codebook, v (1..4) a step,
 * are nearest x[0..n) in squared error: its ceil(n / v) bits (0 or 1, a
 * byte each) into bits; the last step's missing values count nothing.
 * The same bits on every machine and at every SIMD level. Memory: 16
 * bytes a step. 0 or -ENOMEM.
 */
int udfs_trellis_search(const float *x, uint32_t n, unsigned v, float scale,
			uint8_t *bits);

#endif

// SPDX-License-Identifier: MIT
/*
 * Viterbi search of the bitshift trellis (codec/trellis.h) for the
 * adaptive method's trellis residual. A step takes every state s' =
 * (s << 1 | b) & 255 from the cheaper of its two predecessors, i = s' >> 1
 * and i | 128, which both states 2i and 2i + 1 share: one comparison per
 * pair, kept as one bit of the step's 128 (16 bytes a step, the whole
 * memory of the search, per-thread scratch), then the path is read back from
 * the best final state. The costs are float32, brought back near zero every
 * RENORM steps so that their precision does not fade over a chunk of 512K
 * steps; every level of the loop does the same float operations in the same
 * order, so the path is the same on every machine. About 8-17 ns a value
 * here with AVX-512 (v = 4 to 1), 16-27 with AVX2; the first loop, which
 * read vectors across cache lines, took 16-28 (the encoder runs only on
 * the tensors whose chosen code is a trellis, and on the planner's
 * samples).
 */
#include "write/trellis.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/simd.h"
#include "codec/trellis.h"
#include "common/util.h"

#ifdef UDFS_SIMD_X86
#include <immintrin.h>
#endif

#define NS UDFS_TRELLIS_STATES
#define HALF (NS / 2)
#define RENORM 256

/* The search state: costs of the states now, the codebook scaled and
 * transposed (y[j * NS + s]: value j of state s) and each state's
 * ||y||^2 over a whole step. */
struct search {
	float *cost, *next; /* NS each, in buf */
	unsigned v;	    /* values a whole step */
	/* on cache lines: a vector that spans two costs twice */
	_Alignas(64) float buf[2 * NS];
	_Alignas(64) float dist[NS];
	_Alignas(64) float ysq[NS];
	_Alignas(64) float y[UDFS_TRELLIS_VMAX * NS];
};

/*
 * A state's distance to the step's m values x is ||x - y||^2; the ||x||^2
 * in it is the same for every state and moves no path, so the search
 * adds ||y||^2 - 2<x, y> instead: ysq[s], then per value one multiply and
 * one add (x2 = -2x, exact), in this order at every level. (Fused
 * multiply-adds made the vector loops no faster: a step waits on the
 * previous one's costs more than on arithmetic.)
 */

/* ||y||^2 of state s's first m values, in order. */
static float state_ysq(const struct search *w, unsigned s, unsigned m)
{
	float q = w->y[s] * w->y[s];

	for (unsigned j = 1; j < m; j++)
		q = q + w->y[j * NS + s] * w->y[j * NS + s];
	return q;
}

/* dist[s] for a step of m values (any m: the last step may be short). */
static inline void step_dist(struct search *w, const float *x, unsigned m)
{
	for (unsigned s = 0; s < NS; s++)
		w->dist[s] = m == w->v ? w->ysq[s] : state_ysq(w, s, m);
	for (unsigned j = 0; j < m; j++) {
		float x2 = -2.0f * x[j];

		for (unsigned s = 0; s < NS; s++)
			w->dist[s] = w->dist[s] + x2 * w->y[j * NS + s];
	}
}

/* One step, portable: sel gets bit i set when predecessor i | 128 is the
 * cheaper (strictly) of state 2i's and 2i + 1's. */
static void step_base(struct search *w, const float *x, unsigned m,
		      uint64_t sel[2])
{
	step_dist(w, x, m);
	sel[0] = sel[1] = 0;
	for (unsigned i = 0; i < HALF; i++) {
		float a = w->cost[i], b = w->cost[i + HALF];
		bool hi = b < a;
		float c = hi ? b : a;

		sel[i / 64] |= (uint64_t)hi << (i % 64);
		w->next[2 * i] = c + w->dist[2 * i];
		w->next[2 * i + 1] = c + w->dist[2 * i + 1];
	}
}

/* The next step's costs become the current ones. */
static void swap_costs(struct search *w)
{
	float *t = w->cost;

	w->cost = w->next;
	w->next = t;
}

/* Every cost less the least: the same bits at every level. */
static void renorm(struct search *w)
{
	float least = w->cost[0];

	for (unsigned s = 1; s < NS; s++)
		least = w->cost[s] < least ? w->cost[s] : least;
	for (unsigned s = 0; s < NS; s++)
		w->cost[s] = w->cost[s] - least;
}

/* After step t: the costs become current, brought near zero every
 * RENORM steps so that their precision does not fade. */
static inline void step_done(struct search *w, uint32_t t)
{
	swap_costs(w);
	if (t % RENORM == RENORM - 1)
		renorm(w);
}

#ifdef UDFS_SIMD_X86
/* step_base with AVX2 for a whole step (m = v, a constant: the loop over
 * values unrolled): the same operations, 8 states at once, the distances
 * of states 16k..16k + 15 computed where they are used. */
UDFS_TARGET_AVX2 static inline __attribute__((always_inline)) void
step_avx2(struct search *w, const float *x, unsigned m, uint64_t sel[2])
{
	const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
	const __m256i hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
	__m256 x2[UDFS_TRELLIS_VMAX];
	uint64_t bits[2] = {0, 0};

	for (unsigned j = 0; j < m; j++)
		x2[j] = _mm256_set1_ps(-2.0f * x[j]);
	const float *restrict cost = w->cost, *restrict y = w->y;
	const float *restrict ysq = w->ysq;
	float *restrict next = w->next;

#pragma GCC unroll 16
	for (unsigned k = 0; k < HALF / 8; k++) {
		__m256 a = _mm256_loadu_ps(cost + 8 * k);
		__m256 b = _mm256_loadu_ps(cost + HALF + 8 * k);
		__m256 lt = _mm256_cmp_ps(b, a, _CMP_LT_OQ);
		__m256 c = _mm256_blendv_ps(a, b, lt);
		__m256 d0 = _mm256_loadu_ps(ysq + 16 * k);
		__m256 d1 = _mm256_loadu_ps(ysq + 16 * k + 8);

		for (unsigned j = 0; j < m; j++) {
			const float *yj = y + j * NS + 16 * k;

			d0 = _mm256_add_ps(
			    d0, _mm256_mul_ps(x2[j], _mm256_loadu_ps(yj)));
			d1 = _mm256_add_ps(
			    d1, _mm256_mul_ps(x2[j], _mm256_loadu_ps(yj + 8)));
		}
		bits[k / 8] |= (uint64_t)_mm256_movemask_ps(lt)
			       << (8 * (k % 8));
		_mm256_storeu_ps(
		    next + 16 * k,
		    _mm256_add_ps(_mm256_permutevar8x32_ps(c, lo), d0));
		_mm256_storeu_ps(
		    next + 16 * k + 8,
		    _mm256_add_ps(_mm256_permutevar8x32_ps(c, hi), d1));
	}
	sel[0] = bits[0];
	sel[1] = bits[1];
}

/* The same with AVX-512: 16 states a vector, the choices from a mask. */
UDFS_TARGET_AVX512 static inline __attribute__((always_inline)) void
step_avx512(struct search *w, const float *x, unsigned m, uint64_t sel[2])
{
	const __m512i lo =
	    _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
	const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
					     13, 13, 14, 14, 15, 15);
	__m512 x2[UDFS_TRELLIS_VMAX];
	uint64_t bits[2] = {0, 0};

	for (unsigned j = 0; j < m; j++)
		x2[j] = _mm512_set1_ps(-2.0f * x[j]);
	const float *restrict cost = w->cost, *restrict y = w->y;
	const float *restrict ysq = w->ysq;
	float *restrict next = w->next;

#pragma GCC unroll 8
	for (unsigned k = 0; k < HALF / 16; k++) {
		__m512 a = _mm512_loadu_ps(cost + 16 * k);
		__m512 b = _mm512_loadu_ps(cost + HALF + 16 * k);
		__mmask16 lt = _mm512_cmp_ps_mask(b, a, _CMP_LT_OQ);
		__m512 c = _mm512_mask_blend_ps(lt, a, b);
		__m512 d0 = _mm512_loadu_ps(ysq + 32 * k);
		__m512 d1 = _mm512_loadu_ps(ysq + 32 * k + 16);

		for (unsigned j = 0; j < m; j++) {
			const float *yj = y + j * NS + 32 * k;

			d0 = _mm512_add_ps(
			    d0, _mm512_mul_ps(x2[j], _mm512_loadu_ps(yj)));
			d1 = _mm512_add_ps(
			    d1, _mm512_mul_ps(x2[j], _mm512_loadu_ps(yj + 16)));
		}
		bits[k / 4] |= (uint64_t)lt << (16 * (k % 4));
		_mm512_storeu_ps(
		    next + 32 * k,
		    _mm512_add_ps(_mm512_permutexvar_ps(lo, c), d0));
		_mm512_storeu_ps(
		    next + 32 * k + 16,
		    _mm512_add_ps(_mm512_permutexvar_ps(hi, c), d1));
	}
	sel[0] = bits[0];
	sel[1] = bits[1];
}

/* The whole steps of the search with vector step STEP, each width
 * compiled on its own (m a constant: the loop over values unrolled); the
 * short last step, if any, is left to the caller. The body of
 * forward_avx2 and forward_avx512, which differ in their target only. */
#define FORWARD_STEPS(STEP)                                                    \
	do {                                                                   \
		for (uint32_t t = 0; t < steps; t++) {                         \
			const float *xt = x + (size_t)t * v;                   \
                                                                               \
			if (v == 1)                                            \
				STEP(w, xt, 1, sel[t]);                        \
			else if (v == 2)                                       \
				STEP(w, xt, 2, sel[t]);                        \
			else if (v == 3)                                       \
				STEP(w, xt, 3, sel[t]);                        \
			else                                                   \
				STEP(w, xt, 4, sel[t]);                        \
			step_done(w, t);                                       \
		}                                                              \
	} while (0)

UDFS_TARGET_AVX2 static void forward_avx2(struct search *w, const float *x,
					  uint32_t steps, unsigned v,
					  uint64_t (*sel)[2])
{
	FORWARD_STEPS(step_avx2);
}

UDFS_TARGET_AVX512 static void forward_avx512(struct search *w, const float *x,
					      uint32_t steps, unsigned v,
					      uint64_t (*sel)[2])
{
	FORWARD_STEPS(step_avx512);
}
#endif

/* Steps [from, steps) of the search, portable; the last may be short. */
static void forward_base(struct search *w, const float *x, uint32_t n,
			 unsigned v, uint32_t from, uint64_t (*sel)[2])
{
	for (uint32_t t = from; t * v < n; t++) {
		unsigned m = (unsigned)UDFS_MIN((uint32_t)v, n - t * v);

		step_base(w, x + (size_t)t * v, m, sel[t]);
		step_done(w, t);
	}
}

int udfs_trellis_search(const float *x, uint32_t n, unsigned v, float scale,
			uint8_t *bits)
{
	uint32_t steps = (n + v - 1) / v, done = 0;
	/* scratch: fresh pages cost more in faults than the search */
	uint64_t(*sel)[2] = udfs_scratch(UDFS_SCRATCH_SEARCH,
					 ((size_t)steps + 1) * sizeof(*sel));
	struct search *w = aligned_alloc(64, sizeof(*w));
	unsigned s = 0;

	if (!sel || !w) {
		free(w);
		return -ENOMEM;
	}
	w->cost = w->buf;
	w->next = w->buf + NS;
	w->v = v;
	for (unsigned t = 0; t < NS; t++) {
		w->cost[t] = t == 0 ? 0.0f : INFINITY;
		for (unsigned j = 0; j < v; j++)
			w->y[j * NS + t] = scale * udfs_trellis_codebook(t, j);
		w->ysq[t] = state_ysq(w, t, v);
	}
#ifdef UDFS_SIMD_X86
	{
		int level = udfs_simd_level();

		done = n / v; /* the whole steps */
		if (level >= UDFS_SIMD_AVX512)
			forward_avx512(w, x, done, v, sel);
		else if (level >= UDFS_SIMD_AVX2)
			forward_avx2(w, x, done, v, sel);
		else
			done = 0;
	}
#endif
	forward_base(w, x, n, v, done, sel);
	for (unsigned t = 1; t < NS; t++)
		if (w->cost[t] < w->cost[s])
			s = t;
	for (uint32_t t = steps; t-- > 0;) {
		unsigned i = s >> 1;

		bits[t] = (uint8_t)(s & 1);
		s = sel[t][i / 64] >> (i % 64) & 1 ? i | HALF : i;
	}
	free(w);
	return 0;
}

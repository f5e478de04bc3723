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
 * order, so the path is the same on every machine. A 1 MiB BF16 chunk takes
 * about 20 ms at v = 1 with AVX2 (the encoder runs only on the tensors whose
 * chosen code is a trellis, and on the planner's samples).
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
 * transposed (y[j * NS + s]: value j of state s). */
struct search {
	float *cost, *next; /* NS each, in buf */
	float buf[2 * NS], dist[NS];
	float y[UDFS_TRELLIS_VMAX * NS];
};

/* dist[s] = sum over j < m of (x[j] - y[j][s])^2, in order. */
static inline void step_dist(struct search *w, const float *x, unsigned m)
{
	for (unsigned s = 0; s < NS; s++)
		w->dist[s] = 0.0f;
	for (unsigned j = 0; j < m; j++)
		for (unsigned s = 0; s < NS; s++) {
			float t = x[j] - w->y[j * NS + s];

			w->dist[s] = w->dist[s] + t * t;
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

#ifdef UDFS_SIMD_X86
/* step_base with AVX2: the same operations, 8 states at once; the
 * distances of states 16k..16k + 15 computed where they are used. */
UDFS_TARGET_AVX2 static inline __attribute__((always_inline)) void
step_avx2(struct search *w, const float *x, unsigned m, uint64_t sel[2])
{
	const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
	const __m256i hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
	__m256 xj[UDFS_TRELLIS_VMAX];
	uint64_t bits[2] = {0, 0};

	for (unsigned j = 0; j < m; j++)
		xj[j] = _mm256_set1_ps(x[j]);
	const float *restrict cost = w->cost, *restrict y = w->y;
	float *restrict next = w->next;

#pragma GCC unroll 16
	for (unsigned k = 0; k < HALF / 8; k++) {
		__m256 a = _mm256_loadu_ps(cost + 8 * k);
		__m256 b = _mm256_loadu_ps(cost + HALF + 8 * k);
		__m256 lt = _mm256_cmp_ps(b, a, _CMP_LT_OQ);
		__m256 c = _mm256_blendv_ps(a, b, lt);
		__m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();

		for (unsigned j = 0; j < m; j++) {
			const float *yj = y + j * NS + 16 * k;
			__m256 t0 = _mm256_sub_ps(xj[j], _mm256_loadu_ps(yj));
			__m256 t1 =
			    _mm256_sub_ps(xj[j], _mm256_loadu_ps(yj + 8));

			d0 = _mm256_add_ps(d0, _mm256_mul_ps(t0, t0));
			d1 = _mm256_add_ps(d1, _mm256_mul_ps(t1, t1));
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

/* Every step of the search with AVX2, each width of step compiled on its
 * own (m a constant: the loop over values unrolled). */
UDFS_TARGET_AVX2 static void forward_avx2(struct search *w, const float *x,
					  uint32_t n, unsigned v,
					  uint64_t (*sel)[2])
{
	for (uint32_t t = 0; t * v < n; t++) {
		unsigned m = (unsigned)UDFS_MIN((uint32_t)v, n - t * v);
		const float *xt = x + (size_t)t * v;

		if (m == 1)
			step_avx2(w, xt, 1, sel[t]);
		else if (m == 2)
			step_avx2(w, xt, 2, sel[t]);
		else if (m == 3)
			step_avx2(w, xt, 3, sel[t]);
		else
			step_avx2(w, xt, 4, sel[t]);
		swap_costs(w);
		if (t % RENORM == RENORM - 1)
			renorm(w);
	}
}
#endif

/* Every step of the search, portable. */
static void forward_base(struct search *w, const float *x, uint32_t n,
			 unsigned v, uint64_t (*sel)[2])
{
	for (uint32_t t = 0; t * v < n; t++) {
		unsigned m = (unsigned)UDFS_MIN((uint32_t)v, n - t * v);

		step_base(w, x + (size_t)t * v, m, sel[t]);
		swap_costs(w);
		if (t % RENORM == RENORM - 1)
			renorm(w);
	}
}

int udfs_trellis_search(const float *x, uint32_t n, unsigned v, float scale,
			uint8_t *bits)
{
	uint32_t steps = (n + v - 1) / v;
	/* scratch: fresh pages cost more in faults than the search */
	uint64_t(*sel)[2] = udfs_scratch(UDFS_SCRATCH_SEARCH,
					 ((size_t)steps + 1) * sizeof(*sel));
	struct search *w = malloc(sizeof(*w));
	bool avx2 = false;
	unsigned s = 0;

	if (!sel || !w) {
		free(w);
		return -ENOMEM;
	}
#ifdef UDFS_SIMD_X86
	avx2 = udfs_simd_level() >= UDFS_SIMD_AVX2;
#endif
	w->cost = w->buf;
	w->next = w->buf + NS;
	for (unsigned t = 0; t < NS; t++) {
		w->cost[t] = t == 0 ? 0.0f : INFINITY;
		for (unsigned j = 0; j < v; j++)
			w->y[j * NS + t] = scale * udfs_trellis_codebook(t, j);
	}
#ifdef UDFS_SIMD_X86
	if (avx2)
		forward_avx2(w, x, n, v, sel);
	else
#endif
		forward_base(w, x, n, v, sel);
	(void)avx2;
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

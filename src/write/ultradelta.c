// SPDX-License-Identifier: MIT
/*
 * The UltraDelta algorithm (ARCHITECTURE.md, "Lossy planning") as pure
 * functions over arrays:
 * per-tensor min-max quantization, the variance-based mixed sparsity
 * allocation, group-wise (stratified) random pruning, the seeded and
 * magnitude masks of the baselines, and the paper's ratio accounting.
 *
 * The semantics follow shared/eval/ud_ref.py: quantization in double with
 * round half to even, allocation with the same thresholds, and Python's
 * round() (half to even) wherever the reference rounds a count. Nothing
 * here depends on the FPU rounding mode: the half-even roundings are done
 * explicitly. udfs_compress calls these once per tensor on whole tensors,
 * so memory is O(n) bytes at most (the keep mask) plus O(2^b) counters.
 */
#include "write/ultradelta.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy.h"
#include "common/prng.h"
#include "common/util.h"

/* The highest rate any tensor is given: pruning everything would leave a
 * tensor with no delta at all, and the reference never goes above 0.99 for
 * the high group; low = s + step is not clamped there, so we clamp every
 * rate to this for safety. */
#define MAX_RATE 0.999

/* Round half to even for non-negative x below 2^63, independent of the
 * current rounding mode (numpy.rint and Python's round()). */
static double round_half_even(double x)
{
	double f = floor(x);
	double frac = x - f;

	if (frac > 0.5 || (frac == 0.5 && fmod(f, 2.0) != 0.0))
		f += 1.0;
	return f;
}

/* Lanes of the vectorized extremes: 32 floats, one to four registers
 * (extremes combine exactly, in any order). */
#define MM_LANES 32

UDFS_CLONES
int udfs_ud_minmax(const float *delta, size_t n, double *mn, double *mx)
{
	float lo[MM_LANES], hi[MM_LANES], a = INFINITY, b = -INFINITY;
	int nan[MM_LANES] = {0}, any_nan = 0;
	size_t i = 0;

	for (int l = 0; l < MM_LANES; l++) {
		lo[l] = INFINITY;
		hi[l] = -INFINITY;
	}
	/* Branch-free lanes over local arrays, so that -O2 vectorizes: an
	 * infinity becomes an extreme, a NaN (which fails both comparisons)
	 * sets its lane's flag. */
	for (; i + MM_LANES <= n; i += MM_LANES) {
		float d[MM_LANES];

		memcpy(d, delta + i, sizeof(d));
		for (int l = 0; l < MM_LANES; l++) {
			lo[l] = d[l] < lo[l] ? d[l] : lo[l];
			hi[l] = d[l] > hi[l] ? d[l] : hi[l];
			nan[l] |= d[l] != d[l];
		}
	}
	for (; i < n; i++) {
		a = delta[i] < a ? delta[i] : a;
		b = delta[i] > b ? delta[i] : b;
		any_nan |= delta[i] != delta[i];
	}
	for (int l = 0; l < MM_LANES; l++) {
		a = lo[l] < a ? lo[l] : a;
		b = hi[l] > b ? hi[l] : b;
		any_nan |= nan[l];
	}
	if (any_nan || (n && (!isfinite(a) || !isfinite(b))))
		return udfs_error(-EDOM, "quantize: a delta is %s",
				  any_nan ? "NaN" : "infinite");
	*mn = a;
	*mx = b;
	return 0;
}

int udfs_ud_quantize_params(double mn, double mx, size_t n, unsigned bits,
			    float *lo, float *step)
{
	double levels = (double)((1u << bits) - 1), range = mx - mn;

	if (bits < 1 || bits > 8)
		return udfs_error(-EINVAL, "quantize: %u bits (1..8)", bits);
	if (n == 0 || mx == mn)
		return 1;
	/* F32 deltas spanning nearly twice FLT_MAX: the step would be an
	 * infinity and lo + 0 * step a NaN. Such a tensor stays exact. */
	if (!isfinite((float)(range / levels)))
		return udfs_error(-EDOM, "quantize: range %g too wide", range);
	*lo = (float)mn;
	*step = (float)(range / levels);
	return 0;
}

/* The code of x = (d - mn) / range * levels, x in [0, levels], rounded
 * half to even (rint, in the default rounding mode): exact, and inlined
 * as one rounding instruction where SSE4.1 is there, so that a block of
 * them vectorizes (exact_block). */
static inline int code_exact(double t, double range, double levels)
{
	return (int)rint(t / range * levels);
}

/* Elements per block of the vectorized quantizer. */
#define QBLOCK 64

/*
 * The codes of one block of QBLOCK deltas in float, with no branch, so
 * that the loop vectorizes (a constant trip count and local arrays: -O2's
 * cheap vectorizer takes nothing else). y = (d - mn) * inv is within
 * 2e-7 * levels of the exact x (three float roundings of a value below
 * levels + 1; y + 0.5 adds half an ulp of it), so round(y) = round(x)
 * unless y is within `near` = 1e-3 * levels / 255 of a half, a margin of
 * over 10 at every bit width: *near flags those, for the caller to
 * recompute (exact_block).
 */
UDFS_INLINE void quantize_block(const float *delta, float mnf, float inv,
				int top, float near, uint8_t *out,
				uint8_t *near_half)
{
	float d[QBLOCK];
	uint8_t c8[QBLOCK], nh[QBLOCK];

	memcpy(d, delta, sizeof(d));
	for (int i = 0; i < QBLOCK; i++) {
		float y = (d[i] - mnf) * inv;
		int c = (int)(y + 0.5f); /* y >= 0: floor(y + 0.5) */
		float frac = y - (float)(int)y;

		c = c > top ? top : c;
		c8[i] = (uint8_t)c;
		nh[i] = fabsf(frac - 0.5f) < near;
	}
	memcpy(out, c8, sizeof(c8));
	memcpy(near_half, nh, sizeof(nh));
}

/* The flagged elements of a block again by code_exact, in a loop with no
 * branch that vectorizes: BF16 deltas lie on a coarse grid and land on
 * halves often, and a branch per element of the block cost more than the
 * block. */
UDFS_INLINE void exact_block(const float *delta, double mn, double range,
			     double levels, int64_t top, const uint8_t *nh,
			     uint8_t *codes)
{
	uint8_t c8[QBLOCK];

	for (int k = 0; k < QBLOCK; k++) {
		int c = code_exact((double)delta[k] - mn, range, levels);

		c = c > top ? (int)top : c;
		c8[k] = nh[k] ? (uint8_t)c : codes[k];
	}
	memcpy(codes, c8, sizeof(c8));
}

UDFS_CLONES
void udfs_ud_quantize_range(const float *delta, size_t n, unsigned bits,
			    double mn, double mx, uint8_t *codes)
{
	double levels = (double)((1u << bits) - 1), range = mx - mn;
	float inv = (float)(levels / range);
	float near = (float)(levels * (1e-3 / 255));
	int64_t top = (int64_t)levels;
	uint8_t nh[QBLOCK];
	size_t i = 0;

	/* mn is the smallest delta, a float: exact as mnf. The rare
	 * elements near a half, and the tail, take the exact division. */
	for (; i + QBLOCK <= n; i += QBLOCK) {
		uint64_t any = 0, w;

		quantize_block(delta + i, (float)mn, inv, (int)top, near,
			       codes + i, nh);
		for (int k = 0; k < QBLOCK; k += 8) {
			memcpy(&w, nh + k, 8);
			any |= w;
		}
		if (any)
			exact_block(delta + i, mn, range, levels, top, nh,
				    codes + i);
	}
	for (; i < n; i++)
		codes[i] = (uint8_t)UDFS_MIN(
		    code_exact((double)delta[i] - mn, range, levels), top);
}

int udfs_ud_quantize(const float *delta, size_t n, unsigned bits,
		     uint8_t *codes, float *lo, float *step)
{
	double mn = 0, mx = 0;
	int r;

	if (bits < 1 || bits > 8)
		return udfs_error(-EINVAL, "quantize: %u bits (1..8)", bits);
	r = udfs_ud_minmax(delta, n, &mn, &mx);
	if (!r)
		r = udfs_ud_quantize_params(mn, mx, n, bits, lo, step);
	if (!r)
		udfs_ud_quantize_range(delta, n, bits, mn, mx, codes);
	return r;
}

void udfs_ud_hist(const uint8_t *codes, size_t n, uint64_t *hist)
{
	/* Blocks of at most 2^30 codes, whose counts fit 32 bits. */
	for (size_t i = 0; i < n;) {
		uint32_t h[256],
		    len = (uint32_t)UDFS_MIN(n - i, (size_t)1 << 30);

		udfs_lossy_code_counts(codes + i, len, h);
		for (int c = 0; c < 256; c++)
			hist[c] += h[c];
		i += len;
	}
}

double udfs_ud_hist_std(const uint64_t *hist, float lo, float step)
{
	double mean = 0.0, var = 0.0;
	uint64_t n = 0;

	for (int c = 0; c < 256; c++)
		n += hist[c];
	if (n == 0)
		return 0.0;
	for (int c = 0; c < 256; c++)
		mean += (double)hist[c] * ((double)lo + c * (double)step);
	mean /= (double)n;
	for (int c = 0; c < 256; c++) {
		double q = (double)lo + c * (double)step - mean;

		var += (double)hist[c] * q * q;
	}
	return sqrt(var / (double)n);
}

double udfs_ud_code_std(const uint8_t *codes, size_t n, unsigned bits, float lo,
			float step)
{
	uint64_t hist[256] = {0};

	(void)bits; /* codes above 2^bits - 1 would simply count as well */
	udfs_ud_hist(codes, n, hist);
	return udfs_ud_hist_std(hist, lo, step);
}

/* Order by sigma; the index tie-break makes the sort stable. */
static int cmp_sigma(const void *a, const void *b, void *arg)
{
	const double *sigma = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;

	if (sigma[i] < sigma[j])
		return -1;
	if (sigma[i] > sigma[j])
		return 1;
	return (i > j) - (i < j);
}

static double clamp_rate(double r, double hi)
{
	if (!(r > 0.0))
		return 0.0;
	return r > hi ? hi : r;
}

void udfs_ud_allocate(size_t m, const double *sigma, const uint64_t *nelems,
		      double s, double step, double *rates, int *group)
{
	size_t *order;
	uint64_t total = 0, acc = 0, n_grp[3] = {0, 0, 0};
	double s_low = s + step, s_mid = s, s_high;
	int g;

	if (m == 0)
		return;
	order = udfs_xmalloc(m * sizeof(*order));
	for (size_t i = 0; i < m; i++) {
		order[i] = i;
		total += nelems[i];
	}
	qsort_r(order, m, sizeof(*order), cmp_sigma, (void *)sigma);

	for (size_t k = 0; k < m; k++) {
		size_t i = order[k];

		acc += nelems[i];
		if ((double)acc <= (double)total / 3.0)
			g = 0;
		else if ((double)acc <= 2.0 * (double)total / 3.0)
			g = 1;
		else
			g = 2;
		n_grp[g] += nelems[i];
		/* rates[] doubles as the group store until the end */
		rates[i] = g;
	}
	if (n_grp[2])
		s_high =
		    clamp_rate((s * (double)total - s_mid * (double)n_grp[1] -
				s_low * (double)n_grp[0]) /
				   (double)n_grp[2],
			       0.99);
	else
		s_high = s;

	for (size_t i = 0; i < m; i++) {
		g = (int)rates[i];
		if (group)
			group[i] = g;
		rates[i] = clamp_rate(g == 0   ? s_low
				      : g == 1 ? s_mid
					       : s_high,
				      MAX_RATE);
	}
	free(order);
}

/* Uniform integer in [0, bound), bound > 0, without modulo bias (Lemire). */
static inline uint64_t rng_below(udfs_rng *r, uint64_t bound)
{
	unsigned __int128 m = (unsigned __int128)udfs_rng_next(r) * bound;
	uint64_t l = (uint64_t)m;

	if (__builtin_expect(l < bound, 0)) {
		uint64_t t = -bound % bound;

		while (l < t) {
			m = (unsigned __int128)udfs_rng_next(r) * bound;
			l = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

void udfs_ud_pruner_init(struct udfs_ud_pruner *pr, const uint64_t *hist,
			 double r, uint64_t seed)
{
	r = clamp_rate(r, 1.0);
	for (int c = 0; c < 256; c++) {
		pr->left[c] = hist[c];
		pr->drop[c] = (uint64_t)round_half_even((double)hist[c] * r);
	}
	udfs_rng_seed(&pr->g, seed);
}

int64_t udfs_ud_pruner_walk(struct udfs_ud_pruner *pr, const uint8_t *codes,
			    size_t n, uint8_t *keep)
{
	/* The counters in locals: a byte stored to keep[] may alias pr's
	 * arrays, which would be reloaded after every element. */
	uint64_t left[256], drop[256];
	udfs_rng g = pr->g;
	int64_t kept = 0;

	memcpy(left, pr->left, sizeof(left));
	memcpy(drop, pr->drop, sizeof(drop));
	for (size_t i = 0; i < n; i++) {
		uint8_t c = codes[i];
		uint64_t d = drop[c], l = left[c];
		unsigned k;

		/* The draw only where the group has drops and keeps left (the
		 * same draws as ever); the counts without a branch. */
		if (__builtin_expect(d != 0 && d != l, 1))
			k = rng_below(&g, l) >= d;
		else
			k = d == 0;
		drop[c] = d - (k ^ 1u);
		left[c] = l - 1;
		keep[i] = (uint8_t)k;
		kept += k;
	}
	memcpy(pr->left, left, sizeof(left));
	memcpy(pr->drop, drop, sizeof(drop));
	pr->g = g;
	return kept;
}

/*
 * Selection sampling (Knuth's Algorithm S) per group instead of a shuffle
 * of index lists: walking the tensor once, an element of group c is dropped
 * with probability (drops left in c) / (elements left in c). Every subset
 * of exactly round(n_c * r) elements is equally likely, as with a partial
 * Fisher-Yates, but the memory is O(2^b) counters instead of O(n) indices.
 */
int64_t udfs_ud_prune_groupwise(const uint8_t *codes, size_t n, unsigned bits,
				double r, uint64_t seed, uint8_t *keep)
{
	uint64_t hist[256] = {0};
	struct udfs_ud_pruner pr;

	(void)bits;
	udfs_ud_hist(codes, n, hist);
	udfs_ud_pruner_init(&pr, hist, r, seed);
	return udfs_ud_pruner_walk(&pr, codes, n, keep);
}

int64_t udfs_ud_prune_seeded(size_t n, double r, uint64_t key, uint8_t *keep)
{
	return (int64_t)udfs_seeded_levels_keep_bytes(
	    key, 0, n, udfs_seeded_levels(r), keep);
}

/* |d| as an integer with the same order as the magnitude (NaN above Inf). */
static inline uint32_t abs_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u & 0x7fffffffu;
}

/*
 * Top k by |d| through a two-pass radix select on the bits of |d| (high
 * then low 16 bits): O(n) time, 1 MiB of counters. Elements equal to the
 * threshold are kept in index order, so ties go to the lower index.
 */
int64_t udfs_ud_prune_magnitude(const float *delta, size_t n, double s,
				uint8_t *keep)
{
	uint64_t *hist, k, acc = 0, need;
	uint32_t hi = 0, thr = 0;
	int b;

	s = clamp_rate(s, 1.0);
	k = (uint64_t)n - (uint64_t)round_half_even((double)n * s);
	if (k == 0 || k >= n) {
		memset(keep, k ? 1 : 0, n);
		return (int64_t)(k ? n : 0);
	}
	hist = udfs_xcalloc(65536, sizeof(*hist));
	for (size_t i = 0; i < n; i++)
		hist[abs_bits(delta[i]) >> 16]++;
	for (b = 65535; b >= 0; b--) {
		if (acc + hist[b] >= k)
			break;
		acc += hist[b];
	}
	hi = (uint32_t)b;
	need = k - acc; /* to take from bucket hi, largest first */
	memset(hist, 0, 65536 * sizeof(*hist));
	for (size_t i = 0; i < n; i++) {
		uint32_t a = abs_bits(delta[i]);

		if (a >> 16 == hi)
			hist[a & 0xffff]++;
	}
	acc = 0;
	for (b = 65535; b >= 0; b--) {
		if (acc + hist[b] >= need)
			break;
		acc += hist[b];
	}
	thr = hi << 16 | (uint32_t)b;
	need -= acc; /* elements equal to thr to keep, lowest index first */
	for (size_t i = 0; i < n; i++) {
		uint32_t a = abs_bits(delta[i]);

		if (a > thr) {
			keep[i] = 1;
		} else if (a == thr && need) {
			keep[i] = 1;
			need--;
		} else {
			keep[i] = 0;
		}
	}
	free(hist);
	return (int64_t)k;
}

/* Expected Golomb-Rice bits per kept element for Bernoulli(1 - s) gaps,
 * as golomb_bits() in ud_ref.py: m from the optimal Golomb parameter,
 * rounded down to a power of two for Rice. */
static double golomb_bits(double s)
{
	double p = 1.0 - s, m = 1.0, q;
	int k;

	if (p < 1.0) {
		m = round_half_even(-log(2.0) / log(1.0 - p));
		if (m < 1.0)
			m = 1.0;
	}
	k = (int)floor(log2(m));
	if (k < 0)
		k = 0;
	q = pow(1.0 - p, (double)(1ull << k));
	return 1.0 / (1.0 - q) + k;
}

double udfs_ud_paper_ratio(double s, unsigned bits, int explicit_mask)
{
	double g;

	if (s >= 1.0)
		return INFINITY;
	g = explicit_mask ? golomb_bits(s) : 0.0;
	return 16.0 / ((1.0 - s) * (bits + g));
}

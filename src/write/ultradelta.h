/* SPDX-License-Identifier: MIT */
/*
 * The UltraDelta algorithm (ARCHITECTURE.md, "Lossy planning") as pure
 * functions over arrays, with no I/O: min-max quantization, variance-based
 * mixed sparsity allocation, group-wise (distribution-aware) pruning, and the
 * pieces of the baselines. udfs_compress drives them tensor by tensor.
 */
#ifndef UDFS_ULTRADELTA_H
#define UDFS_ULTRADELTA_H

#include <stddef.h>
#include <stdint.h>

#include "common/prng.h"

/*
 * Asymmetric min-max quantization of n deltas to b bits (1..8):
 * code = rint((d - min) / (max - min) * (2^b - 1)), round half to even.
 * Sets *lo = min and *step = (max - min) / (2^b - 1) as float32.
 * Returns 0, 1 when the tensor is constant (max == min: no codes written;
 * store it exactly instead), or -EDOM when a delta is NaN or infinite or
 * the step does not fit a float.
 */
int udfs_ud_quantize(const float *delta, size_t n, unsigned bits,
		     uint8_t *codes, float *lo, float *step);

/*
 * The pieces of udfs_ud_quantize, for callers that quantize a tensor in
 * parallel slices with the same codes: the extremes of n deltas (-EDOM
 * when one is NaN or infinite; the extremes of several slices combine by
 * min and max), lo and step from the extremes (1 when constant, as
 * udfs_ud_quantize), and the codes of any slice given the whole tensor's
 * extremes.
 */
int udfs_ud_minmax(const float *delta, size_t n, double *mn, double *mx);
int udfs_ud_quantize_params(double mn, double mx, size_t n, unsigned bits,
			    float *lo, float *step);
void udfs_ud_quantize_range(const float *delta, size_t n, unsigned bits,
			    double mn, double mx, uint8_t *codes);

/* Add the count of each code of codes[n] to hist[256]. */
void udfs_ud_hist(const uint8_t *codes, size_t n, uint64_t *hist);
/* Population standard deviation of the quantized values lo + code*step,
 * from the codes' histogram (256 counts) or from the codes. */
double udfs_ud_hist_std(const uint64_t *hist, float lo, float step);
double udfs_ud_code_std(const uint8_t *codes, size_t n, unsigned bits, float lo,
			float step);

/*
 * Mixed sparsity allocation over m tensors: sort by sigma ascending, walk
 * accumulating nelems; running total <= N/3 is low, <= 2N/3 mid, else high.
 * rate = s + step (low), s (mid), and for high the budget-exact
 * clamp((s*N - s*N_mid - (s+step)*N_low) / N_high, 0, 0.99).
 * Writes rates[m] and, when group is not NULL, group[m] (0 low, 1 mid,
 * 2 high). Ties in sigma keep the input order.
 */
void udfs_ud_allocate(size_t m, const double *sigma, const uint64_t *nelems,
		      double s, double step, double *rates, int *group);

/*
 * Group-wise pruning: among the n elements sharing each code value, drop
 * exactly round(n_group * r) chosen uniformly at random by a PRNG seeded
 * with seed. keep[i] is set to 1 for kept elements, 0 for dropped ones.
 * Returns the number kept, or -ENOMEM.
 */
int64_t udfs_ud_prune_groupwise(const uint8_t *codes, size_t n, unsigned bits,
				double r, uint64_t seed, uint8_t *keep);

/*
 * The same walk in pieces, for a caller that encodes the first chunks of
 * a tensor while the rest is pruned: init with the histogram of the
 * tensor's codes (hist[c]: elements of code c), then walk the codes in
 * order in any number of pieces. The keep bytes are those of
 * udfs_ud_prune_groupwise; each walk returns the elements it kept.
 */
struct udfs_ud_pruner {
	uint64_t left[256], drop[256];
	udfs_rng g;
};
void udfs_ud_pruner_init(struct udfs_ud_pruner *pr, const uint64_t *hist,
			 double r, uint64_t seed);
int64_t udfs_ud_pruner_walk(struct udfs_ud_pruner *pr, const uint8_t *codes,
			    size_t n, uint8_t *keep);

/* Bernoulli keep-mask with the seeded mask by levels (common/prng.h). */
int64_t udfs_ud_prune_seeded(size_t n, double r, uint64_t key, uint8_t *keep);

/* magnitude baseline: keep the top k = n - round(n*s) elements by |d|
 * (ties by index). Returns the number kept or -ENOMEM. */
int64_t udfs_ud_prune_magnitude(const float *delta, size_t n, double s,
				uint8_t *keep);

/* Paper ratio accounting for 16-bit models: 16 / ((1-s) * (b + G(s))),
 * G the expected Golomb-Rice bits per kept element (0 for a seeded mask). */
double udfs_ud_paper_ratio(double s, unsigned bits, int explicit_mask);

#endif

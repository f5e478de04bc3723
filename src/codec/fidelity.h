/* SPDX-License-Identifier: MIT */
/*
 * How far a reconstructed (lossy) delta is from the true one: sums over
 * elements from which the relative L2 error, the cosine similarity and the
 * SNR follow. Used by `udfs eval` on a stored model and by `udfs-compress
 * add` on the chunks it has just encoded, so both report the same numbers.
 */
#ifndef UDFS_FIDELITY_H
#define UDFS_FIDELITY_H

#include <stdint.h>

/* Sums over elements, with ds = W_src - W_base, dr = W_rec - W_base. */
typedef struct udfs_fidelity {
	double err2;	/* sum (dr - ds)^2 */
	double src2;	/* sum ds^2 */
	double rec2;	/* sum dr^2 */
	double dot;	/* sum dr * ds */
	double max_abs; /* max |W_rec - W_src| */
	uint64_t n;	/* elements */
} udfs_fidelity;

/* Add n elements of dtype (F16, BF16 or F32) from the three arrays. */
void udfs_fidelity_add(udfs_fidelity *f, int dtype, const void *base,
		       const void *rec, const void *src, uint64_t n);
/* a += b. */
void udfs_fidelity_merge(udfs_fidelity *a, const udfs_fidelity *b);
/* ||dr - ds|| / ||ds||: 0 when exact, infinite when ds is 0 and dr not. */
double udfs_fidelity_rel_err(const udfs_fidelity *f);
/* dr . ds / (||dr|| ||ds||); 1 when both are 0, 0 when only one is. */
double udfs_fidelity_cosine(const udfs_fidelity *f);
/* 10 log10(||ds||^2 / ||dr - ds||^2) dB; infinite when exact. */
double udfs_fidelity_snr_db(const udfs_fidelity *f);

#endif

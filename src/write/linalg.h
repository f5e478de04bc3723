/* SPDX-License-Identifier: MIT */
/*
 * Dense linear algebra of the lossy planners (linalg.c, the only file that
 * includes LAPACKE: only udfs-compress links OpenBLAS).
 */
#ifndef UDFS_LINALG_H
#define UDFS_LINALG_H

#include <stddef.h>
#include <stdint.h>

/*
 * Nuclear norm (sum of singular values) of a rows x cols float32 matrix,
 * row-major, from the eigenvalues of its smaller Gram matrix in float32
 * (ssyrk + ssyevd, no vectors; linalg.c says how close it comes); cost
 * O(rows*cols*min(rows,cols)), memory min(rows, cols)^2 floats.
 * Returns 0 and *out, or -errno with a message.
 */
int udfs_nuclear_norm(const float *m, size_t rows, size_t cols, double *out);

/*
 * An estimate of the same norm by stochastic Lanczos quadrature that never
 * forms the Gram matrix (linalg.c says how, and how close it comes): cost
 * O(rows*cols), about 600 rows*cols multiplications, memory 2.5 KiB per
 * unit of min(rows, cols); of a matrix at most a quarter nonzero (a pruned
 * delta), about 600 multiplications per nonzero through a compressed-rows
 * copy (8 bytes per nonzero). Deterministic: the probes are seeded from
 * the shape, so the same matrix always gives the same double. Below 48
 * rows or columns it is udfs_nuclear_norm. 0 and *out, or -errno with a
 * message.
 */
int udfs_nuclear_norm_slq(const float *m, size_t rows, size_t cols,
			  double *out);

/* min(rows, cols) up to which udfs_nuclear_norm_auto is always exact. */
#define UDFS_NUCLEAR_EXACT_MAX 512

/* udfs_nuclear_norm up to UDFS_NUCLEAR_EXACT_MAX rows or columns, and
 * above where it is the cheaper (a dense, much taller than wide matrix
 * below about 2800 columns: linalg.c's slq_cheaper), else
 * udfs_nuclear_norm_slq: what the trace-norm rescale uses. 0 and *out, or
 * -errno. */
int udfs_nuclear_norm_auto(const float *m, size_t rows, size_t cols,
			   double *out);

/*
 * A rows x cols float32 matrix in compressed rows, for a mostly zero one:
 * row r's nonzeros are val[ptr[r], ptr[r + 1]), in increasing columns
 * col[]; ptr has rows + 1 entries. Free the arrays with udfs_csr_free.
 */
typedef struct udfs_csr {
	size_t rows, cols;
	uint64_t *ptr;
	uint32_t *col;
	float *val;
} udfs_csr;

void udfs_csr_free(udfs_csr *a);

/*
 * udfs_nuclear_norm_auto of the matrix a holds, the same double, without
 * the dense matrix where the estimate goes through compressed rows (above
 * UDFS_NUCLEAR_EXACT_MAX rows and columns, at most a quarter nonzero);
 * else through a dense copy. 0 and *out, or -errno with a message.
 */
int udfs_nuclear_norm_csr(const udfs_csr *a, double *out);

/* The sum of squares of d[0, n) in double (||M||_F^2 of a matrix), in
 * eight lanes that -O2 vectorizes (one running sum made each element wait
 * for the previous one), added in a fixed order. */
double udfs_sum_squares(const float *d, uint64_t n);
/* The same over pieces: udfs_sumsq_add() of consecutive pieces, each but
 * the last a multiple of 8 elements, then udfs_sumsq_end(), gives the
 * bits of udfs_sum_squares() of the whole. Start from {{0}, 0}. */
typedef struct udfs_sumsq {
	double lane[8];
	double tail; /* the elements past the last multiple of 8 */
} udfs_sumsq;
void udfs_sumsq_add(udfs_sumsq *a, const float *d, uint64_t n);
double udfs_sumsq_end(const udfs_sumsq *a);
/* The dot product of a[0, n) and b[0, n) in double, the same way. */
double udfs_dot(const float *a, const float *b, uint64_t n);

/*
 * Threads of each BLAS/LAPACK call from now on (process-wide). Callers that
 * run one decomposition per worker thread set 1: OpenBLAS's own threads
 * would only contend with them, and results then do not depend on --jobs.
 */
void udfs_blas_threads(int n);

/*
 * Thin SVD M = U diag(s) V^T of a rows x cols float32 matrix, row-major,
 * through LAPACKE sgesdd: with k = min(rows, cols), u receives rows x k
 * and v cols x k (both row-major, column c the c-th singular vector), s
 * the k singular values in descending order. 0 or -errno with a message.
 */
int udfs_svd(const float *m, size_t rows, size_t cols, float *u, float *s,
	     float *v);

/*
 * The kmax largest singular triplets only, through the smaller Gram matrix
 * G (M M^T or M^T M): its k largest eigenpairs by subspace iteration from a
 * fixed start block (deterministic; linalg.c says how close it comes) where
 * the block of k + k/4 + 8 columns is at most half of G, else by ssyevr,
 * then one product with M for the other side. Several times faster than
 * udfs_svd when kmax is small, and as accurate for the leading triplets
 * (a float32 Gram loses the smallest ones, which are not asked for).
 * u: rows x k, v: cols x k row-major, k = min(kmax, rows, cols).
 * 0 or -errno with a message.
 */
int udfs_svd_top(const float *m, size_t rows, size_t cols, size_t kmax,
		 float *u, float *s, float *v);

#endif

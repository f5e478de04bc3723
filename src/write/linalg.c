// SPDX-License-Identifier: MIT
/*
 * Dense linear algebra for the trace-norm rescale (ARCHITECTURE.md, "Lossy
 * planning") and the adaptive method. This is the only file that includes
 * LAPACKE.
 *
 * Of a large matrix the trace-norm rescale takes an estimate of the
 * nuclear norm instead (udfs_nuclear_norm_slq, stochastic Lanczos
 * quadrature, at the end of this file); what follows is the exact one.
 *
 * The nuclear norm is the sum of the square roots of the eigenvalues of
 * the smaller Gram matrix (M M^T or M^T M), formed and decomposed in
 * float32 (ssyrk, then ssyevd without vectors): a BLAS-3 product instead
 * of sgesdd's bidiagonalization, which is mostly memory-bound BLAS-2 and
 * took seconds per large tensor (table below). Eigenvalues within
 * rounding of zero are taken as zero singular values. In float32 the
 * smallest singular values of a square matrix come out with
 * sqrt(float epsilon) of the largest as their error: on pruned deltas
 * (tests/unit/write/test_linalg.c) the sum moves by 1e-7 to 3e-4 against
 * a double decomposition, in the same direction for every model of a
 * group, which is what the trace-norm factor (a ratio of sums) sees; the
 * double one took twice the time and a double copy of the matrix.
 *
 * udfs_svd's sgesdd destroys its input, so the matrix is copied once. A
 * row-major
 * rows x cols matrix is the column-major cols x rows matrix of its
 * transpose, which has the same singular values, so it is handed to LAPACK
 * column-major as it lies: that skips the transposed copy LAPACKE makes for
 * LAPACK_ROW_MAJOR.
 *
 * Cost of one nuclear norm, measured with tests/unit/test_linalg
 * (UDFS_BENCH=1, OPENBLAS_NUM_THREADS=1) on this machine (2 cores shared
 * with other builds, OpenBLAS pthread, random matrices; pruned 10%-dense
 * ones for the last two columns, bench in the commit that made it float):
 *
 *   size           sgesdd 'N'   double Gram + dsyevd   float Gram + ssyevd
 *   512 x 512      0.02 s       0.02 s
 *   1024 x 1024    0.13 s       0.14-0.23 s            0.09-0.13 s
 *   2048 x 2048    1.0 s        1.0 s
 *   4096 x 1024    0.56 s       0.22 s
 *   13948 x 1024                0.73-0.95 s            0.25-0.45 s
 *
 * Real tensors are mostly tall or wide (MLP, embeddings): a group add of
 * two 128 MiB models spent 77 s in sgesdd, 2 threads. One thread per call
 * is as fast on a loaded 2-core machine, so callers run tensors in
 * parallel and pin OpenBLAS to one thread. Time grows as O(rows * cols *
 * min(rows, cols)); memory is the min(rows, cols)^2 Gram matrix.
 */
#include "write/linalg.h"

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/prng.h"
#include "common/util.h"

/* The Gram matrix of m in float, column-major n x n upper triangle (n =
 * the smaller dimension): G = M M^T (rows <= cols) or M^T M. A row-major
 * rows x cols matrix is column-major cols x rows (ld cols): M M^T = A^T A
 * there, M^T M = A A^T. */
static void gram_f32(const float *m, size_t rows, size_t cols, float *g)
{
	bool wide = rows <= cols;
	size_t n = wide ? rows : cols;

	cblas_ssyrk(CblasColMajor, CblasUpper, wide ? CblasTrans : CblasNoTrans,
		    (blasint)n, (blasint)(wide ? cols : rows), 1.0f, m,
		    (blasint)cols, 0.0f, g, (blasint)n);
}

/* Sum of the square roots of the eigenvalues w[0, k) (ascending) above
 * the rounding noise of a float32 decomposition: those within k ulps of
 * the largest are zero singular values, not sqrt(noise). */
static double sqrt_sum(const float *w, size_t k)
{
	double top = w[k - 1] > 0 ? w[k - 1] : 0, sum = 0.0;
	double floor_ev = (double)k * 1.19e-7 * top;

	for (size_t i = 0; i < k; i++)
		if (w[i] > floor_ev)
			sum += sqrt((double)w[i]);
	return sum;
}

int udfs_nuclear_norm(const float *m, size_t rows, size_t cols, double *out)
{
	size_t k = rows < cols ? rows : cols;
	float *g = NULL, *w = NULL;
	lapack_int info;
	int ret = 0;

	*out = 0.0;
	if (k == 0)
		return 0;
	if (rows > INT_MAX || cols > INT_MAX || rows > SIZE_MAX / 4 / cols)
		return udfs_error(
		    -EINVAL,
		    "nuclear norm: %zu x %zu matrix is too large for LAPACK",
		    rows, cols);
	g = calloc(k * k, sizeof(*g));
	w = malloc(k * sizeof(*w));
	if (!g || !w) {
		ret = udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				 rows, cols);
		goto out;
	}
	gram_f32(m, rows, cols, g);
	info = LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'N', 'U', (lapack_int)k, g,
			      (lapack_int)k, w);
	if (info != 0) {
		ret = udfs_error(
		    -EIO,
		    "nuclear norm: LAPACKE_ssyevd on %zu x %zu: info %d%s", k,
		    k, (int)info,
		    info > 0 ? " (no convergence)"
			     : " (bad argument or no memory)");
		goto out;
	}
	*out = sqrt_sum(w, k);
out:
	free(w);
	free(g);
	return ret;
}

void udfs_blas_threads(int n) { openblas_set_num_threads(n); }

int udfs_svd(const float *m, size_t rows, size_t cols, float *u, float *s,
	     float *v)
{
	size_t k = rows < cols ? rows : cols;
	float *a = NULL, *lu = NULL, *lvt = NULL;
	lapack_int info;
	int ret = 0;

	if (k == 0)
		return 0;
	if (rows > INT_MAX || cols > INT_MAX || rows > SIZE_MAX / 4 / cols)
		return udfs_error(
		    -EINVAL, "SVD: %zu x %zu matrix is too large for LAPACK",
		    rows, cols);
	a = malloc(rows * cols * sizeof(*a));
	lu = malloc(cols * k * sizeof(*lu));
	lvt = malloc(k * rows * sizeof(*lvt));
	if (!a || !lu || !lvt) {
		ret = udfs_error(-ENOMEM, "SVD: %zu x %zu matrix", rows, cols);
		goto out;
	}
	memcpy(a, m, rows * cols * sizeof(*a));
	/* Callers run one SVD per worker thread: OpenBLAS's own threads
	 * would only spin against them (see the timings above). */
	openblas_set_num_threads(1);
	/* LAPACK sees M^T (cols x rows, column-major) = U' S V'^T, so
	 * M = V' S U'^T: M's left vectors are the rows of V'^T, its right
	 * vectors the columns of U'. */
	info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)cols,
			      (lapack_int)rows, a, (lapack_int)cols, s, lu,
			      (lapack_int)cols, lvt, (lapack_int)k);
	if (info != 0) {
		ret = udfs_error(
		    -EIO, "SVD: LAPACKE_sgesdd on a %zu x %zu matrix: info %d",
		    rows, cols, (int)info);
		goto out;
	}
	/* lvt is k x rows column-major: row-major rows x k already. */
	memcpy(u, lvt, k * rows * sizeof(*u));
	for (size_t j = 0; j < cols; j++)
		for (size_t c = 0; c < k; c++)
			v[j * k + c] = lu[j + c * cols];
out:
	free(lvt);
	free(lu);
	free(a);
	return ret;
}

/* Eigen-decomposition of the Gram matrix g (n x n, column-major, upper
 * triangle): the k largest eigenvalues ascending into w, their
 * eigenvectors into z (n x k, column-major). */
static int gram_eig(float *g, size_t n, size_t k, float *w, float *z)
{
	lapack_int m = 0, info, *isuppz = malloc(2 * k * sizeof(*isuppz));

	/* Only the k largest pairs (RRR): the vectors of the others, which
	 * a full decomposition computes and back-transforms, are never
	 * used. */
	if (!isuppz)
		return udfs_error(-ENOMEM, "SVD: %zu x %zu", n, n);
	info = LAPACKE_ssyevr(LAPACK_COL_MAJOR, 'V', 'I', 'U', (lapack_int)n, g,
			      (lapack_int)n, 0.0f, 0.0f,
			      (lapack_int)(n - k + 1), (lapack_int)n, 0.0f, &m,
			      w, z, (lapack_int)n, isuppz);
	free(isuppz);
	if (info != 0 || (size_t)m != k)
		return udfs_error(-EIO,
				  "SVD: LAPACKE_ssyevr on %zu x %zu: info %d",
				  n, n, (int)info);
	return 0;
}

/*
 * Subspace iteration (udfs_svd_top's comment in linalg.h says when it
 * runs): a block of l = k + k/4 + 8 columns, drawn from a fixed splitmix64
 * stream (the same block for every matrix, so the result depends on the
 * matrix only), multiplied by G (subspace_iters times) and orthonormalized
 * after every second product, then the Rayleigh-Ritz step: the eigenpairs
 * of the l x l matrix Q^T G Q give the k largest Ritz values and vectors,
 * in gram_eig's layout. Each step is a BLAS-3 product, where the
 * tridiagonal reduction of a full eigensolver is 4/3 n^3 of mostly
 * memory-bound BLAS-2 (3/4 of the SVD's time on 512 x 512 Gram matrices).
 * A component of eigenvalue lambda_i left in the block shrinks as
 * (lambda_l / lambda_i)^iters: the leading vectors come out as the exact
 * ones; the last of the k, where the spectrum is flat, mix with their
 * neighbours, which costs the rank-k approximation little of its captured
 * energy: on 512 x 1024 chunks of flat spectra (random, or a gen_model
 * fine-tune's delta beyond its first few directions), where every rank-k
 * choice is about as good, the residual energy of ranks 4-8 (two
 * products) and 16-64 (four) is 0.3-1.2% above the truncated SVD's;
 * tests/unit/write/test_linalg.c bounds it at 2%. Two products without
 * a QR between them square the spread of the columns' norms, which
 * Householder QR takes at float precision.
 *
 * G is applied either as formed (n^2 l per product, after n^2 m / 2 to
 * form it) or as M^T then M (2 n m l per product, m the larger
 * dimension), whichever costs fewer multiplications: a small rank, as the
 * encoder asks, never forms G.
 */
static size_t subspace_cols(size_t k) { return k + k / 4 + 8; }

/* Products with G: a block of twice k columns or more (k <= 10, the ranks
 * the default add mostly keeps) converges faster per product, as
 * lambda_l / lambda_k is then smaller, and takes two; a larger k four. */
static int subspace_iters(size_t k)
{
	return subspace_cols(k) >= 2 * k ? 2 : 4;
}

/* G = M M^T (rows <= cols) or M^T M, as formed (g, column-major upper
 * triangle) or implicit (g NULL: two products with m, or with sp where M
 * is mostly zeros). */
struct gram_op {
	const float *m, *g;
	const udfs_csr *sp;
	size_t rows, cols, n, other;
	bool wide;
	float *tmp; /* other x l, the dense implicit form's middle product */
	float *qt, *zt; /* sp: n x l blocks, row-major (csr_apply) */
};

static void csr_apply(const struct gram_op *op, const float *q, size_t l,
		      float *z);

/* z = G q for an n x l column-major block q. A row-major M is the
 * column-major cols x rows A = M^T: M M^T = A^T A, M^T M = A A^T. */
static void gram_apply(const struct gram_op *op, const float *q, size_t l,
		       float *z)
{
	blasint n = (blasint)op->n, o = (blasint)op->other,
		ld = (blasint)op->cols;

	if (op->sp) {
		csr_apply(op, q, l, z);
		return;
	}
	if (op->g) {
		cblas_ssymm(CblasColMajor, CblasLeft, CblasUpper, n, (blasint)l,
			    1.0f, op->g, n, q, n, 0.0f, z, n);
		return;
	}
	cblas_sgemm(CblasColMajor, op->wide ? CblasNoTrans : CblasTrans,
		    CblasNoTrans, o, (blasint)l, n, 1.0f, op->m, ld, q, n, 0.0f,
		    op->tmp, o);
	cblas_sgemm(CblasColMajor, op->wide ? CblasTrans : CblasNoTrans,
		    CblasNoTrans, n, (blasint)l, o, 1.0f, op->m, ld, op->tmp, o,
		    0.0f, z, n);
}

/* Orthonormal columns in place of the n x l column-major block q
 * (Householder QR: stable however far apart the columns' norms are). */
static int orthonormalize(float *q, size_t n, size_t l, float *tau)
{
	lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, (lapack_int)n,
					 (lapack_int)l, q, (lapack_int)n, tau);

	if (info == 0)
		info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, (lapack_int)n,
				      (lapack_int)l, (lapack_int)l, q,
				      (lapack_int)n, tau);
	if (info != 0)
		return udfs_error(-EIO, "SVD: QR of a %zu x %zu block: info %d",
				  n, l, (int)info);
	return 0;
}

/* Rayleigh-Ritz on the orthonormal block q (n x l): the k largest Ritz
 * pairs of G, ascending, into w and z. t: n x l scratch; h: l x l. */
static int ritz(const struct gram_op *op, const float *q, size_t l, size_t k,
		float *t, float *h, float *w, float *z)
{
	size_t n = op->n;
	float *wl = malloc(l * sizeof(*wl));
	lapack_int info;

	if (!wl)
		return udfs_error(-ENOMEM, "SVD: %zu x %zu", n, n);
	gram_apply(op, q, l, t);
	cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, (blasint)l,
		    (blasint)l, (blasint)n, 1.0f, q, (blasint)n, t, (blasint)n,
		    0.0f, h, (blasint)l);
	info = LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)l, h,
			      (lapack_int)l, wl);
	if (info == 0) {
		memcpy(w, wl + (l - k), k * sizeof(*w));
		/* z = Q H[:, l-k..l): the Ritz vectors of the k largest */
		cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans,
			    (blasint)n, (blasint)k, (blasint)l, 1.0f, q,
			    (blasint)n, h + (l - k) * l, (blasint)l, 0.0f, z,
			    (blasint)n);
	}
	free(wl);
	if (info != 0)
		return udfs_error(-EIO,
				  "SVD: LAPACKE_ssyevd on %zu x %zu: info %d",
				  l, l, (int)info);
	return 0;
}

static int gram_eig_iter(const struct gram_op *op, size_t k, float *w, float *z)
{
	size_t n = op->n, l = subspace_cols(k);
	float *q = malloc(n * l * sizeof(*q)), *t = malloc(n * l * sizeof(*t));
	float *h = malloc(l * l * sizeof(*h)), *tau = malloc(l * sizeof(*tau));
	uint64_t st = 0;
	int iters = subspace_iters(k), ret = 0;

	if (!q || !t || !h || !tau) {
		ret = udfs_error(-ENOMEM, "SVD: %zu x %zu", n, n);
		goto out;
	}
	for (size_t i = 0; i < n * l; i++)
		q[i] = (float)(udfs_splitmix64(&st) >> 40) / 16777216.0f - 0.5f;
	for (int it = 1; it <= iters && !ret; it++) {
		float *x = q;

		gram_apply(op, q, l, t);
		q = t;
		t = x;
		if (it % 2 == 0 || it == iters)
			ret = orthonormalize(q, n, l, tau);
	}
	if (!ret)
		ret = ritz(op, q, l, k, t, h, w, z);
out:
	free(tau);
	free(h);
	free(t);
	free(q);
	return ret;
}

/* The k largest eigenpairs of G (gram_eig's layout): subspace iteration
 * where the block is at most half of G, else the full reduction. */
static int top_eig(struct gram_op *op, size_t k, float *w, float *z)
{
	size_t n = op->n, l = subspace_cols(k);
	double formed =
	    (double)n * (double)n * (double)op->other / 2 +
	    (subspace_iters(k) + 1.0) * (double)n * (double)n * (double)l;
	double implicit = (subspace_iters(k) + 1.0) * 2 * (double)n *
			  (double)op->other * (double)l;
	bool iterate = 2 * l <= n;
	float *g = NULL;
	int ret;

	if (!iterate || formed < implicit) {
		g = calloc(n * n, sizeof(*g));
		if (!g)
			return udfs_error(-ENOMEM, "SVD: %zu x %zu", n, n);
		gram_f32(op->m, op->rows, op->cols, g);
		op->g = g;
	} else {
		op->tmp = malloc(op->other * l * sizeof(float) + 1);
		if (!op->tmp)
			return udfs_error(-ENOMEM, "SVD: %zu x %zu", n, n);
	}
	ret = iterate ? gram_eig_iter(op, k, w, z) : gram_eig(g, n, k, w, z);
	free(op->tmp);
	free(g);
	return ret;
}

/* The largest of the 64 magnitudes at m, as bits (they order as the
 * values do; an infinity or a NaN above all): a fixed count, which the
 * compiler vectorizes at -O2. */
static int32_t max_bits64(const float *m)
{
	int32_t b[64], top = 0;

	memcpy(b, m, sizeof(b));
	for (int i = 0; i < 64; i++) {
		int32_t x = b[i] & 0x7fffffff;

		top = x > top ? x : top;
	}
	return top;
}

/*
 * The power of two udfs_svd_top scales m by: 1 for the largest |m| within
 * 2^-40..2^40 (the Gram matrix squares it and sums up to 2^31 terms: far
 * from float's range), else the one that brings it near 1 (a huge delta
 * would overflow G to infinities, a tiny one lose its precision to
 * subnormals). 0 when m holds a NaN or an infinity.
 */
static float svd_scale(const float *m, size_t count)
{
	int32_t top = 0, x;
	size_t i = 0;
	float a;

	for (; i + 64 <= count; i += 64) {
		x = max_bits64(m + i);
		top = x > top ? x : top;
	}
	for (; i < count; i++) {
		memcpy(&x, &m[i], 4);
		x &= 0x7fffffff;
		top = x > top ? x : top;
	}
	if (top >= 0x7f800000) /* an infinity or a NaN */
		return 0;
	memcpy(&a, &top, 4);
	if (a > 0x1p40f || (a > 0 && a < 0x1p-40f))
		return ldexpf(1.0f, -ilogbf(a));
	return 1;
}

/* udfs_svd_top of a matrix whose values are far from 1 (svd_scale): the
 * triplets of the scaled copy, their values scaled back; none (zeros) for
 * a matrix that is not finite, whose low-rank part would be NaN. */
static int svd_top_scaled(const float *m, size_t rows, size_t cols, size_t k,
			  float scale, float *u, float *s, float *v)
{
	float *x;
	int ret;

	memset(s, 0, k * sizeof(*s));
	if (scale == 0) {
		memset(u, 0, rows * k * sizeof(*u));
		memset(v, 0, cols * k * sizeof(*v));
		return 0;
	}
	x = malloc(rows * cols * sizeof(*x));
	if (!x)
		return udfs_error(-ENOMEM, "SVD: %zu x %zu matrix", rows, cols);
	for (size_t i = 0; i < rows * cols; i++)
		x[i] = m[i] * scale;
	ret = udfs_svd_top(x, rows, cols, k, u, s, v);
	for (size_t c = 0; c < k; c++)
		s[c] /= scale;
	free(x);
	return ret;
}

int udfs_svd_top(const float *m, size_t rows, size_t cols, size_t kmax,
		 float *u, float *s, float *v)
{
	bool wide = rows <= cols; /* Gram of the rows, else of the columns */
	size_t n = wide ? rows : cols, k = kmax < n ? kmax : n;
	struct gram_op op = {.m = m,
			     .rows = rows,
			     .cols = cols,
			     .n = n,
			     .other = wide ? cols : rows,
			     .wide = wide};
	float *w = NULL, *z = NULL, *top = NULL, *other = NULL, scale;
	int ret = 0;

	if (k == 0)
		return 0;
	if (rows > INT_MAX || cols > INT_MAX)
		return udfs_error(
		    -EINVAL, "SVD: %zu x %zu matrix is too large for LAPACK",
		    rows, cols);
	scale = svd_scale(m, rows * cols);
	if (scale != 1)
		return svd_top_scaled(m, rows, cols, k, scale, u, s, v);
	w = malloc(n * sizeof(*w));
	z = malloc(n * k * sizeof(*z));
	top = malloc(n * k * sizeof(*top));
	other = malloc((wide ? cols : rows) * k * sizeof(*other));
	if (!w || !z || !top || !other) {
		ret = udfs_error(-ENOMEM, "SVD: %zu x %zu matrix", rows, cols);
		goto out;
	}
	openblas_set_num_threads(1);
	ret = top_eig(&op, k, w, z);
	if (ret)
		goto out;
	/* The k largest, ascending in w and z: top is n x k row-major,
	 * descending. */
	for (size_t c = 0; c < k; c++) {
		size_t e = k - 1 - c;

		s[c] = w[e] > 0 ? sqrtf(w[e]) : 0.0f;
		for (size_t i = 0; i < n; i++)
			top[i * k + c] = z[e * n + i];
	}
	/* The other side: M^T U / s (wide) or M V / s, row-major. */
	if (wide)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
			    (blasint)cols, (blasint)k, (blasint)rows, 1.0f, m,
			    (blasint)cols, top, (blasint)k, 0.0f, other,
			    (blasint)k);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
			    (blasint)rows, (blasint)k, (blasint)cols, 1.0f, m,
			    (blasint)cols, top, (blasint)k, 0.0f, other,
			    (blasint)k);
	for (size_t i = 0; i < (wide ? cols : rows); i++)
		for (size_t c = 0; c < k; c++)
			other[i * k + c] =
			    s[c] > 0 ? other[i * k + c] / s[c] : 0.0f;
	memcpy(wide ? u : v, top, n * k * sizeof(float));
	memcpy(wide ? v : u, other, (wide ? cols : rows) * k * sizeof(float));
out:
	free(other);
	free(top);
	free(z);
	free(w);
	return ret;
}

/*
 * Products with a mostly-zero M. The trace-norm rescale hands over pruned
 * deltas (10% or fewer nonzeros at the sparsities UltraDelta uses), where
 * two sgemm products multiply every zero: as compressed rows, a product
 * with a block of l vectors costs l multiply-adds per nonzero. The blocks
 * are row-major there (a nonzero's l products are one contiguous row),
 * l padded to whole vectors of 8 floats (widths 8, 16 and 24: blocks of
 * up to 24 columns; SLQ_COLS is 16); csr_apply transposes the
 * column-major blocks of the rest of the code in and out. Each output row
 * is summed in the order of the nonzeros, the same on every run. Only
 * M^T M of a tall (or square) M is applied: a wide M is transposed first
 * (csr_tall), which gives the same smaller Gram matrix M M^T.
 */
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

#define CSR_W(l) (((l) + 7) & ~(size_t)7) /* padded block width */
/* Below this density, compressed rows are used (csr_density). */
#define CSR_DENSITY 0.25

/* Not under ThreadSanitizer: see UDFS_CLONES (common/util.h). UDFS_CLONES'
 * own list but for clang, where the plain loops are as fast. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
#define CSR_CLONES                                                             \
	__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CSR_CLONES
#endif

/* A block row of W floats as W / 16 vectors of 16 and one of 8 where W is
 * an odd multiple of 8: one register each on AVX-512 (24 columns in two
 * registers, not three), two and one on AVX2. Lane by lane the same
 * multiplies and adds at every width (no contraction: -ffp-contract=off),
 * so every clone gives the same bits. */
#define GRAM_V16(W) ((W) / 16)
#define GRAM_V8(W) ((W) % 16 / 8)

/*
 * z = M^T M q for W = 8, 16, 24 (q, z: cols rows of W floats, z zeroed
 * by the caller), one pass over the nonzeros: per row, its product t =
 * sum of val * q[col] in registers (in two sets, even and odd nonzeros,
 * added at the end, so that an add need not wait for the previous one),
 * then z[col] += val * t over the same nonzeros, read again from cache.
 * M q and M^T of it as two passes read the nonzeros twice and wrote and
 * read M q in between.
 */
#define DEFINE_GRAM(W)                                                         \
	CSR_CLONES static void csr_gram##W(const udfs_csr *a, const float *q,  \
					   float *z)                           \
	{                                                                      \
		enum { N16 = GRAM_V16(W), N8 = GRAM_V8(W) };                   \
		for (size_t r = 0; r < a->rows; r++) {                         \
			v16f s0[N16 + 1] = {0}, s1[N16 + 1] = {0}, t[N16 + 1]; \
			v8f h0 = {0}, h1 = {0}, th;                            \
			uint64_t e = a->ptr[r], end = a->ptr[r + 1];           \
                                                                               \
			for (; e + 1 < end; e += 2) {                          \
				const float *q0 = q + (size_t)a->col[e] * (W); \
				const float *q1 =                              \
				    q + (size_t)a->col[e + 1] * (W);           \
				float v0 = a->val[e], v1 = a->val[e + 1];      \
				v8f u0, u1;                                    \
                                                                               \
				for (int k = 0; k < N16; k++) {                \
					v16f w0, w1;                           \
                                                                               \
					memcpy(&w0, q0 + 16 * k, sizeof(w0));  \
					memcpy(&w1, q1 + 16 * k, sizeof(w1));  \
					s0[k] += v0 * w0;                      \
					s1[k] += v1 * w1;                      \
				}                                              \
				if (N8) {                                      \
					memcpy(&u0, q0 + 16 * N16,             \
					       sizeof(u0));                    \
					memcpy(&u1, q1 + 16 * N16,             \
					       sizeof(u1));                    \
					h0 += v0 * u0;                         \
					h1 += v1 * u1;                         \
				}                                              \
			}                                                      \
			for (; e < end; e++) {                                 \
				const float *q0 = q + (size_t)a->col[e] * (W); \
				v8f u0;                                        \
                                                                               \
				for (int k = 0; k < N16; k++) {                \
					v16f w0;                               \
                                                                               \
					memcpy(&w0, q0 + 16 * k, sizeof(w0));  \
					s0[k] += a->val[e] * w0;               \
				}                                              \
				if (N8) {                                      \
					memcpy(&u0, q0 + 16 * N16,             \
					       sizeof(u0));                    \
					h0 += a->val[e] * u0;                  \
				}                                              \
			}                                                      \
			for (int k = 0; k < N16; k++)                          \
				t[k] = s0[k] + s1[k];                          \
			th = h0 + h1;                                          \
			for (e = a->ptr[r]; e < end; e++) {                    \
				float *zr = z + (size_t)a->col[e] * (W);       \
				float v = a->val[e];                           \
				v8f u;                                         \
                                                                               \
				for (int k = 0; k < N16; k++) {                \
					v16f w;                                \
                                                                               \
					memcpy(&w, zr + 16 * k, sizeof(w));    \
					w += v * t[k];                         \
					memcpy(zr + 16 * k, &w, sizeof(w));    \
				}                                              \
				if (N8) {                                      \
					memcpy(&u, zr + 16 * N16, sizeof(u));  \
					u += v * th;                           \
					memcpy(zr + 16 * N16, &u, sizeof(u));  \
				}                                              \
			}                                                      \
		}                                                              \
	}

DEFINE_GRAM(8)
DEFINE_GRAM(16)
DEFINE_GRAM(24)

/* z = G q through op->sp, M^T M (compressed rows are always given as
 * the tall side: csr_tall); q and z n x l column-major, as gram_apply's. */
static void csr_apply(const struct gram_op *op, const float *q, size_t l,
		      float *z)
{
	size_t n = op->n, w = CSR_W(l);

	for (size_t r = 0; r < n; r++)
		for (size_t c = 0; c < w; c++)
			op->qt[r * w + c] = c < l ? q[c * n + r] : 0.0f;
	memset(op->zt, 0, n * w * sizeof(float));
	if (w == 8)
		csr_gram8(op->sp, op->qt, op->zt);
	else if (w == 16)
		csr_gram16(op->sp, op->qt, op->zt);
	else
		csr_gram24(op->sp, op->qt, op->zt);
	for (size_t c = 0; c < l; c++)
		for (size_t r = 0; r < n; r++)
			z[c * n + r] = op->zt[r * w + c];
}

/* a^T as compressed rows into t (each column's nonzeros in row order, so
 * t's columns increase): the compressed rows of a wide matrix become a
 * tall one, whose smaller Gram matrix csr_gram applies in one pass. */
static int csr_transpose(const udfs_csr *a, udfs_csr *t)
{
	uint64_t nnz = a->ptr[a->rows];

	t->rows = a->cols;
	t->cols = a->rows;
	t->ptr = calloc(t->rows + 1, sizeof(*t->ptr));
	t->col = malloc((nnz + 1) * sizeof(*t->col));
	t->val = malloc((nnz + 1) * sizeof(*t->val));
	if (!t->ptr || !t->col || !t->val)
		return udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				  a->rows, a->cols);
	for (uint64_t e = 0; e < nnz; e++)
		t->ptr[a->col[e] + 1]++;
	for (size_t c = 0; c < t->rows; c++)
		t->ptr[c + 1] += t->ptr[c];
	/* ptr[c] walks column c's slots, then is put back */
	for (size_t r = 0; r < a->rows; r++)
		for (uint64_t e = a->ptr[r]; e < a->ptr[r + 1]; e++) {
			uint64_t at = t->ptr[a->col[e]]++;

			t->col[at] = (uint32_t)r;
			t->val[at] = a->val[e];
		}
	for (size_t c = t->rows; c > 0; c--)
		t->ptr[c] = t->ptr[c - 1];
	t->ptr[0] = 0;
	return 0;
}

/* The nonzeros of the row-major rows x cols m. */
static uint64_t count_nonzeros(const float *m, size_t rows, size_t cols)
{
	uint64_t nnz = 0, n = (uint64_t)rows * cols;

	for (uint64_t i = 0; i < n; i++)
		nnz += m[i] != 0.0f;
	return nnz;
}

/* a: the nnz nonzeros of m as compressed rows. */
static int csr_build(const float *m, size_t rows, size_t cols, uint64_t nnz,
		     udfs_csr *a)
{
	uint64_t e = 0;

	a->rows = rows;
	a->cols = cols;
	a->ptr = malloc((rows + 1) * sizeof(*a->ptr));
	/* one spare slot: every element is written, the index moves on
	 * nonzeros (no branch per element) */
	a->col = malloc((nnz + 1) * sizeof(*a->col));
	a->val = malloc((nnz + 1) * sizeof(*a->val));
	if (!a->ptr || !a->col || !a->val)
		return udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				  rows, cols);
	for (size_t r = 0; r < rows; r++) {
		const float *mr = m + r * cols;

		a->ptr[r] = e;
		for (size_t c = 0; c < cols; c++) {
			a->col[e] = (uint32_t)c;
			a->val[e] = mr[c];
			e += mr[c] != 0.0f;
		}
	}
	a->ptr[rows] = e;
	return 0;
}

void udfs_csr_free(udfs_csr *a)
{
	free(a->ptr);
	free(a->col);
	free(a->val);
	memset(a, 0, sizeof(*a));
}

/* Whether a matrix of nnz nonzeros goes through compressed rows. */
static bool csr_pays(uint64_t nnz, size_t rows, size_t cols)
{
	return (double)nnz <= CSR_DENSITY * (double)rows * (double)cols;
}

/*
 * Stochastic Lanczos quadrature (udfs_nuclear_norm_slq): the nuclear norm
 * is tr(G^(1/2)) for the smaller Gram matrix G, which is never formed: it
 * is applied to a block of SLQ_COLS vectors as two sgemm products with M
 * (gram_apply), so a step costs 4 rows cols SLQ_COLS flops against the
 * rows cols min(rows, cols) of ssyrk plus the O(n^3) eigensolver.
 *
 * The trace is split (Hutch++) into the span of a block Q of SLQ_DEFLATE
 * orthonormal vectors from G^2 Z, which holds the largest singular
 * directions, and the rest: q^T G^(1/2) q of each column of Q, plus the
 * Hutchinson mean of w^T G^(1/2) w over SLQ_PROBES Rademacher vectors w
 * projected off Q. Without the split the few large singular values of a
 * low-rank-plus-noise delta dominate the variance (5-16% rms with 16
 * probes on such 1024 x 1024 matrices in a double prototype, under 0.7%
 * with it and the control variate below). 8 probes, not 16: the
 * trace-norm factor is a ratio of sums over a model's tensors, whose
 * sampling errors average out, and the models of a group draw the same
 * probes for the same shape; the Gram products and the
 * reorthogonalization scale with the columns (bench/SPEED.md, session
 * 30). Each quadratic form is a quadrature of up to SLQ_STEPS Lanczos
 * steps started at that vector:
 * |v|^2 sum_i tau_i^2 sqrt(theta_i) over the eigenpairs of the
 * tridiagonal matrix (theta_i, first components tau_i; slq_quads averages
 * the Gauss and the Gauss-Radau rule). The Lanczos
 * vectors are kept in double and fully reorthogonalized (SLQ_STEPS is
 * small), so float rounding in the products does not bring back ghost
 * eigenvalues. Last, w^T G w of the same probes (the first Lanczos
 * coefficient) is a control variate whose mean is known exactly (||M||_F^2
 * less the part in Q): the probes' mean is corrected by the regression
 * slope times its error, which cancels the part of the sampling error
 * that is linear in the eigenvalues (3-5x smaller on random-like spectra).
 *
 * The probes come from a splitmix64 stream seeded with the shape, so the
 * estimate is a function of the matrix alone: the same at any --jobs and
 * on every run. Against udfs_nuclear_norm (tests/unit/write/
 * test_linalg_slq.c): random and pruned, quantized deltas within 0.6%,
 * low rank plus noise within 0.8% (0.4% and 0.7% with 16 probes); the
 * trace-norm factor moved by 0.06% from the exact norms to 16 probes on
 * a group of two 128 MiB fine-tunes, and by 0.002% more to 8, which
 * changed no stored byte of that group (bench/SPEED.md).
 */
enum {
	SLQ_DEFLATE = 8, /* columns of Q */
	SLQ_PROBES = 8,	 /* Hutchinson probes */
	SLQ_COLS = SLQ_DEFLATE + SLQ_PROBES,
	SLQ_STEPS = 12, /* Lanczos steps of each column, at most */
};

/* A column stops once its quadrature moves by at most this (relative). */
#define SLQ_RTOL 1e-4

/* Lanczos state of SLQ_COLS columns run in lockstep: basis vectors in
 * double (SLQ_STEPS + 1 blocks of n x SLQ_COLS, column-major), the
 * tridiagonal coefficients, and a float block for the products. */
struct slq {
	struct gram_op op;
	size_t n;
	double *v;		/* (SLQ_STEPS + 1) blocks of n x SLQ_COLS */
	double *alpha;		/* SLQ_STEPS x SLQ_COLS */
	double *beta;		/* SLQ_STEPS x SLQ_COLS */
	double norm2[SLQ_COLS]; /* |start|^2 of each column */
	size_t len[SLQ_COLS];	/* steps taken (fewer on breakdown) */
	bool stopped[SLQ_COLS]; /* broke down, settled, or nothing there */
	bool broke[SLQ_COLS];	/* reached an invariant subspace */
	double prev[SLQ_COLS];	/* last quadrature, for slq_settled */
	float *x, *y;		/* n x SLQ_COLS: product input, output */
	float *tau;		/* QR scratch */
};

static double *slq_block(const struct slq *s, size_t j)
{
	return s->v + j * s->n * SLQ_COLS;
}

/* Lanes of the Lanczos vectors' loops: element i in lane i % DLANES,
 * independent chains that -O2 vectorizes, added in order at the end. */
#define DLANES 8

static double dot(const double *a, const double *b, size_t n)
{
	double lane[DLANES] = {0}, d = 0;
	size_t i = 0;

	for (; i + DLANES <= n; i += DLANES)
		for (int j = 0; j < DLANES; j++)
			lane[j] += a[i + j] * b[i + j];
	for (; i < n; i++)
		d += a[i] * b[i];
	for (int j = 0; j < DLANES; j++)
		d += lane[j];
	return d;
}

/* w -= d v over n elements (the same operations, vectorized). */
static void sub_scaled(double *w, const double *v, double d, size_t n)
{
	size_t i = 0;

	for (; i + DLANES <= n; i += DLANES)
		for (int j = 0; j < DLANES; j++)
			w[i + j] -= d * v[i + j];
	for (; i < n; i++)
		w[i] -= d * v[i];
}

/* Q: SLQ_DEFLATE orthonormal columns spanning G^2 Z for Rademacher Z,
 * into s->x's first columns (QR after each product keeps the scale). */
static int slq_deflate(struct slq *s, uint64_t *st)
{
	size_t n = s->n, k = SLQ_DEFLATE;
	int ret = 0;

	for (size_t i = 0; i < n * k; i++)
		s->x[i] = (udfs_splitmix64(st) >> 63) ? 1.0f : -1.0f;
	for (int it = 0; it < 2 && !ret; it++) {
		gram_apply(&s->op, s->x, k, s->y);
		memcpy(s->x, s->y, n * k * sizeof(float));
		ret = orthonormalize(s->x, n, k, s->tau);
	}
	return ret;
}

/* The start block (block 0 of s->v, normalized, |start|^2 in norm2):
 * the columns of Q, then the Rademacher probes with their part in Q's
 * span removed. */
static void slq_start(struct slq *s, uint64_t *st)
{
	size_t n = s->n;
	double *v = slq_block(s, 0);

	for (size_t i = 0; i < n * SLQ_DEFLATE; i++)
		v[i] = s->x[i];
	for (size_t c = SLQ_DEFLATE; c < SLQ_COLS; c++) {
		double *w = v + c * n;

		for (size_t i = 0; i < n; i++)
			w[i] = (udfs_splitmix64(st) >> 63) ? 1.0 : -1.0;
		/* twice: once is not orthogonal enough in float-made Q */
		for (int pass = 0; pass < 2; pass++)
			for (size_t q = 0; q < SLQ_DEFLATE; q++) {
				double d = dot(v + q * n, w, n);

				sub_scaled(w, v + q * n, d, n);
			}
	}
	for (size_t c = 0; c < SLQ_COLS; c++) {
		double *w = v + c * n, nr = dot(w, w, n);

		s->norm2[c] = nr;
		s->len[c] = 0;
		s->stopped[c] = !(nr > 0);
		s->broke[c] = s->stopped[c];
		for (size_t i = 0; i < n && nr > 0; i++)
			w[i] /= sqrt(nr);
	}
}

/* One Lanczos step j of column c: w = G v_j (in w) orthogonalized against
 * v_0..v_j (full reorthogonalization, twice), alpha_j, beta_j, v_(j+1).
 * A column whose beta vanishes (an invariant subspace: M of low rank)
 * stops there. */
static void slq_column_step(struct slq *s, size_t j, size_t c, double *w)
{
	size_t n = s->n;
	double *vj = slq_block(s, j) + c * n, b;

	s->alpha[j * SLQ_COLS + c] = dot(vj, w, n);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i <= j; i++) {
			const double *vi = slq_block(s, i) + c * n;
			double d = dot(vi, w, n);

			sub_scaled(w, vi, d, n);
		}
	b = sqrt(dot(w, w, n));
	s->beta[j * SLQ_COLS + c] = b;
	s->len[c] = j + 1;
	s->broke[c] = !(b > 1e-7 * fabs(s->alpha[c]));
	if (s->broke[c] || j + 1 == SLQ_STEPS) {
		s->stopped[c] = true;
		return;
	}
	for (size_t r = 0; r < n; r++)
		slq_block(s, j + 1)[c * n + r] = w[r] / b;
}

/* The last diagonal entry that gives the Lanczos matrix T_m, extended by
 * one row with beta_m, an eigenvalue at 0 (Gauss-Radau, Golub and
 * Meurant): beta_m^2 over the last pivot of T_m's LDL^T factorization.
 * 0 where there is no such rule (T_m singular). */
static double radau_zero(const double *d, const double *e, size_t m)
{
	double piv = d[0];

	for (size_t j = 1; j < m && piv > 0; j++)
		piv = d[j] - e[j - 1] * e[j - 1] / piv;
	return piv > 0 ? e[m - 1] * e[m - 1] / piv : 0;
}

/* A quadrature rule of column c into theta (nodes) and wt (weights, |v|^2
 * tau^2), *nodes of them: Gauss (the eigenpairs of T_m), or Gauss-Radau
 * with a node at 0 (T_m extended by one row) where the column ran out of
 * steps rather than broke down (then Gauss is exact). */
static int slq_rule(const struct slq *s, size_t c, bool radau, double *theta,
		    double *wt, size_t *nodes)
{
	size_t m = s->len[c], k = m;
	double e[SLQ_STEPS + 1], z[(SLQ_STEPS + 1) * (SLQ_STEPS + 1)];
	lapack_int info;

	*nodes = 0;
	if (m == 0)
		return 0;
	for (size_t j = 0; j < m; j++) {
		theta[j] = s->alpha[j * SLQ_COLS + c];
		e[j] = s->beta[j * SLQ_COLS + c];
	}
	if (radau && !s->broke[c]) {
		theta[m] = radau_zero(theta, e, m);
		k = theta[m] > 0 && isfinite(theta[m]) ? m + 1 : m;
	}
	info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', (lapack_int)k, theta, e, z,
			     (lapack_int)k);
	if (info != 0)
		return udfs_error(-EIO, "nuclear norm: LAPACKE_dstev: info %d",
				  (int)info);
	for (size_t i = 0; i < k; i++)
		wt[i] = s->norm2[c] * z[i * k] * z[i * k];
	*nodes = k;
	return 0;
}

/* The quadratures of sqrt for every column: the mean of the Gauss rule,
 * which overestimates it (sqrt's even derivatives are negative), and the
 * Gauss-Radau rule at 0, which underestimates it; on the spectra of
 * square matrices, dense down to 0 where sqrt is not smooth, Gauss alone
 * is 0.3-0.6% high after 12 steps. Nodes within n ulps of the largest
 * are the rounding noise of the float products, not small singular
 * values: they count as zero, as in sqrt_sum (an exactly low-rank matrix
 * would otherwise gain sqrt(noise) per dimension). */
static int slq_quads(const struct slq *s, double *q)
{
	double theta[2][SLQ_COLS][SLQ_STEPS + 1],
	    wt[2][SLQ_COLS][SLQ_STEPS + 1];
	size_t k[2][SLQ_COLS];
	double top = 0, floor_ev;
	int ret = 0;

	for (size_t c = 0; c < SLQ_COLS && !ret; c++)
		for (int r = 0; r < 2 && !ret; r++) {
			ret =
			    slq_rule(s, c, r, theta[r][c], wt[r][c], &k[r][c]);
			for (size_t i = 0; i < k[r][c]; i++)
				top = fmax(top, theta[r][c][i]);
		}
	floor_ev = (double)s->n * 1.19e-7 * top;
	for (size_t c = 0; c < SLQ_COLS; c++) {
		q[c] = 0;
		for (int r = 0; r < 2 && !ret; r++)
			for (size_t i = 0; i < k[r][c]; i++)
				if (theta[r][c][i] > floor_ev)
					q[c] += wt[r][c][i] *
						sqrt(theta[r][c][i]) / 2;
	}
	return ret;
}

/* Whether column c's quadrature has settled: it moved by at most
 * SLQ_RTOL since the previous step (prev). From the fourth step on. */
static int slq_settled(struct slq *s, size_t c, bool *settled)
{
	double theta[SLQ_STEPS + 1], wt[SLQ_STEPS + 1], q = 0;
	size_t k;
	int ret;

	*settled = false;
	if (s->len[c] < 2)
		return 0;
	ret = slq_rule(s, c, false, theta, wt, &k);
	for (size_t i = 0; i < k; i++)
		q += wt[i] * sqrt(theta[i] > 0 ? theta[i] : 0);
	*settled = s->len[c] >= 4 && fabs(q - s->prev[c]) <= SLQ_RTOL * q;
	s->prev[c] = q;
	return ret;
}

/* Up to SLQ_STEPS Lanczos steps of all columns, each step one product
 * with the block of the columns still running (compacted into s->x):
 * a column stops when it breaks down or its quadrature has settled, so
 * the smooth spectra of tall matrices take 5-7 products, not 12. */
static int slq_lanczos(struct slq *s)
{
	size_t n = s->n, act[SLQ_COLS], na;
	double *w = malloc(n * sizeof(*w));
	int ret = 0;

	if (!w)
		return udfs_error(-ENOMEM, "nuclear norm: %zu x %zu", n, n);
	for (size_t j = 0; j < SLQ_STEPS && !ret; j++) {
		na = 0;
		for (size_t c = 0; c < SLQ_COLS; c++)
			if (!s->stopped[c])
				act[na++] = c;
		if (na == 0)
			break;
		for (size_t a = 0; a < na; a++) {
			const double *v = slq_block(s, j) + act[a] * n;

			for (size_t r = 0; r < n; r++)
				s->x[a * n + r] = (float)v[r];
		}
		gram_apply(&s->op, s->x, na, s->y);
		for (size_t a = 0; a < na && !ret; a++) {
			bool settled;

			for (size_t r = 0; r < n; r++)
				w[r] = s->y[a * n + r];
			slq_column_step(s, j, act[a], w);
			ret = slq_settled(s, act[a], &settled);
			s->stopped[act[a]] = s->stopped[act[a]] || settled;
		}
	}
	free(w);
	return ret;
}

/* The estimate from the quadratures: Q's part, plus the probes' mean
 * corrected by the control variate w^T G w, whose mean is known: fro2,
 * ||M||_F^2, less Q's part. Where Q holds all but 1e-4 of fro2 (a matrix
 * of low rank), that difference is float rounding and the correction is
 * left out; so is a negative slope (sqrt is increasing: only noise). */
static int slq_combine(const struct slq *s, double fro2, double *out)
{
	double q[SLQ_COLS], top = 0, mx = 0, my = 0, y[SLQ_PROBES];
	double sxy = 0, syy = 0, slope, all = fro2;
	const double *x = q + SLQ_DEFLATE;
	int ret = slq_quads(s, q);

	for (size_t c = 0; c < SLQ_COLS; c++) {
		double g = s->len[c] ? s->norm2[c] * s->alpha[c] : 0;

		if (c < SLQ_DEFLATE) {
			top += q[c];
			fro2 -= g;
		} else {
			y[c - SLQ_DEFLATE] = g;
		}
	}
	for (size_t p = 0; p < SLQ_PROBES; p++) {
		mx += x[p] / SLQ_PROBES;
		my += y[p] / SLQ_PROBES;
	}
	for (size_t p = 0; p < SLQ_PROBES; p++) {
		sxy += (x[p] - mx) * (y[p] - my);
		syy += (y[p] - my) * (y[p] - my);
	}
	slope = syy > 0 && sxy > 0 && fro2 > 1e-4 * all ? sxy / syy : 0;
	*out = fmax(0.0, top + mx - slope * (my - fro2));
	return ret;
}

static void slq_free(struct slq *s)
{
	free(s->op.tmp);
	free(s->tau);
	free(s->y);
	free(s->x);
	free(s->beta);
	free(s->alpha);
	free(s->v);
}

static int slq_alloc(struct slq *s)
{
	size_t n = s->n;

	s->v = malloc((SLQ_STEPS + 1) * n * SLQ_COLS * sizeof(*s->v));
	s->alpha = calloc(SLQ_STEPS * SLQ_COLS, sizeof(*s->alpha));
	s->beta = calloc(SLQ_STEPS * SLQ_COLS, sizeof(*s->beta));
	s->x = malloc(n * SLQ_COLS * sizeof(*s->x));
	s->y = malloc(n * SLQ_COLS * sizeof(*s->y));
	s->tau = malloc(SLQ_COLS * sizeof(*s->tau));
	/* the dense products' middle one; csr_gram needs none */
	if (!s->op.sp)
		s->op.tmp = malloc(s->op.other * SLQ_COLS * sizeof(*s->op.tmp));
	if (!s->v || !s->alpha || !s->beta || !s->x || !s->y || !s->tau ||
	    (!s->op.sp && !s->op.tmp))
		return udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				  s->op.rows, s->op.cols);
	return 0;
}

void udfs_sumsq_add(udfs_sumsq *a, const float *d, uint64_t n)
{
	double lane[8];
	uint64_t k = 0;

	/* Local lanes: registers, whatever the compiler assumes of a. */
	memcpy(lane, a->lane, sizeof(lane));
	for (; k + 8 <= n; k += 8)
		for (int j = 0; j < 8; j++)
			lane[j] += (double)d[k + j] * d[k + j];
	for (; k < n; k++)
		a->tail += (double)d[k] * d[k];
	memcpy(a->lane, lane, sizeof(lane));
}

double udfs_sumsq_end(const udfs_sumsq *a)
{
	double sum = a->tail;

	for (int j = 0; j < 8; j++)
		sum += a->lane[j];
	return sum;
}

double udfs_sum_squares(const float *d, uint64_t n)
{
	udfs_sumsq a = {{0}, 0};

	udfs_sumsq_add(&a, d, n);
	return udfs_sumsq_end(&a);
}

double udfs_dot(const float *a, const float *b, uint64_t n)
{
	double lane[8] = {0}, sum = 0;
	uint64_t k = 0;

	for (; k + 8 <= n; k += 8)
		for (int j = 0; j < 8; j++)
			lane[j] += (double)a[k + j] * b[k + j];
	for (; k < n; k++)
		sum += (double)a[k] * b[k];
	for (int j = 0; j < 8; j++)
		sum += lane[j];
	return sum;
}

/* The estimate with the products of op (through m, or sp where set),
 * ||M||_F^2 being fro2. */
static int slq_estimate(struct gram_op op, double fro2, double *out)
{
	struct slq s = {.op = op, .n = op.n};
	/* The shape seeds the probes: the same matrix, the same estimate. */
	uint64_t st = ((uint64_t)op.rows << 32) ^ (uint64_t)op.cols;
	int ret;

	*out = 0.0;
	if (op.rows > INT_MAX || op.cols > INT_MAX)
		return udfs_error(
		    -EINVAL,
		    "nuclear norm: %zu x %zu matrix is too large for BLAS",
		    op.rows, op.cols);
	ret = slq_alloc(&s);
	if (!ret && op.sp) {
		s.op.qt = malloc(s.n * CSR_W(SLQ_COLS) * sizeof(float));
		s.op.zt = malloc(s.n * CSR_W(SLQ_COLS) * sizeof(float));
		if (!s.op.qt || !s.op.zt)
			ret = udfs_error(-ENOMEM,
					 "nuclear norm: %zu x %zu matrix",
					 op.rows, op.cols);
	}
	if (!ret) {
		openblas_set_num_threads(1);
		ret = slq_deflate(&s, &st);
	}
	if (!ret) {
		slq_start(&s, &st);
		ret = slq_lanczos(&s);
	}
	if (!ret)
		ret = slq_combine(&s, fro2, out);
	free(s.op.qt);
	free(s.op.zt);
	slq_free(&s);
	return ret;
}

static struct gram_op implicit_op(const float *m, const udfs_csr *sp,
				  size_t rows, size_t cols)
{
	/* compressed rows come tall (csr_tall): their Gram matrix is M^T M */
	bool wide = sp ? false : rows <= cols;

	return (struct gram_op){.m = m,
				.sp = sp,
				.rows = rows,
				.cols = cols,
				.n = wide ? rows : cols,
				.other = wide ? cols : rows,
				.wide = wide};
}

/* The estimate through compressed rows a, taken tall: a wide a is
 * transposed (the same nonzero singular values). */
static int csr_tall(const udfs_csr *a, double *out)
{
	double fro2 = udfs_sum_squares(a->val, a->ptr[a->rows]);
	udfs_csr t = {0};
	int ret;

	if (a->rows >= a->cols)
		return slq_estimate(implicit_op(NULL, a, a->rows, a->cols),
				    fro2, out);
	ret = csr_transpose(a, &t);
	if (!ret)
		ret = slq_estimate(implicit_op(NULL, &t, t.rows, t.cols), fro2,
				   out);
	udfs_csr_free(&t);
	return ret;
}

/* udfs_nuclear_norm_slq of m with nnz nonzeros: its products through
 * compressed rows where csr_pays. */
static int slq_norm(const float *m, size_t rows, size_t cols, uint64_t nnz,
		    double *out)
{
	udfs_csr sp = {0};
	int ret;

	*out = 0.0;
	/* as cheap exactly, and Q would fill G */
	if ((rows < cols ? rows : cols) < 2 * SLQ_COLS)
		return udfs_nuclear_norm(m, rows, cols, out);
	if (!csr_pays(nnz, rows, cols))
		return slq_estimate(implicit_op(m, NULL, rows, cols),
				    udfs_sum_squares(m, rows * cols), out);
	ret = csr_build(m, rows, cols, nnz, &sp);
	if (!ret)
		ret = csr_tall(&sp, out);
	udfs_csr_free(&sp);
	return ret;
}

int udfs_nuclear_norm_slq(const float *m, size_t rows, size_t cols, double *out)
{
	return slq_norm(m, rows, cols, count_nonzeros(m, rows, cols), out);
}

/*
 * Whether the estimate through dense products costs less than the exact
 * norm of an n x o matrix (n the smaller side), in nanoseconds of one core
 * as measured by tests/unit/write/test_linalg_slq.c (UDFS_BENCH=1), on
 * pruned deltas before they went through compressed rows:
 * ssyrk at about 30 Gflop/s (n^2 o / 2 multiply-adds), ssyevd of n x n
 * 0.08 s at n = 1024 (n^3 / 13), the estimate's skinny products at about
 * 13 Gflop/s, 2 (steps SLQ_COLS + 2 SLQ_DEFLATE) n o multiply-adds, where
 * the quadratures settle in about 6 steps once o >= 2 n (the spectrum is
 * then away from zero, where sqrt is smooth) and take all 12 on square
 * ones. Measured with 24 columns: 1024 x 1024 0.109 s exact, 0.050 s
 * estimated; 1024 x 2816 0.135 s, 0.068 s; 13948 x 1024 0.296 s, 0.382
 * s (stayed exact; with 16 columns the model estimates it, 0.25 s
 * against 0.33 s).
 */
static bool slq_cheaper(size_t n, size_t o)
{
	double dn = (double)n, d_o = (double)o;
	double steps = o >= 2 * n ? 6 : SLQ_STEPS;
	double exact = dn * dn * d_o / 60 + dn * dn * dn / 13;
	double slq = dn * d_o * 2 * (steps * SLQ_COLS + 2 * SLQ_DEFLATE) / 13;

	return slq < exact;
}

int udfs_nuclear_norm_auto(const float *m, size_t rows, size_t cols,
			   double *out)
{
	size_t n = rows < cols ? rows : cols, o = rows < cols ? cols : rows;
	uint64_t nnz;

	if (n <= UDFS_NUCLEAR_EXACT_MAX)
		return udfs_nuclear_norm(m, rows, cols, out);
	/* Through compressed rows the estimate always costs less: 13948 x
	 * 1024 at 10% nonzeros 0.10 s against 0.22 s exact, 1024 x 1024
	 * 0.017 s against 0.066 s (test_linalg_slq, UDFS_BENCH=1). */
	nnz = count_nonzeros(m, rows, cols);
	if ((double)nnz > CSR_DENSITY * (double)rows * (double)cols &&
	    !slq_cheaper(n, o))
		return udfs_nuclear_norm(m, rows, cols, out);
	return slq_norm(m, rows, cols, nnz, out);
}

int udfs_nuclear_norm_csr(const udfs_csr *a, double *out)
{
	size_t n = a->rows < a->cols ? a->rows : a->cols;
	uint64_t nnz = a->ptr[a->rows];
	float *m;
	int ret;

	*out = 0.0;
	if (n > UDFS_NUCLEAR_EXACT_MAX && n >= 2 * SLQ_COLS &&
	    csr_pays(nnz, a->rows, a->cols))
		return csr_tall(a, out);
	/* Small or dense: what udfs_nuclear_norm_auto does with the matrix. */
	if (a->rows && a->cols > SIZE_MAX / sizeof(float) / a->rows)
		return udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				  a->rows, a->cols);
	m = udfs_malloc_huge(a->rows * a->cols * sizeof(float) + 1);
	if (!m)
		return udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				  a->rows, a->cols);
	memset(m, 0, a->rows * a->cols * sizeof(float));
	for (size_t r = 0; r < a->rows; r++)
		for (uint64_t e = a->ptr[r]; e < a->ptr[r + 1]; e++)
			m[r * a->cols + a->col[e]] = a->val[e];
	ret = udfs_nuclear_norm_auto(m, a->rows, a->cols, out);
	free(m);
	return ret;
}

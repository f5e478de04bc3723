// SPDX-License-Identifier: MIT
/*
 * Dense linear algebra for the trace-norm rescale (ARCHITECTURE.md, "Lossy
 * planning") and the adaptive method. This is the only file that includes
 * LAPACKE.
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
 * triangle) or implicit (g NULL: two products with m). */
struct gram_op {
	const float *m, *g;
	size_t rows, cols, n, other;
	bool wide;
	float *tmp; /* other x l, the implicit form's middle product */
};

/* z = G q for an n x l column-major block q. A row-major M is the
 * column-major cols x rows A = M^T: M M^T = A^T A, M^T M = A A^T. */
static void gram_apply(const struct gram_op *op, const float *q, size_t l,
		       float *z)
{
	blasint n = (blasint)op->n, o = (blasint)op->other,
		ld = (blasint)op->cols;

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

/*
 * The power of two udfs_svd_top scales m by: 1 for the largest |m| within
 * 2^-40..2^40 (the Gram matrix squares it and sums up to 2^31 terms: far
 * from float's range), else the one that brings it near 1 (a huge delta
 * would overflow G to infinities, a tiny one lose its precision to
 * subnormals). 0 when m holds a NaN or an infinity.
 */
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

// SPDX-License-Identifier: MIT
/*
 * Dense linear algebra for the trace-norm rescale (ARCHITECTURE.md, "Lossy
 * planning"): the
 * nuclear norm of a delta matrix through LAPACKE sgesdd with jobz='N'
 * (singular values only). This is the only file that includes LAPACKE.
 *
 * sgesdd destroys its input, so the matrix is copied once. A row-major
 * rows x cols matrix is the column-major cols x rows matrix of its
 * transpose, which has the same singular values, so it is handed to LAPACK
 * column-major as it lies: that skips the transposed copy LAPACKE makes for
 * LAPACK_ROW_MAJOR.
 *
 * Cost of one call, measured with tests/unit/test_linalg (UDFS_BENCH=1) on
 * this machine (2 cores shared with other builds, OpenBLAS pthread,
 * random matrices):
 *
 *   size           2 threads      OPENBLAS_NUM_THREADS=1
 *   512 x 512      0.03-0.05 s    0.02 s
 *   1024 x 1024    0.17-0.29 s    0.13 s
 *   2048 x 2048    1.4-1.6 s      1.0 s
 *   4096 x 1024    0.65-0.75 s    0.56 s
 *
 * One thread per call is as fast on a loaded 2-core machine, so a caller
 * that runs tensors in parallel should pin OpenBLAS to one thread. Time
 * grows as O(rows * cols * min(rows, cols)); memory is one copy of the
 * matrix plus LAPACK's work arrays (a few min(rows, cols)^2 floats).
 */
#include "write/linalg.h"

#include <errno.h>
#include <lapacke.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int udfs_nuclear_norm(const float *m, size_t rows, size_t cols, double *out)
{
	size_t k = rows < cols ? rows : cols;
	float *a = NULL, *s = NULL, dummy[1] = {0};
	lapack_int info;
	double sum = 0.0;
	int ret = 0;

	*out = 0.0;
	if (k == 0)
		return 0;
	if (rows > INT_MAX || cols > INT_MAX || rows > SIZE_MAX / 4 / cols)
		return udfs_error(
		    -EINVAL,
		    "nuclear norm: %zu x %zu matrix is too large for LAPACK",
		    rows, cols);
	a = malloc(rows * cols * sizeof(*a));
	s = malloc(k * sizeof(*s));
	if (!a || !s) {
		ret = udfs_error(-ENOMEM, "nuclear norm: %zu x %zu matrix",
				 rows, cols);
		goto out;
	}
	memcpy(a, m, rows * cols * sizeof(*a));
	/* Column-major cols x rows with leading dimension cols: the
	 * transpose, see the file comment. U and VT are not referenced. */
	info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)cols,
			      (lapack_int)rows, a, (lapack_int)cols, s, dummy,
			      1, dummy, 1);
	if (info != 0) {
		ret = udfs_error(
		    -EIO,
		    "nuclear norm: LAPACKE_sgesdd on a %zu x %zu matrix: info %d%s",
		    rows, cols, (int)info,
		    info > 0 ? " (no convergence)"
			     : " (bad argument or no memory)");
		goto out;
	}
	for (size_t i = 0; i < k; i++)
		sum += s[i];
	*out = sum;
out:
	free(s);
	free(a);
	return ret;
}

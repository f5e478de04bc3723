/* SPDX-License-Identifier: MIT */
/*
 * Dense linear algebra of the lossy planner (linalg.c, the only file that
 * includes LAPACKE: only udfs-compress links OpenBLAS).
 */
#ifndef UDFS_LINALG_H
#define UDFS_LINALG_H

#include <stddef.h>

/*
 * Nuclear norm (sum of singular values) of a rows x cols float32 matrix,
 * row-major, through LAPACKE sgesdd with jobz='N' (singular values only).
 * The matrix is copied; cost O(rows*cols*min(rows,cols)).
 * Returns 0 and *out, or -errno with a message.
 */
int udfs_nuclear_norm(const float *m, size_t rows, size_t cols, double *out);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The progress line of udfs-compress on a terminal: "MODEL: TENSOR
 * done/total MB, rate, ETA", redrawn at most four times a second, and
 * nothing when stderr is not a terminal or -q is given.
 */
#ifndef UDFS_PROGRESS_H
#define UDFS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct udfs_progress {
	bool on;	      /* a terminal, not quiet */
	uint64_t total, done; /* bytes */
	double t0, last;      /* udfs_now() of the start, of the last draw */
};

/* Start a line for total bytes (shown only on a terminal, unless quiet). */
void udfs_progress_init(struct udfs_progress *p, bool quiet, uint64_t total);
/* Redraw with p->done; force draws even within a quarter second. */
void udfs_progress_show(struct udfs_progress *p, const char *model,
			const char *tensor, bool force);
/* Clear the line. */
void udfs_progress_end(struct udfs_progress *p);

#endif

// SPDX-License-Identifier: MIT
/*
 * The progress line of udfs-compress (progress.h), and the phases of the
 * add pipeline that write nothing (add_i.h: udfs_add_progress_phase).
 */
#include "write/progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "common/util.h"
#include "write/add_i.h"

void udfs_progress_init(struct udfs_progress *p, bool quiet, uint64_t total)
{
	p->on = !quiet && isatty(2);
	p->total = total;
	p->done = 0;
	p->t0 = p->last = udfs_now();
}

void udfs_progress_show(struct udfs_progress *p, const char *model,
			const char *tensor, bool force)
{
	double now = udfs_now(), rate;

	if (!p->on || (!force && now - p->last < 0.25))
		return;
	p->last = now;
	rate = p->done / 1e6 / (now - p->t0 + 1e-9);
	fprintf(stderr, "\r\033[K%s: %.40s  %.0f/%.0f MB  %.1f MB/s  ETA %.0fs",
		model, tensor, p->done / 1e6, p->total / 1e6, rate,
		rate > 0 ? (p->total - p->done) / 1e6 / rate : 0.0);
}

void udfs_add_progress_phase(struct add_group *g, const char *model,
			     const char *phase, uint64_t done, uint64_t total,
			     const char *unit)
{
	struct udfs_progress *p = g->pr;
	double now = udfs_now();

	if (!p || !p->on || (done && done < total && now - p->last < 0.25))
		return;
	p->last = now;
	fprintf(stderr, "\r\033[K%s: %s  %" PRIu64 "/%" PRIu64 " %s", model,
		phase, done, total, unit);
}

void udfs_progress_end(struct udfs_progress *p)
{
	if (p->on)
		fprintf(stderr, "\r\033[K");
}

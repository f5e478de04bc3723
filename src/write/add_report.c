// SPDX-License-Identifier: MIT
/*
 * What `udfs-compress add` tells the user about each model it added: one
 * summary line on stdout (real stored bytes, ratio, the error of the lossy
 * tensors measured on the encoded chunks, time), and one warning line on
 * stderr for each silent foot-gun: a base that is not the model's base,
 * tensors stored raw because their dtype differs from the base's, and a
 * lossy encoding that has likely destroyed the fine-tune. Nothing here
 * changes what is stored.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/util.h"
#include "write/add_i.h"

/* A tensor is related to its base tensor when ||ft - base|| is at most
 * half of ||ft||. Real fine-tunes are far below (stories260K ft-lives:
 * 0.047 over its matrices; gen_model finetune: 0.04), while two unrelated
 * weight tensors of the same scale differ by sqrt(2) ~ 1.41 of either. */
#define RELATED_MAX 0.5
/* Elements looked at per tensor: SAMPLE_RUNS evenly spaced runs of
 * SAMPLE_RUN, enough to tell 0.05 from 1.4 and cheap on a model of any
 * size. Runs, not single elements: each sampled page of the mapped source
 * and base is a page fault (and a disk read when cold), and 4096 single
 * elements made this serial pass 8% of a lossy add of 512 MiB. */
#define SAMPLE_RUNS 16
#define SAMPLE_RUN 256

/*
 * Lossy error above which the fine-tune is likely destroyed. Measured on
 * stories260K ft-lives-bf16 against base-bf16, ultradelta b = 4 (held-out
 * CE with shared/eval/stories.py; base 3.054, fine-tune 1.795):
 *   s = 0.5  error 1.01 cosine 0.71  CE 1.896
 *   s = 0.8  error 2.02 cosine 0.45  CE 2.255
 *   s = 0.9  error 3.06 cosine 0.32  CE 2.783 (21% of the gain left)
 *   s = 0.95 error 4.53 cosine 0.23  CE 4.330 (worse than the base)
 *   s = 0.97 error 6.05 cosine 0.18  CE 5.952 (the default)
 * Random drop with a 1/(1-s) rescale alone gives an error of about
 * sqrt(s / (1-s)), so the limit is s ~ 0.9 for a delta of this size.
 */
#define DESTROYED_ERR 3.0
#define DESTROYED_COS 0.3

static bool same_dims(const udfs_st_tensor *a, const udfs_tensor *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

/* ||ft - base|| <= RELATED_MAX ||ft|| on a sample of the elements. */
static bool close_values(int dtype, uint64_t n, const void *ft,
			 const void *base)
{
	uint64_t runs = n / SAMPLE_RUN, stride;
	double d2 = 0, w2 = 0;

	if (runs > SAMPLE_RUNS)
		runs = SAMPLE_RUNS;
	stride = runs ? n / runs : 0;
	for (uint64_t i = 0; i < n; i = runs ? i + stride : n) {
		uint64_t len = runs ? SAMPLE_RUN : n;

		for (uint64_t k = i; k < i + len; k++) {
			double w = udfs_dtype_load_f32(dtype, ft, k);
			double d = w - udfs_dtype_load_f32(dtype, base, k);

			d2 += d * d;
			w2 += w * w;
		}
	}
	/* NaN or infinite weights compare false: counted as unrelated. */
	return d2 <= RELATED_MAX * RELATED_MAX * w2;
}

void udfs_add_match_base(const struct add_group *g, struct add_model *am)
{
	struct base_match *m = &am->match;

	for (size_t i = 0; i < am->src->n_files; i++) {
		const udfs_source_file *sf = &am->src->files[i];

		for (size_t j = 0; sf->st && j < sf->st->n_tensors; j++) {
			const udfs_st_tensor *st = &sf->st->tensors[j];
			const struct tensor_plan *p = &am->plan[i][j];
			const udfs_tensor *bt =
			    udfs_model_tensor(g->base, st->name);

			m->tensors++;
			if (!bt || !same_dims(st, bt))
				continue;
			if (bt->dtype != st->dtype) {
				if (!m->other_dtype++) {
					m->dtype = st->dtype;
					m->base_dtype = bt->dtype;
				}
			} else if (p->enc == UDFS_ENC_SAME ||
				   !udfs_dtype_is_lossy_float(st->dtype) ||
				   close_values(
				       st->dtype, st->nelems,
				       udfs_source_tensor_bytes(sf, st),
				       udfs_add_base_bytes(g, bt))) {
				m->related++;
			}
		}
	}
}

static void warn_base(const struct add_group *g, const struct add_model *am)
{
	const struct base_match *m = &am->match;

	if (m->other_dtype)
		udfs_warn(
		    "warning: %s: %zu of %zu tensors are %s where base \"%s\" has %s: stored raw, not as deltas (add a %s base, or convert the fine-tune to %s)",
		    am->name, m->other_dtype, m->tensors,
		    udfs_dtype_name(m->dtype), g->base->name,
		    udfs_dtype_name(m->base_dtype), udfs_dtype_name(m->dtype),
		    udfs_dtype_name(m->base_dtype));
	/* Tensors of another dtype are already explained above. */
	if ((m->related + m->other_dtype) * 2 < m->tensors)
		udfs_warn(
		    "warning: %s: base \"%s\" matches only %zu of %zu tensors (same name, dtype and shape, difference under half the weights): the others compress little or not at all; is it the base this model was fine-tuned from?",
		    am->name, g->base->name, m->related, m->tensors);
}

void udfs_add_report(const struct add_group *g, const struct add_model *am,
		     uint64_t source_bytes, uint64_t stored_bytes)
{
	double err = udfs_fidelity_rel_err(&am->fid);
	double cos = udfs_fidelity_cosine(&am->fid);
	char h[32], q[96] = "lossless";

	if (am->lossy_elems)
		snprintf(q, sizeof(q), "lossy delta error %.3f (cosine %.3f)",
			 err, cos);
	printf("%s: %" PRIu64 " bytes stored (%s) of %" PRIu64
	       ", ratio %.2fx, %s, %.2f s\n",
	       am->name, stored_bytes,
	       udfs_fmt_bytes(stored_bytes, h, sizeof(h)), source_bytes,
	       stored_bytes ? (double)source_bytes / (double)stored_bytes : 0.0,
	       q, am->seconds);
	fflush(stdout);
	warn_base(g, am);
	/* NaN compares false: a NaN error is destroyed as well. */
	if (am->lossy_elems && !(err <= DESTROYED_ERR && cos >= DESTROYED_COS))
		udfs_warn(
		    "warning: %s: lossy delta error %.3f, cosine %.3f (limits %g and %g): the fine-tune is likely destroyed; use a lower --sparsity or --lossless, and check with udfs eval",
		    am->name, err, cos, DESTROYED_ERR, DESTROYED_COS);
}

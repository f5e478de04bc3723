/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the add pipeline (add.c, add_base.c), its report
 * (add_report.c), and the lossy planner and tensor encoder
 * (plan_lossy.c).
 */
#ifndef UDFS_COMPRESS_I_H
#define UDFS_COMPRESS_I_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/fidelity.h"
#include "format/source.h"
#include "store/store.h"
#include "write/add.h"

/* How one tensor of one model is stored; decided before any byte is
 * written. */
struct tensor_plan {
	int enc;		 /* enum udfs_encoding */
	const udfs_tensor *base; /* matching base tensor, or NULL */
	udfs_lossy_params lp;	 /* lossy encodings */
};

/* One model of an add group. */
struct add_model {
	const char *name;
	const udfs_source *src;
	struct tensor_plan **plan; /* [file][tensor] of src */
	double target_sparsity;	   /* s used (given, or found by --ratio) */
	uint64_t lossy_elems;	   /* elements of lossy tensors */
	uint64_t kept_elems;	   /* ... of which kept (counted on write) */
	udfs_fidelity fid; /* lossy tensors, measured on the encoded chunks */
	double seconds;	   /* planning and writing time of this model */
	struct base_match {
		size_t tensors;	    /* tensors of the source */
		size_t related;	    /* same name, dtype, shape, close values */
		size_t other_dtype; /* same name and shape, other dtype */
		int dtype, base_dtype; /* the first such pair */
	} match;
};

struct udfs_progress;

struct add_group {
	udfs_store *store;
	const udfs_add_opts *o;
	udfs_model *base;
	const unsigned char **base_map; /* base->files[i] mapped read-only */
	size_t n;
	struct add_model *models;
	struct udfs_progress *pr; /* the progress line */
};

/* Show "MODEL: PHASE done/total UNIT" on the progress line (a terminal
 * only, at most four times a second), for the phases that write nothing
 * (progress.c). */
void udfs_add_progress_phase(struct add_group *g, const char *model,
			     const char *phase, uint64_t done, uint64_t total,
			     const char *unit);

/* Fill am->match: how many of am's tensors the base really matches
 * (add_report.c). Called after the lossless plan. */
void udfs_add_match_base(const struct add_group *g, struct add_model *am);

/* The summary line of one added model on stdout (stored_bytes as the
 * catalog counts them), then a warning line on stderr for each foot-gun:
 * a base that matches fewer than half of its tensors, tensors stored raw
 * because their dtype differs from the base's, lossy tensors likely
 * destroyed. Printed after the commit, so a failed add prints only its
 * error. */
void udfs_add_report(const struct add_group *g, const struct add_model *am,
		     uint64_t source_bytes, uint64_t stored_bytes);

/* Pointer to the bytes of a base tensor in the mapped base. */
static inline const unsigned char *
udfs_add_base_bytes(const struct add_group *g, const udfs_tensor *bt)
{
	size_t i = (size_t)(bt->file - g->base->files);

	return g->base_map[i] + bt->file->data_offset + bt->begin;
}

/* Fill t (name, dtype, shape, offsets) from a source tensor; t owns
 * copies. */
void udfs_add_tensor_from_source(udfs_tensor *t, const udfs_st_tensor *st);

/*
 * Lossy planning over the whole group: choose the tensors to make lossy,
 * quantize, allocate sparsity, compute the trace-norm factors, and fill
 * plan[][] with encodings and parameters (others stay as the lossless plan
 * made them). 0 or -errno with a message.
 */
int udfs_lossy_plan_group(struct add_group *g);

/* A lossy tensor ready to be cut into chunks. */
struct lossy_tensor;

/* Compute the keep mask and values of a whole lossy tensor. */
int udfs_lossy_tensor_prepare(const struct tensor_plan *p, int dtype,
			      uint64_t nelems, const void *cur,
			      const void *base, struct lossy_tensor **out);
/* Encode chunk ci (elements [first, first + n)) of a prepared tensor. */
int udfs_lossy_tensor_chunk(const struct lossy_tensor *lt,
			    const struct tensor_plan *p, int dtype,
			    uint64_t first, uint32_t n, void **out,
			    size_t *out_len);
/* Elements the tensor's mask keeps. */
uint64_t udfs_lossy_tensor_kept(const struct lossy_tensor *lt);
void udfs_lossy_tensor_free(struct lossy_tensor *lt);

#endif

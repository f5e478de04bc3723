/* SPDX-License-Identifier: MIT */
/*
 * Private interface between the add pipeline (compress.c) and the lossy
 * planner and tensor encoder (compress_lossy.c).
 */
#ifndef UDFS_COMPRESS_I_H
#define UDFS_COMPRESS_I_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "udfs/compress.h"
#include "udfs/source.h"
#include "udfs/store.h"

/* Set by the CLI's SIGINT/SIGTERM handler; long loops check it. */
extern volatile sig_atomic_t udfs_interrupted;

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
};

struct add_group {
	udfs_store *store;
	const udfs_add_opts *o;
	udfs_model *base;
	const unsigned char **base_map; /* base->files[i] mapped read-only */
	size_t n;
	struct add_model *models;
};

/* Pointer to the bytes of a base tensor in the mapped base. */
const unsigned char *udfs_add_base_bytes(const struct add_group *g,
					 const udfs_tensor *bt);

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

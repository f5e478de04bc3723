/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the add pipeline (add.c, add_base.c), its report
 * (add_report.c), the lossy planner and tensor encoder (plan_lossy.c),
 * the adaptive method's (plan_budget.c, encode_mix.c) and their shared
 * per-element helpers (delta.c).
 */
#ifndef UDFS_COMPRESS_I_H
#define UDFS_COMPRESS_I_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/fidelity.h"
#include "format/source.h"
#include "store/store.h"
#include "write/add.h"

/* Residual of an adaptive code (plan_budget.c). */
enum mix_residual {
	MIX_RES_NONE = 0,    /* the low-rank part alone */
	MIX_RES_SIGN = 1,    /* sign times one scale */
	MIX_RES_CODES = 2,   /* uniform b-bit codes, clipped levels */
	MIX_RES_TRELLIS = 3, /* a trellis path, one bit per rbits values */
};

/* The code chosen for one tensor by the adaptive method: a low-rank part
 * of rank `rank` with fbits-bit factors (rank 0: none) plus a residual
 * whose parameters are the tensor's udfs_lossy_params. */
struct mix_code {
	uint64_t cols; /* row length of the tensor */
	uint8_t rank, fbits;
	uint8_t res;	  /* enum mix_residual */
	uint8_t rbits;	  /* MIX_RES_CODES; values a bit (MIX_RES_TRELLIS) */
	uint8_t seeded;	  /* residual on a seeded random mask, rescaled */
	float rate;	  /* residual elements dropped (smallest first) */
	float search;	  /* MIX_RES_TRELLIS: the scale the path is searched
			     at (the stored one, lp.step, may be larger) */
	double est_bytes; /* estimated pack bytes */
	double est_err;	  /* estimated relative error of the delta */
};

struct mix_priced;

/* How one tensor of one model is stored; decided before any byte is
 * written. */
struct tensor_plan {
	int enc;		 /* enum udfs_encoding */
	const udfs_tensor *base; /* matching base tensor, or NULL */
	udfs_lossy_params lp;	 /* lossy encodings */
	/* UDFS_VAL_CODES: the extremes of the deltas that lp.lo and lp.step
	 * came from, which udfs_lossy_tensor_prepare quantizes with */
	double qmin, qmax;
	struct mix_code mix; /* UDFS_ENC_ADAPTIVE */
	/* UDFS_ENC_ADAPTIVE: the SVDs of the chunks the planner priced,
	 * or NULL; free with udfs_mix_priced_free */
	struct mix_priced *priced;
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
	struct json_t *codes; /* adaptive: {tensor: {code, bytes, error}} */
	double seconds;	      /* planning and writing time of this model */
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
	/* base->files[i] as one tensor, for its verbatim files: what a
	 * delta's file of the same path is compared with (a base model's
	 * verbatim files have no tensor of their own). */
	udfs_tensor *base_verbatim;
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

/* The delta cur - base of n elements of dtype as floats into d[n]
 * (delta.c); cur and base point at element 0 of the range. */
void udfs_add_delta_range(int dtype, uint64_t n, const void *cur,
			  const void *base, float *d);

/*
 * Lossy planning over the whole group: choose the tensors to make lossy,
 * quantize, allocate sparsity, compute the trace-norm factors, and fill
 * plan[][] with encodings and parameters (others stay as the lossless plan
 * made them): UltraDelta and the baselines; the adaptive method plans
 * with udfs_mix_plan_group(). 0 or -errno with a message.
 */
int udfs_lossy_plan_group(struct add_group *g);

/* True when tensor st of a plan made lossless could be made lossy: a
 * float matrix of at least --min-elems elements, not --exact. */
bool udfs_lossy_eligible(const udfs_add_opts *o, const struct tensor_plan *p,
			 const udfs_st_tensor *st);

/*
 * The adaptive method's planning (plan_budget.c): for each eligible tensor
 * of each model, the code (low-rank part, residual, or exact storage) that
 * minimizes the model's total squared delta error, relative per tensor,
 * under the byte budget of --ratio, or the smallest code within
 * --max-error. 0 or -errno with a message.
 */
int udfs_mix_plan_group(struct add_group *g);

/* One tensor's adaptive code, prepared and cut into chunks
 * (encode_mix.c); the counterparts of udfs_lossy_tensor_*. */
struct mix_tensor;
int udfs_mix_tensor_prepare(const struct tensor_plan *p, int dtype,
			    uint64_t nelems, const void *cur, const void *base,
			    int jobs, struct mix_tensor **out);
int udfs_mix_tensor_chunk(const struct mix_tensor *mt,
			  const struct tensor_plan *p, int dtype,
			  uint64_t first, uint32_t n, void **out,
			  size_t *out_len);
uint64_t udfs_mix_tensor_kept(const struct mix_tensor *mt);
void udfs_mix_priced_free(struct mix_priced *pr);
/* The reconstruction of elements [first, first + n) of an adaptive tensor
 * (one chunk) into rec, bit-identical to what a reader decodes from its
 * composite chunk (udfs(5)); base and rec point at element first. */
void udfs_mix_tensor_recon(const struct mix_tensor *mt,
			   const struct tensor_plan *p, int dtype,
			   uint64_t first, uint32_t n, const void *base,
			   void *rec);
/* gain * value(code) of a version 1 value section, as the decoder's table
 * computes it, in float: 256 codes, or 2 signs (1 = negative). */
void udfs_lossy_value_lut(const udfs_lossy_params *lp, float *lut);
void udfs_mix_tensor_free(struct mix_tensor *mt);

/* "lr16x6+codes3@0.90" and the like: the code of an adaptive tensor. */
void udfs_mix_code_name(const struct mix_code *c, const udfs_lossy_params *lp,
			char *buf, size_t len);

/* A lossy tensor ready to be cut into chunks. */
struct lossy_tensor;

/* Compute the keep mask and values of a whole lossy tensor, the
 * per-element passes on up to `jobs` threads (the same result at any
 * count). */
int udfs_lossy_tensor_prepare(const struct tensor_plan *p, int dtype,
			      uint64_t nelems, const void *cur,
			      const void *base, int jobs,
			      struct lossy_tensor **out);
/* Encode chunk ci (elements [first, first + n)) of a prepared tensor. */
int udfs_lossy_tensor_chunk(const struct lossy_tensor *lt,
			    const struct tensor_plan *p, int dtype,
			    uint64_t first, uint32_t n, void **out,
			    size_t *out_len);
/*
 * The reconstruction W_base + gain * value of elements [first, first + n)
 * (one chunk) of a prepared tensor into rec, bit-identical to what a
 * reader decodes from the chunk (udfs(5), reconstruction; an adaptive
 * tensor's through udfs_mix_tensor_recon): base and rec point at element
 * first. Computed from the codes in memory, it spares
 * the add decoding every chunk it writes.
 */
void udfs_lossy_tensor_recon(const struct lossy_tensor *lt,
			     const struct tensor_plan *p, int dtype,
			     uint64_t first, uint32_t n, const void *base,
			     void *rec);
/* Add the error of elements [first, first + n) as stored (one chunk) to
 * fid, against the fine-tune cur, from udfs_lossy_tensor_recon. cur and
 * base point at element first. */
int udfs_lossy_tensor_measure(const struct lossy_tensor *lt,
			      const struct tensor_plan *p, int dtype,
			      uint64_t first, uint32_t n, const void *cur,
			      const void *base, udfs_fidelity *fid);
/*
 * The pruned delta of a tensor planned as p with a seeded mask (rows x
 * cols, cur and base its bytes in dtype), values gain * value as a reader
 * decodes them, as compressed rows (trace_csr.c): the same entries as
 * from the prepared tensor, without preparing it. 0 or -ENOMEM; free a
 * with udfs_csr_free either way.
 */
struct udfs_csr;
int udfs_seeded_pruned_csr(const struct tensor_plan *p, int dtype,
			   const void *cur, const void *base, size_t rows,
			   size_t cols, struct udfs_csr *a);
/* Elements the tensor's mask keeps. */
uint64_t udfs_lossy_tensor_kept(const struct lossy_tensor *lt);
void udfs_lossy_tensor_free(struct lossy_tensor *lt);

#endif

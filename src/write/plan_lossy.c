// SPDX-License-Identifier: MIT
/*
 * Lossy planning and tensor preparation for `udfs-compress add`
 * (ARCHITECTURE.md, "Lossy planning"; the chunks: udfs(5)): which tensors
 * become lossy, their quantization parameters, the mixed sparsity allocation
 * across one model, the trace-norm factor across the models of one add, and
 * --ratio's search for s by real bytes. The algorithms themselves are in
 * ultradelta.c and codec/lossy.c; this file drives them over the tensors of a
 * source, one tensor at a time, so memory stays at a few times the largest
 * tensor.
 */
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy.h"
#include "codec/lossy_i.h"
#include "common/dtype.h"
#include "common/pool.h"
#include "common/util.h"
#include "format/tmap.h"
#include "read/recon.h"
#include "write/add_i.h"
#include "write/linalg.h"
#include "write/ultradelta.h"

struct lossy_tensor {
	struct mix_tensor *mix; /* UDFS_ENC_ADAPTIVE: all of it */
	uint64_t n;
	uint8_t *keep;	/* 1 = kept, per element */
	uint8_t *codes; /* UDFS_VAL_CODES: code per element; SIGN: 1 = neg */
	float *delta;	/* UDFS_VAL_NATIVE: the float32 delta per element */
	uint64_t kept;
	struct mask_walk *walk; /* group-wise mask still being drawn */
};

/*
 * The group-wise mask is one random walk over the whole tensor, the one
 * serial pass of a lossy add: with more than one job it runs on a thread
 * of its own, a piece at a time, while the chunks already walked are
 * encoded (udfs_lossy_tensor_chunk waits for its elements).
 */
struct mask_walk {
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct udfs_ud_pruner pr;
	struct lossy_tensor *lt;
	uint64_t ready; /* keep[0, ready) is final; under lock */
};

/* Elements walked between two wake-ups of the waiting encoders. */
#define WALK_PIECE ((uint64_t)1 << 18)

/* A selected tensor of one model, during planning. */
struct sel {
	size_t file, tensor;
	uint64_t nelems;
	double sigma;
	double rate;
};

static bool excluded(const udfs_add_opts *o, const char *name)
{
	for (size_t i = 0; i < o->n_exact; i++)
		if (fnmatch(o->exact[i], name, 0) == 0)
			return true;
	return false;
}

static int plan_values(const udfs_add_opts *o, udfs_lossy_params *lp)
{
	memset(lp, 0, sizeof(*lp));
	switch (o->method) {
	case UDFS_ENC_ULTRADELTA:
		lp->mask = (uint8_t)o->mask;
		lp->values = UDFS_VAL_CODES;
		lp->bits = (uint8_t)o->bits;
		break;
	case UDFS_ENC_DARE:
		lp->mask = (uint8_t)o->mask;
		lp->values = UDFS_VAL_NATIVE;
		break;
	case UDFS_ENC_MAGNITUDE:
		/* Top-k positions cannot be regenerated from a seed. */
		lp->mask = UDFS_MASK_EXPLICIT;
		lp->values = UDFS_VAL_NATIVE;
		break;
	case UDFS_ENC_BITDELTA:
		lp->mask = UDFS_MASK_NONE;
		lp->values = UDFS_VAL_SIGN;
		break;
	default:
		return udfs_error(-EINVAL, "unknown lossy method");
	}
	return 0;
}

bool udfs_lossy_eligible(const udfs_add_opts *o, const struct tensor_plan *p,
			 const udfs_st_tensor *st)
{
	return p->enc == UDFS_ENC_XOR && udfs_dtype_is_lossy_float(st->dtype) &&
	       st->ndim >= 2 && st->nelems >= o->min_elems &&
	       !excluded(o, st->name);
}

/* One candidate tensor of select_tensors, analysed on a worker thread. */
struct cand {
	size_t file, tensor;
	udfs_lossy_params lp;
	double sigma;
	double qmin, qmax; /* codes: the extremes of the deltas */
	int result;	   /* 0 lossy, 1 constant, -EDOM not finite, <0 error */
};

struct select_job {
	struct add_group *g;
	struct add_model *am;
	struct cand *c;
};

/* Elements per block of analyse's passes: the deltas of a block stay in
 * cache, and no tensor-sized array is allocated (and faulted in). */
#define SCAN_BLOCK ((uint64_t)1 << 16)

/* Scratch of analyse: one block of deltas and of codes. */
struct scan {
	const udfs_st_tensor *st;
	const unsigned char *cur, *base;
	float d[SCAN_BLOCK];
	uint8_t codes[SCAN_BLOCK];
};

/* The deltas of block [at, at + n) into sc->d. */
static void scan_block(struct scan *sc, uint64_t at, uint64_t n)
{
	unsigned es = udfs_dtype_size(sc->st->dtype);

	udfs_add_delta_range(sc->st->dtype, n, sc->cur + at * es,
			     sc->base + at * es, sc->d);
}

/* Codes: lo and step from the extremes of the deltas, then sigma from the
 * histogram of their codes, as udfs_ud_quantize and udfs_ud_code_std
 * give on the whole tensor. 0, 1 (constant) or -errno (-EDOM: a NaN or
 * an infinity). */
static int analyse_codes(struct scan *sc, struct cand *c)
{
	udfs_lossy_params *lp = &c->lp;
	uint64_t n = sc->st->nelems, hist[256] = {0};
	double mn = INFINITY, mx = -INFINITY;
	int r = 0;

	for (uint64_t at = 0; at < n && !r; at += SCAN_BLOCK) {
		uint64_t k = UDFS_MIN(SCAN_BLOCK, n - at);
		double a, b;

		scan_block(sc, at, k);
		r = udfs_ud_minmax(sc->d, k, &a, &b);
		mn = UDFS_MIN(mn, a);
		mx = UDFS_MAX(mx, b);
	}
	if (!r)
		r = udfs_ud_quantize_params(mn, mx, n, lp->bits, &lp->lo,
					    &lp->step);
	for (uint64_t at = 0; at < n && !r; at += SCAN_BLOCK) {
		uint64_t k = UDFS_MIN(SCAN_BLOCK, n - at);

		scan_block(sc, at, k);
		udfs_ud_quantize_range(sc->d, k, lp->bits, mn, mx, sc->codes);
		udfs_ud_hist(sc->codes, k, hist);
	}
	if (!r) {
		c->sigma = udfs_ud_hist_std(hist, lp->lo, lp->step);
		c->qmin = mn;
		c->qmax = mx;
	}
	return r;
}

/* Signs (the mean |delta| as step) or native values: every delta must be
 * finite. 0 or -EDOM. */
static int analyse_other(struct scan *sc, udfs_lossy_params *lp)
{
	uint64_t n = sc->st->nelems;
	double sum = 0;

	for (uint64_t at = 0; at < n; at += SCAN_BLOCK) {
		uint64_t k = UDFS_MIN(SCAN_BLOCK, n - at);

		scan_block(sc, at, k);
		for (uint64_t i = 0; i < k; i++) {
			if (!isfinite(sc->d[i]))
				return -EDOM;
			sum += fabs(sc->d[i]);
		}
	}
	if (lp->values == UDFS_VAL_SIGN)
		lp->step = (float)(sum / (double)n);
	return 0;
}

static int analyse(void *ctx, size_t i)
{
	struct select_job *j = ctx;
	struct cand *c = &j->c[i];
	const udfs_source_file *sf = &j->am->src->files[c->file];
	const udfs_st_tensor *st = &sf->st->tensors[c->tensor];
	const struct tensor_plan *p = &j->am->plan[c->file][c->tensor];
	struct scan *sc;
	int r;

	if (udfs_interrupted)
		return udfs_error(-EINTR, "interrupted");
	sc = malloc(sizeof(*sc));
	if (!sc)
		return -ENOMEM;
	sc->st = st;
	sc->cur = udfs_source_tensor_bytes(sf, st);
	sc->base = udfs_add_base_bytes(j->g, p->base);
	/* Codes: the quantizer's extremes find a NaN or an infinity. */
	r = c->lp.values == UDFS_VAL_CODES ? analyse_codes(sc, c)
					   : analyse_other(sc, &c->lp);
	free(sc);
	if (r == -EDOM)
		udfs_error_clear();
	c->result = r;
	return r == -ENOMEM ? r : 0;
}

/*
 * Select the lossy tensors of one model and fill their quantization
 * parameters (and sigma), tensors analysed in parallel. A tensor whose
 * delta is constant, or holds a NaN or an infinity, stays xor: exact,
 * never garbage.
 */
static int select_tensors(struct add_group *g, struct add_model *am,
			  struct sel **out, size_t *n_out)
{
	const udfs_add_opts *o = g->o;
	const udfs_source *src = am->src;
	struct select_job job = {.g = g, .am = am};
	struct sel *v = NULL;
	size_t n = 0, nc = 0;
	udfs_lossy_params lp;
	int err = plan_values(o, &lp);

	if (err)
		return err;
	for (size_t i = 0; i < src->n_files; i++) {
		const udfs_source_file *sf = &src->files[i];

		for (size_t j = 0; sf->st && j < sf->st->n_tensors; j++) {
			const udfs_st_tensor *st = &sf->st->tensors[j];

			if (!udfs_lossy_eligible(o, &am->plan[i][j], st))
				continue;
			job.c = udfs_xrealloc(job.c, (nc + 1) * sizeof(*job.c));
			job.c[nc++] =
			    (struct cand){.file = i, .tensor = j, .lp = lp};
		}
	}
	err = udfs_parallel_for(o->jobs, nc, analyse, &job);
	for (size_t k = 0; k < nc && !err; k++) {
		struct cand *c = &job.c[k];
		const udfs_st_tensor *st =
		    &src->files[c->file].st->tensors[c->tensor];
		struct tensor_plan *p = &am->plan[c->file][c->tensor];

		if (c->result)
			continue; /* constant or not finite: xor */
		c->lp.seed = udfs_seeded_key(o->seed, st->name);
		p->lp = c->lp;
		p->qmin = c->qmin;
		p->qmax = c->qmax;
		p->enc = o->method;
		v = udfs_xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = (struct sel){.file = c->file,
				      .tensor = c->tensor,
				      .nelems = st->nelems,
				      .sigma = c->sigma};
	}
	free(job.c);
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	*n_out = n;
	return 0;
}

/* True when the keep mask of p is drawn from its seed (no walk, no
 * magnitudes): dare with an explicit mask draws the same Bernoulli mask
 * and stores its positions. */
static bool seeded_draw(const struct tensor_plan *p)
{
	return p->lp.mask != UDFS_MASK_NONE && p->enc != UDFS_ENC_MAGNITUDE &&
	       (p->lp.mask == UDFS_MASK_SEEDED || p->enc == UDFS_ENC_DARE);
}

/* True when the keep mask of p is the group-wise walk over its codes
 * histogram (prepare_mask's last case). */
static bool walked_mask(const struct tensor_plan *p)
{
	return p->lp.mask != UDFS_MASK_NONE && p->enc != UDFS_ENC_MAGNITUDE &&
	       !seeded_draw(p);
}

/* Rates of every selected tensor for target sparsity s. */
static void allocate(const udfs_add_opts *o, struct sel *v, size_t n, double s)
{
	if (o->method == UDFS_ENC_ULTRADELTA && n) {
		double *sigma = udfs_xcalloc(n, sizeof(double));
		uint64_t *ne = udfs_xcalloc(n, sizeof(uint64_t));
		double *rates = udfs_xcalloc(n, sizeof(double));

		for (size_t i = 0; i < n; i++) {
			sigma[i] = v[i].sigma;
			ne[i] = v[i].nelems;
		}
		udfs_ud_allocate(n, sigma, ne, s, o->step, rates, NULL);
		for (size_t i = 0; i < n; i++)
			v[i].rate = rates[i];
		free(sigma);
		free(ne);
		free(rates);
		return;
	}
	for (size_t i = 0; i < n; i++)
		v[i].rate = o->method == UDFS_ENC_BITDELTA ? 0 : s;
}

/*
 * A seeded mask keeps a multiple of 1/SEEDED_GRID of the elements: its rate
 * rounded to the nearest (at most 0.001 off the allocation's, whose steps
 * are 0.01). Its keep probability t / 2^16 then has no set bit below 2^7,
 * and the mask draws at most 9 of its 16 levels (common/prng.h) where a
 * rate such as 0.8962 drew all 16: a 1 MiB BF16 chunk at s = 0.9 decodes
 * in 196-204 us against 215. The rate is stored as it is used, so readers
 * of every version draw the same mask.
 */
#define SEEDED_GRID 512.0

static double seeded_rate(double rate)
{
	return 1.0 - round((1.0 - rate) * SEEDED_GRID) / SEEDED_GRID;
}

static void apply_rates(struct add_model *am, const struct sel *v, size_t n,
			double s, const udfs_add_opts *o, double gamma)
{
	for (size_t i = 0; i < n; i++) {
		struct tensor_plan *p = &am->plan[v[i].file][v[i].tensor];
		udfs_lossy_params *lp = &p->lp;

		lp->rate = seeded_draw(p) ? seeded_rate(v[i].rate) : v[i].rate;
		switch (o->method) {
		case UDFS_ENC_ULTRADELTA: /* one rescale for the model */
			lp->gain = (float)(gamma / (1.0 - s));
			break;
		case UDFS_ENC_DARE: /* unbiased: the rate the mask keeps */
			lp->gain = (float)(1.0 / (1.0 - lp->rate));
			break;
		default:
			lp->gain = 1.0f;
		}
	}
}

/* Elements per slice of the parallel passes of udfs_lossy_tensor_prepare. */
#define PREP_SLICE ((uint64_t)1 << 18)

struct prep_job {
	const struct tensor_plan *p;
	int dtype;
	const unsigned char *cur, *base;
	struct lossy_tensor *lt;
	float *d;
	double *mn, *mx;       /* per slice: the extremes of its deltas */
	uint64_t (*hist)[256]; /* per slice: elements per code */
	uint64_t *kept;	       /* per slice: kept by a seeded mask */
	uint64_t seeded_kept;  /* their sum */
	int *err;	       /* per slice: a delta not finite (-EDOM) */
};

/* Elements per block of a slice's coded passes: their deltas, computed
 * again in the second pass, stay in cache instead of a tensor-sized
 * array. */
#define PREP_BLOCK 4096

/* Codes or signs of elements [first, first + n), their histogram and
 * (codes) the extremes of their deltas. */
static void prep_codes(struct prep_job *j, size_t slice, uint64_t first,
		       uint64_t n)
{
	const struct tensor_plan *p = j->p;
	const udfs_lossy_params *lp = &p->lp;
	unsigned es = udfs_dtype_size(j->dtype);
	uint8_t *codes = j->lt->codes + first;
	float d[PREP_BLOCK];

	j->mn[slice] = INFINITY;
	j->mx[slice] = -INFINITY;
	for (uint64_t at = 0; at < n; at += PREP_BLOCK) {
		uint64_t k = UDFS_MIN((uint64_t)PREP_BLOCK, n - at);
		double a = 0, b = 0;

		udfs_add_delta_range(j->dtype, k, j->cur + (first + at) * es,
				     j->base + (first + at) * es, d);
		if (lp->values != UDFS_VAL_CODES) {
			for (uint64_t e = 0; e < k; e++)
				codes[at + e] = d[e] < 0;
			continue;
		}
		if (udfs_ud_minmax(d, k, &a, &b) < 0)
			j->err[slice] = -EDOM;
		j->mn[slice] = UDFS_MIN(j->mn[slice], a);
		j->mx[slice] = UDFS_MAX(j->mx[slice], b);
		udfs_ud_quantize_range(d, k, lp->bits, p->qmin, p->qmax,
				       codes + at);
	}
	/* Only the group-wise walk reads the histogram (prepare_mask). */
	if (lp->values == UDFS_VAL_CODES && walked_mask(p))
		udfs_ud_hist(codes, n, j->hist[slice]);
}

static int prep_slice(void *ctx, size_t i)
{
	struct prep_job *j = ctx;
	const udfs_lossy_params *lp = &j->p->lp;
	uint64_t first = i * PREP_SLICE;
	uint64_t n = UDFS_MIN(PREP_SLICE, j->lt->n - first);
	unsigned es = udfs_dtype_size(j->dtype);

	if (seeded_draw(j->p))
		j->kept[i] = udfs_seeded_levels_keep_bytes(
		    lp->seed, first, (size_t)n, udfs_seeded_levels(lp->rate),
		    j->lt->keep + first);
	if (lp->values == UDFS_VAL_NATIVE)
		/* The deltas themselves are the values. */
		udfs_add_delta_range(j->dtype, n, j->cur + first * es,
				     j->base + first * es, j->d + first);
	else
		prep_codes(j, i, first, n);
	return 0;
}

/* Whether the extremes of the deltas, from those of the slices, are the
 * plan's: the codes were made with the plan's, so they are the codes the
 * plan meant only then. A source changed since (or a delta no longer
 * finite) is -EIO. */
static int prep_check(const struct prep_job *j, size_t slices)
{
	double mn = INFINITY, mx = -INFINITY;
	bool same = true;

	for (size_t i = 0; i < slices; i++) {
		mn = UDFS_MIN(mn, j->mn[i]);
		mx = UDFS_MAX(mx, j->mx[i]);
		same = same && !j->err[i];
	}
	if (!same || mn != j->p->qmin || mx != j->p->qmax)
		return udfs_error(-EIO,
				  "tensor changed while being compressed");
	return 0;
}

/* The codes (or signs) of lt and their histogram `hist`, or for native
 * values its deltas into j->d, and the seeded mask, in one pass of slices
 * on `jobs` threads: the same codes as udfs_ud_quantize on the whole
 * tensor, whose extremes the plan found (prep_check). */
static int prepare_values(struct prep_job *j, int jobs, uint64_t *hist)
{
	const udfs_lossy_params *lp = &j->p->lp;
	size_t slices = (size_t)((j->lt->n + PREP_SLICE - 1) / PREP_SLICE);
	int err;

	j->mn = udfs_xcalloc(slices + 1, sizeof(double));
	j->mx = udfs_xcalloc(slices + 1, sizeof(double));
	j->hist = udfs_xcalloc(slices + 1, sizeof(*j->hist));
	j->kept = udfs_xcalloc(slices + 1, sizeof(*j->kept));
	j->err = udfs_xcalloc(slices + 1, sizeof(*j->err));
	err = udfs_parallel_for(jobs, slices, prep_slice, j);
	if (!err && lp->values == UDFS_VAL_CODES)
		err = prep_check(j, slices);
	for (size_t i = 0; i < slices; i++) {
		for (int c = 0; c < 256; c++)
			hist[c] += j->hist[i][c];
		j->seeded_kept += j->kept[i];
	}
	free(j->err);
	free(j->kept);
	free(j->mn);
	free(j->mx);
	free(j->hist);
	return err;
}

static void *walk_thread(void *arg)
{
	struct mask_walk *w = arg;
	struct lossy_tensor *lt = w->lt;
	uint64_t kept = 0;

	for (uint64_t at = 0; at < lt->n; at += WALK_PIECE) {
		uint64_t m = UDFS_MIN(WALK_PIECE, lt->n - at);

		kept += (uint64_t)udfs_ud_pruner_walk(&w->pr, lt->codes + at, m,
						      lt->keep + at);
		pthread_mutex_lock(&w->lock);
		if (at + m == lt->n)
			lt->kept = kept;
		w->ready = at + m;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
	return NULL;
}

/* The group-wise mask of lt: on a thread of its own when jobs > 1 (see
 * struct mask_walk), else (or when no thread starts) here. */
static void start_walk(struct lossy_tensor *lt, const udfs_lossy_params *lp,
		       const uint64_t *hist, int jobs)
{
	struct mask_walk *w = udfs_xcalloc(1, sizeof(*w));

	udfs_ud_pruner_init(&w->pr, hist, lp->rate, lp->seed);
	w->lt = lt;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (jobs > 1 && pthread_create(&w->tid, NULL, walk_thread, w) == 0) {
		lt->walk = w;
		return;
	}
	walk_thread(w);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* Wait until keep[0, end) of lt is final. */
static void wait_walk(const struct lossy_tensor *lt, uint64_t end)
{
	struct mask_walk *w = lt->walk;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	while (w->ready < end)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* The keep mask of a prepared tensor, where prepare_values has not drawn
 * it (a seeded one, in its slices): 0 or -errno. */
static int prepare_mask(const struct prep_job *j, const uint64_t *hist,
			int jobs)
{
	const udfs_lossy_params *lp = &j->p->lp;
	struct lossy_tensor *lt = j->lt;
	int64_t kept;

	if (lp->mask == UDFS_MASK_NONE) {
		memset(lt->keep, 1, lt->n);
		kept = (int64_t)lt->n;
	} else if (j->p->enc == UDFS_ENC_MAGNITUDE) {
		kept = udfs_ud_prune_magnitude(j->d, lt->n, lp->rate, lt->keep);
	} else if (seeded_draw(j->p)) {
		kept = (int64_t)j->seeded_kept;
	} else {
		start_walk(lt, lp, hist, jobs);
		return 0;
	}
	if (kept < 0)
		return (int)kept;
	lt->kept = (uint64_t)kept;
	return 0;
}

int udfs_lossy_tensor_prepare(const struct tensor_plan *p, int dtype,
			      uint64_t nelems, const void *cur,
			      const void *base, int jobs,
			      struct lossy_tensor **out)
{
	struct lossy_tensor *lt = udfs_xcalloc(1, sizeof(*lt));
	struct prep_job j = {
	    .p = p, .dtype = dtype, .cur = cur, .base = base, .lt = lt};
	bool coded =
	    p->lp.values == UDFS_VAL_CODES || p->lp.values == UDFS_VAL_SIGN;
	uint64_t hist[256] = {0};
	int err = 0;

	if (p->enc == UDFS_ENC_ADAPTIVE) {
		err = udfs_mix_tensor_prepare(p, dtype, nelems, cur, base, jobs,
					      &lt->mix);
		goto out;
	}
	lt->n = nelems;
	/* Codes and signs compute their deltas again, a block at a time. */
	j.d = coded ? NULL : udfs_malloc_huge(nelems * sizeof(float) + 1);
	lt->keep = udfs_malloc_huge(nelems + 1);
	lt->codes = coded ? udfs_malloc_huge(nelems + 1) : NULL;
	if ((!coded && !j.d) || !lt->keep || (coded && !lt->codes)) {
		err = -ENOMEM;
		goto out;
	}
	err = prepare_values(&j, jobs, hist);
	if (!err)
		err = prepare_mask(&j, hist, jobs);
	if (!err && p->lp.values == UDFS_VAL_NATIVE) {
		lt->delta = j.d;
		j.d = NULL;
	}
out:
	free(j.d);
	if (err) {
		udfs_lossy_tensor_free(lt);
		return err;
	}
	*out = lt;
	return 0;
}

int udfs_lossy_tensor_chunk(const struct lossy_tensor *lt,
			    const struct tensor_plan *p, int dtype,
			    uint64_t first, uint32_t n, void **out,
			    size_t *out_len)
{
	unsigned es = udfs_dtype_size(dtype);
	uint32_t *kept, k = 0;
	unsigned char *vals;
	int err;

	if (lt->mix)
		return udfs_mix_tensor_chunk(lt->mix, p, dtype, first, n, out,
					     out_len);
	wait_walk(lt, first + n);
	kept = malloc((size_t)n * sizeof(uint32_t) + 1);
	vals = malloc((size_t)n * (es > 1 ? es : 1) + 1);
	if (!kept || !vals) {
		free(kept);
		free(vals);
		return -ENOMEM;
	}
	if (p->lp.values == UDFS_VAL_NATIVE) {
		for (uint32_t i = 0; i < n; i++) {
			if (!lt->keep[first + i])
				continue;
			udfs_dtype_store_f32(dtype, vals, k,
					     lt->delta[first + i]);
			kept[k++] = i;
		}
	} else {
		/* Branch-free compaction: which elements are kept is a coin
		 * flip per element. */
		const uint8_t *keep = lt->keep + first,
			      *codes = lt->codes + first;

		for (uint32_t i = 0; i < n; i++) {
			kept[k] = i;
			vals[k] = codes[i];
			k += keep[i];
		}
	}
	err = udfs_lossy_encode_chunk(&p->lp, dtype, first, n, kept, k, vals,
				      out, out_len);
	free(kept);
	free(vals);
	return err;
}

/* Elements per block of recon_bf16. */
#define RECON_BLOCK 64

/*
 * One block of recon_bf16 with no branch, so that -O2 vectorizes it: the
 * fast path of udfs_lossy_bf16_add (add, round to nearest even) on every
 * element, the base bits where dropped. Returns nonzero when a kept sum
 * is near or past the largest finite value (or a NaN), which the caller
 * redoes through udfs_lossy_bf16_add.
 */
UDFS_INLINE uint32_t recon_bf16_block(const uint8_t *keep, const uint8_t *codes,
				      uint8_t code_mask, const float *lut,
				      const uint8_t *bp, uint8_t *op)
{
	uint16_t hb[RECON_BLOCK], ho[RECON_BLOCK];
	float d[RECON_BLOCK];
	uint32_t slow = 0;

	memcpy(hb, bp, sizeof(hb));
	for (int i = 0; i < RECON_BLOCK; i++)
		d[i] = lut[codes[i] & code_mask];
	for (int i = 0; i < RECON_BLOCK; i++) {
		uint32_t u = (uint32_t)hb[i] << 16;
		uint16_t r;
		float b, w;

		memcpy(&b, &u, 4);
		w = b + d[i];
		memcpy(&u, &w, 4);
		/* Round to nearest even; a NaN or an infinity is slow. */
		r = (uint16_t)((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
		slow |= keep[i] & ((u & 0x7fffffffu) >= 0x7f7f8000u);
		ho[i] = keep[i] ? r : hb[i];
	}
	memcpy(op, ho, sizeof(ho));
	return slow;
}

/* BF16 codes or signs, element by element as the decoder's BF16 loop
 * (udfs_lossy_bf16_add), so that the error figures see the same bits. */
static void recon_bf16_each(const uint8_t *keep, const uint8_t *codes,
			    uint8_t code_mask, const float *lut,
			    const uint8_t *bp, uint8_t *op, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint16_t h;

		memcpy(&h, bp + 2 * (size_t)i, 2);
		if (keep[i])
			h = udfs_lossy_bf16_add(h, lut[codes[i] & code_mask]);
		memcpy(op + 2 * (size_t)i, &h, 2);
	}
}

/* The same in blocks that compute every element and keep the base bits
 * where dropped (which are kept is a coin flip per element, a branch
 * mispredicted often); a block with a sum near the top again through
 * recon_bf16_each. */
UDFS_CLONES
static void recon_bf16(const uint8_t *keep, const uint8_t *codes,
		       uint8_t code_mask, const float *lut, const void *base,
		       void *rec, uint32_t n)
{
	const uint8_t *bp = base;
	uint8_t *op = rec;
	uint32_t i = 0;

	for (; i + RECON_BLOCK <= n; i += RECON_BLOCK)
		if (recon_bf16_block(keep + i, codes + i, code_mask, lut,
				     bp + 2 * (size_t)i, op + 2 * (size_t)i))
			recon_bf16_each(keep + i, codes + i, code_mask, lut,
					bp + 2 * (size_t)i, op + 2 * (size_t)i,
					RECON_BLOCK);
	recon_bf16_each(keep + i, codes + i, code_mask, lut, bp + 2 * (size_t)i,
			op + 2 * (size_t)i, n - i);
}

void udfs_lossy_tensor_recon(const struct lossy_tensor *lt,
			     const struct tensor_plan *p, int dtype,
			     uint64_t first, uint32_t n, const void *base,
			     void *rec)
{
	const udfs_lossy_params *lp = &p->lp;
	float lut[256];

	if (lt->mix) {
		udfs_mix_tensor_recon(lt->mix, p, dtype, first, n, base, rec);
		return;
	}
	udfs_lossy_value_lut(lp, lut);
	if (dtype == UDFS_DT_BF16 && lp->values != UDFS_VAL_NATIVE) {
		recon_bf16(lt->keep + first, lt->codes + first,
			   lp->values == UDFS_VAL_CODES ? 0xff : 1, lut, base,
			   rec, n);
		return;
	}
	memcpy(rec, base, (size_t)n * udfs_dtype_size(dtype));
	for (uint32_t i = 0; i < n; i++) {
		uint64_t e = first + i;
		float d, b;

		if (!lt->keep[e])
			continue; /* the base bits exactly */
		if (lp->values == UDFS_VAL_NATIVE) {
			uint8_t v[4]; /* stored in dtype, as the encoder does */

			udfs_dtype_store_f32(dtype, v, 0, lt->delta[e]);
			d = lp->gain * udfs_dtype_load_f32(dtype, v, 0);
		} else {
			d = lut[lp->values == UDFS_VAL_CODES
				    ? lt->codes[e]
				    : lt->codes[e] & 1];
		}
		b = udfs_dtype_load_f32(dtype, base, i);
		udfs_dtype_store_f32(dtype, rec, i,
				     udfs_lossy_finite_sum(dtype, b, d));
	}
}

int udfs_lossy_tensor_measure(const struct lossy_tensor *lt,
			      const struct tensor_plan *p, int dtype,
			      uint64_t first, uint32_t n, const void *cur,
			      const void *base, udfs_fidelity *fid)
{
	void *rec = malloc((size_t)n * udfs_dtype_size(dtype) + 1);
	int err = 0;

	if (!rec)
		return -ENOMEM;
	udfs_lossy_tensor_recon(lt, p, dtype, first, n, base, rec);
	if (!err)
		udfs_fidelity_add(fid, dtype, base, rec, cur, n);
	free(rec);
	return err;
}

void udfs_lossy_tensor_free(struct lossy_tensor *lt)
{
	if (!lt)
		return;
	if (lt->walk) {
		pthread_join(lt->walk->tid, NULL);
		pthread_cond_destroy(&lt->walk->cond);
		pthread_mutex_destroy(&lt->walk->lock);
		free(lt->walk);
	}
	udfs_mix_tensor_free(lt->mix);
	free(lt->keep);
	free(lt->codes);
	free(lt->delta);
	free(lt);
}

uint64_t udfs_lossy_tensor_kept(const struct lossy_tensor *lt)
{
	if (lt->mix)
		return udfs_mix_tensor_kept(lt->mix);
	wait_walk(lt, lt->n);
	return lt->kept;
}

/* Bit i of the result: keep[i] & 1, for i < n <= 64 (eight bytes of 0 or 1
 * at a time, packed by one multiply). */
static inline uint64_t keep_bits(const uint8_t *keep, size_t n)
{
	uint64_t m = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, keep + i, 8);
		w &= 0x0101010101010101ull;
		m |= ((w * 0x0102040810204080ull) >> 56) << i;
	}
	for (; i < n; i++)
		m |= (uint64_t)(keep[i] & 1) << i;
	return m;
}

/*
 * The pruned, rescaled delta of a prepared tensor, rows x cols, as
 * compressed rows (its nonzeros only: 10% of the elements at s = 0.9,
 * where the dense matrix was 4 bytes of every element written and read
 * three times). Values: gain * delta, or gain * (lo + code * step) and
 * gain * (+-step) through the table, the same float operations as the
 * decoder's; an element whose value is 0 is left out, kept or not. The
 * kept elements are visited by the set bits of the mask, 64 at a time:
 * the work is per kept element, not per element.
 */
static int pruned_csr(const struct tensor_plan *p, struct lossy_tensor *lt,
		      size_t rows, size_t cols, udfs_csr *a)
{
	const udfs_lossy_params *lp = &p->lp;
	uint64_t cap = udfs_lossy_tensor_kept(lt) + 1, e = 0;
	uint8_t mask = lp->values == UDFS_VAL_CODES ? 0xff : 1;
	bool native = lp->values == UDFS_VAL_NATIVE;
	float lut[256];

	a->rows = rows;
	a->cols = cols;
	a->ptr = malloc((rows + 1) * sizeof(*a->ptr));
	a->col = malloc(cap * sizeof(*a->col));
	a->val = malloc(cap * sizeof(*a->val));
	if (!a->ptr || !a->col || !a->val)
		return udfs_error(-ENOMEM, "out of memory");
	udfs_lossy_value_lut(lp, lut);
	for (size_t r = 0; r < rows; r++) {
		uint64_t at = (uint64_t)r * cols;

		a->ptr[r] = e;
		for (size_t c0 = 0; c0 < cols; c0 += 64) {
			uint64_t m = keep_bits(lt->keep + at + c0,
					       UDFS_MIN((size_t)64, cols - c0));

			for (; m; m &= m - 1) {
				size_t c = c0 + (size_t)__builtin_ctzll(m);
				float v = native
					      ? lp->gain * lt->delta[at + c]
					      : lut[lt->codes[at + c] & mask];

				/* a spare slot: written always, kept on a
				 * nonzero */
				a->col[e] = (uint32_t)c;
				a->val[e] = v;
				e += v != 0.0f;
			}
		}
	}
	a->ptr[rows] = e;
	return 0;
}

/* The trace-norm phase of a group: one item per selected tensor of every
 * model, run in parallel, largest first so that one big tensor does not
 * start last. */
struct trace_job {
	struct add_group *g;
	struct sel *const *v;
	size_t n_items;
	size_t *model, *tensor; /* item -> (model, index into v[model]) */
	const size_t *flat;	/* item -> model-major index of norm */
	double *norm;		/* per tensor, model-major */
	size_t done;		/* for the progress line */
	pthread_mutex_t lock;
};

static int trace_one(void *ctx, size_t i)
{
	struct trace_job *j = ctx;
	struct add_model *am = &j->g->models[j->model[i]];
	const struct sel *v = &j->v[j->model[i]][j->tensor[i]];
	const udfs_source_file *sf = &am->src->files[v->file];
	const udfs_st_tensor *st = &sf->st->tensors[v->tensor];
	const struct tensor_plan *p = &am->plan[v->file][v->tensor];
	struct lossy_tensor *lt = NULL;
	uint64_t rows = st->shape[0];
	udfs_csr a = {0};
	int err;

	if (udfs_interrupted)
		return udfs_error(-EINTR, "interrupted");
	if (seeded_draw(p))
		/* from the sources: the mask needs no codes */
		err = udfs_seeded_pruned_csr(
		    p, st->dtype, udfs_source_tensor_bytes(sf, st),
		    udfs_add_base_bytes(j->g, p->base), (size_t)rows,
		    (size_t)(st->nelems / rows), &a);
	else
		/* One thread: the tensors themselves run in parallel. */
		err = udfs_lossy_tensor_prepare(
		    p, st->dtype, st->nelems, udfs_source_tensor_bytes(sf, st),
		    udfs_add_base_bytes(j->g, p->base), 1, &lt);
	if (!err && lt)
		err = pruned_csr(p, lt, (size_t)rows,
				 (size_t)(st->nelems / rows), &a);
	if (!err)
		err = udfs_nuclear_norm_csr(&a, &j->norm[j->flat[i]]);
	udfs_csr_free(&a);
	udfs_lossy_tensor_free(lt);
	pthread_mutex_lock(&j->lock);
	udfs_add_progress_phase(j->g, am->name, "trace norm", ++j->done,
				j->n_items, "tensors");
	pthread_mutex_unlock(&j->lock);
	return err;
}

/* Items of the trace-norm phase, largest tensor first (ties by order). */
static int cmp_item(const void *a, const void *b, void *arg)
{
	const uint64_t *ne = arg;
	size_t i = *(const size_t *)a, k = *(const size_t *)b;

	if (ne[i] != ne[k])
		return ne[i] > ne[k] ? -1 : 1;
	return (i > k) - (i < k);
}

/* T[m]: the sum of nuclear norms of the pruned, rescaled deltas of model
 * m's selected tensors (the trace-norm rescale, ARCHITECTURE.md; exact,
 * or estimated above 512 rows and columns: udfs_nuclear_norm_auto),
 * summed in tensor order whatever order the items ran in. */
static int trace_norms(struct add_group *g, struct sel *const *v,
		       const size_t *n, double *T)
{
	struct trace_job j = {.g = g, .v = v};
	size_t total = 0, k = 0, *order, *model, *tensor;
	uint64_t *ne;
	int err;

	for (size_t i = 0; i < g->n; i++)
		total += n[i];
	order = udfs_xcalloc(total + 1, sizeof(size_t));
	model = udfs_xcalloc(total + 1, sizeof(size_t));
	tensor = udfs_xcalloc(total + 1, sizeof(size_t));
	ne = udfs_xcalloc(total + 1, sizeof(uint64_t));
	j.norm = udfs_xcalloc(total + 1, sizeof(double));
	for (size_t i = 0; i < g->n; i++)
		for (size_t t = 0; t < n[i]; t++, k++) {
			order[k] = k;
			ne[k] = v[i][t].nelems;
		}
	qsort_r(order, total, sizeof(size_t), cmp_item, ne);
	for (k = 0; k < total; k++) {
		size_t flat = order[k], i = 0;

		while (flat >= n[i])
			flat -= n[i++];
		model[k] = i;
		tensor[k] = flat;
	}
	j.model = model;
	j.tensor = tensor;
	j.flat = order;
	j.n_items = total;
	pthread_mutex_init(&j.lock, NULL);
	udfs_blas_threads(1);
	err = udfs_parallel_for(g->o->jobs, total, trace_one, &j);
	pthread_mutex_destroy(&j.lock);
	for (size_t i = 0; i < g->n; i++)
		T[i] = 0;
	/* Per model in tensor order: the same sums at any --jobs. */
	for (size_t i = 0, flat = 0; i < g->n; i++)
		for (size_t t = 0; t < n[i]; t++)
			T[i] += j.norm[flat++];
	free(order);
	free(model);
	free(tensor);
	free(ne);
	free(j.norm);
	return err;
}

struct size_job {
	struct add_group *g;
	struct add_model *am;
	const struct sel *v;
	uint64_t *bytes; /* per selected tensor */
};

static int size_one(void *ctx, size_t i)
{
	struct size_job *j = ctx;
	const struct sel *s = &j->v[i];
	const udfs_source_file *sf = &j->am->src->files[s->file];
	const udfs_st_tensor *st = &sf->st->tensors[s->tensor];
	const struct tensor_plan *p = &j->am->plan[s->file][s->tensor];
	unsigned es = udfs_dtype_size(st->dtype);
	struct lossy_tensor *lt = NULL;
	int err;

	/* One thread: the tensors themselves run in parallel. */
	err = udfs_lossy_tensor_prepare(
	    p, st->dtype, st->nelems, udfs_source_tensor_bytes(sf, st),
	    udfs_add_base_bytes(j->g, p->base), 1, &lt);
	j->bytes[i] = 0;
	for (uint64_t off = 0; !err && off < st->nelems * es;
	     off += UDFS_CHUNK_BYTES) {
		uint64_t len =
		    UDFS_MIN((uint64_t)UDFS_CHUNK_BYTES, st->nelems * es - off);
		void *out = NULL;
		size_t out_len = 0;

		err = udfs_lossy_tensor_chunk(lt, p, st->dtype, off / es,
					      (uint32_t)(len / es), &out,
					      &out_len);
		free(out);
		j->bytes[i] += out_len + udfs_tmap_chunk_ref_bytes(out_len);
	}
	udfs_lossy_tensor_free(lt);
	return err;
}

/* The head and parameters of the map record of a tensor planned as p,
 * as the catalog will count them (udfs_encoded_bytes). */
static size_t record_bytes(const struct add_group *g,
			   const struct tensor_plan *p, const char *name)
{
	udfs_model m = {.seed = (int64_t)g->o->seed};
	udfs_file f = {.model = &m};
	udfs_tensor t = {
	    .enc = p->enc, .file = &f, .name = (char *)name, .lp = p->lp};

	if (p->base) {
		t.base_file_id = (int64_t)p->base->file->ino;
		t.base_begin = p->base->begin;
	}
	return udfs_tmap_record_bytes(&t);
}

/* Ratio of the lossy tensors of am by real encoded bytes at sparsity s. */
static int measure_ratio(struct add_group *g, struct add_model *am,
			 struct sel *v, size_t n, double s, double *ratio)
{
	uint64_t *bytes = udfs_xcalloc(n + 1, sizeof(uint64_t));
	struct size_job j = {.g = g, .am = am, .v = v, .bytes = bytes};
	uint64_t src = 0, dst = 0;
	int err;

	allocate(g->o, v, n, s);
	apply_rates(am, v, n, s, g->o, 1.0);
	err = udfs_parallel_for(g->o->jobs, n, size_one, &j);
	for (size_t i = 0; i < n; i++) {
		const udfs_source_file *sf = &am->src->files[v[i].file];
		const udfs_st_tensor *st = &sf->st->tensors[v[i].tensor];

		src += st->end - st->begin;
		dst += bytes[i] +
		       record_bytes(g, &am->plan[v[i].file][v[i].tensor],
				    st->name);
	}
	free(bytes);
	*ratio = dst ? (double)src / (double)dst : 0;
	return err;
}

/* --ratio R: bisection on log(1 - s), by real bytes of the first model. */
static int search_sparsity(struct add_group *g, struct sel **v, size_t *n,
			   double *s_out)
{
	const udfs_add_opts *o = g->o;
	double lo = 0.0, hi = 0.995, r;
	int err;

	err = measure_ratio(g, &g->models[0], v[0], n[0], hi, &r);
	if (err)
		return err;
	if (r < o->ratio)
		return udfs_error(
		    -ERANGE,
		    "--ratio %g is out of reach: the lossy tensors reach %.1fx at s = %.3f",
		    o->ratio, r, hi);
	for (int it = 0; it < 14; it++) {
		double mid = 1.0 - sqrt((1.0 - lo) * (1.0 - hi));

		udfs_add_progress_phase(g, g->models[0].name, "--ratio search",
					(uint64_t)it, 14, "steps");
		err = measure_ratio(g, &g->models[0], v[0], n[0], mid, &r);
		if (err)
			return err;
		if (r >= o->ratio)
			hi = mid;
		else
			lo = mid;
	}
	*s_out = hi;
	return 0;
}

int udfs_lossy_plan_group(struct add_group *g)
{
	const udfs_add_opts *o = g->o;
	struct sel **v = udfs_xcalloc(g->n, sizeof(*v));
	size_t *n = udfs_xcalloc(g->n, sizeof(*n));
	double *T = udfs_xcalloc(g->n, sizeof(double));
	double s = o->sparsity, tmin = INFINITY;
	int err = 0;

	for (size_t i = 0; i < g->n && !err; i++) {
		double t0 = udfs_now();

		udfs_add_progress_phase(g, g->models[i].name,
					"choosing lossy tensors", i, g->n,
					"models");
		err = select_tensors(g, &g->models[i], &v[i], &n[i]);
		g->models[i].seconds += udfs_now() - t0;
	}
	if (!err && o->ratio > 0 && n[0]) {
		double t0 = udfs_now();

		/* The search measures the first model's bytes. */
		err = search_sparsity(g, v, n, &s);
		g->models[0].seconds += udfs_now() - t0;
	}
	for (size_t i = 0; i < g->n && !err; i++) {
		allocate(o, v[i], n[i], s);
		apply_rates(&g->models[i], v[i], n[i], s, o, 1.0);
		for (size_t k = 0; k < n[i]; k++)
			g->models[i].lossy_elems += v[i][k].nelems;
	}
	/* The trace-norm factor only matters across several models. */
	if (!err && o->method == UDFS_ENC_ULTRADELTA && g->n > 1) {
		double t0 = udfs_now();

		err = trace_norms(g, v, n, T);
		t0 = (udfs_now() - t0) / (double)g->n; /* shared by the group */
		for (size_t i = 0; i < g->n && !err; i++) {
			g->models[i].seconds += t0;
			if (T[i] > 0 && T[i] < tmin)
				tmin = T[i];
		}
		for (size_t i = 0; i < g->n && !err; i++)
			apply_rates(&g->models[i], v[i], n[i], s, o,
				    T[i] > 0 && isfinite(tmin) ? tmin / T[i]
							       : 1.0);
	}
	for (size_t i = 0; i < g->n; i++) {
		g->models[i].target_sparsity = s;
		free(v[i]);
	}
	free(v);
	free(n);
	free(T);
	return err;
}

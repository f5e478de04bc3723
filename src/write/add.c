// SPDX-License-Identifier: MIT
/*
 * The add pipeline: validate every source completely, plan each tensor's
 * encoding, then stream tensor by tensor into a pack under STORE/tmp,
 * encoding the chunks of a tensor in parallel and appending them in order;
 * fsync, rename into STORE/packs, and insert every catalog row of the group
 * in one transaction. Peak memory is a few windows of chunks plus, for a
 * lossy tensor, its mask and codes: never the whole model.
 */
#include "write/add.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/lossy.h"
#include "codec/plane.h"
#include "common/dtype.h"
#include "common/pool.h"
#include "common/sha256.h"
#include "common/util.h"
#include "format/tmap.h"
#include "read/recon.h"
#include "store/catalog.h"
#include "write/add_i.h"
#include "write/pack.h"
#include "write/progress.h"

/* ---- tensors ---------------------------------------------------------- */

static bool same_shape(const udfs_st_tensor *a, const udfs_tensor *b)
{
	if (a->dtype != b->dtype || a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

/* The tensors of plan_lossless whose bytes are compared with the base's,
 * in parallel: the first pass over every mapped byte of the group. */
struct same_job {
	struct add_group *g;
	const udfs_source *src;
	struct tensor_plan **plan;
	size_t n, *file, *tensor;
};

static int compare_one(void *ctx, size_t i)
{
	struct same_job *j = ctx;
	const udfs_source_file *sf = &j->src->files[j->file[i]];
	struct tensor_plan *p = &j->plan[j->file[i]][j->tensor[i]];
	const unsigned char *cur = sf->map;
	uint64_t len = sf->size;

	if (sf->st) {
		const udfs_st_tensor *st = &sf->st->tensors[j->tensor[i]];

		cur = udfs_source_tensor_bytes(sf, st);
		len = st->end - st->begin;
	}
	p->enc = memcmp(cur, udfs_add_base_bytes(j->g, p->base), len)
		     ? UDFS_ENC_XOR
		     : UDFS_ENC_SAME;
	return 0;
}

/* The base tensor that sf's tensor k is compared with: the base's tensor
 * of the same name, dtype and shape, or for a verbatim file, the base's
 * verbatim file of the same path and size (a config.json or tokenizer
 * that a fine-tune kept). NULL when there is none. */
static const udfs_tensor *base_tensor(const struct add_group *g,
				      const udfs_source_file *sf, size_t k)
{
	const udfs_tensor *bt;
	const udfs_file *bf;

	if (sf->st) {
		bt = udfs_model_tensor(g->base, sf->st->tensors[k].name);
		return bt && same_shape(&sf->st->tensors[k], bt) ? bt : NULL;
	}
	bf = udfs_model_file(g->base, sf->path);
	if (!bf || bf->kind != UDFS_FILE_VERBATIM || !sf->size ||
	    bf->size != sf->size)
		return NULL;
	return &g->base_verbatim[bf - g->base->files];
}

/* The lossless plan of every tensor: same, xor, or raw. */
static void plan_lossless(struct add_group *g, struct add_model *am)
{
	const udfs_source *src = am->src;
	struct same_job j = {.g = g, .src = src};

	am->plan = udfs_xcalloc(src->n_files, sizeof(*am->plan));
	for (size_t i = 0; i < src->n_files; i++) {
		const udfs_source_file *sf = &src->files[i];
		size_t n = sf->st ? sf->st->n_tensors : 1;

		am->plan[i] = udfs_xcalloc(n, sizeof(**am->plan));
		for (size_t k = 0; k < n; k++) {
			const udfs_tensor *bt = base_tensor(g, sf, k);

			am->plan[i][k].enc = UDFS_ENC_RAW;
			if (!bt)
				continue;
			am->plan[i][k].base = bt;
			j.file =
			    udfs_xrealloc(j.file, (j.n + 1) * sizeof(size_t));
			j.tensor =
			    udfs_xrealloc(j.tensor, (j.n + 1) * sizeof(size_t));
			j.file[j.n] = i;
			j.tensor[j.n++] = k;
		}
	}
	j.plan = am->plan;
	udfs_parallel_for(g->o->jobs, j.n, compare_one, &j);
	free(j.file);
	free(j.tensor);
}

struct chunk_job {
	const struct tensor_plan *plan;
	const udfs_tensor *t;
	const unsigned char *cur, *base;
	const struct lossy_tensor *lt;
	int level;
	uint32_t first_chunk;
	void **out;
	size_t *out_len;
	udfs_fidelity *fid; /* per chunk of the window, lossy tensors */
};

static int encode_one(void *ctx, size_t i)
{
	const struct chunk_job *j = ctx;
	const udfs_tensor *t = j->t;
	uint32_t ci = j->first_chunk + (uint32_t)i;
	uint64_t off = (uint64_t)ci * UDFS_CHUNK_BYTES;
	size_t len = udfs_chunk_out_len(t, ci);
	unsigned es = udfs_dtype_size(t->dtype);
	int err;

	if (udfs_interrupted)
		return udfs_error(-EINTR, "interrupted");
	if (t->enc == UDFS_ENC_XOR || t->enc == UDFS_ENC_RAW)
		return udfs_plane_encode(
		    j->cur + off, j->base ? j->base + off : NULL, len,
		    es ? es : 1, j->level, &j->out[i], &j->out_len[i]);
	err = udfs_lossy_tensor_chunk(j->lt, j->plan, t->dtype, off / es,
				      (uint32_t)(len / es), &j->out[i],
				      &j->out_len[i]);
	/* The add's error figures are those of the bytes written. */
	if (!err)
		err = udfs_lossy_tensor_measure(
		    j->lt, j->plan, t->dtype, off / es, (uint32_t)(len / es),
		    j->cur + off, j->base + off, &j->fid[i]);
	return err;
}

/* Encode tensor t's chunks (windows of a few per thread, in parallel) and
 * append them to the pack in order. */
static int write_tensor(struct add_group *g, struct add_model *am,
			struct udfs_pack *pk, const struct tensor_plan *p,
			udfs_tensor *t, const unsigned char *cur,
			struct udfs_progress *pr)
{
	const udfs_add_opts *o = g->o;
	size_t window = (size_t)UDFS_MAX(o->jobs, 1) * 4;
	void **out = udfs_xcalloc(window, sizeof(void *));
	size_t *out_len = udfs_xcalloc(window, sizeof(size_t));
	udfs_fidelity *fid = udfs_xcalloc(window, sizeof(*fid));
	struct lossy_tensor *lt = NULL;
	struct chunk_job job = {
	    .plan = p,
	    .t = t,
	    .cur = cur,
	    .level = o->level,
	    .out = out,
	    .out_len = out_len,
	    .fid = fid,
	};
	int err = 0;

	if (p->base)
		job.base = udfs_add_base_bytes(g, p->base);
	t->n_chunks = (uint32_t)((t->end - t->begin + UDFS_CHUNK_BYTES - 1) /
				 UDFS_CHUNK_BYTES);
	t->chunks = udfs_xcalloc(t->n_chunks, sizeof(*t->chunks));
	if (udfs_encoding_is_lossy(t->enc)) {
		err = udfs_lossy_tensor_prepare(p, t->dtype, t->nelems, cur,
						job.base, o->jobs, &lt);
		job.lt = lt;
	}
	for (uint32_t c0 = 0; c0 < t->n_chunks && !err;
	     c0 += (uint32_t)window) {
		size_t n = UDFS_MIN(window, (size_t)(t->n_chunks - c0));

		job.first_chunk = c0;
		err = udfs_parallel_for(o->jobs, n, encode_one, &job);
		for (size_t i = 0; i < n && !err; i++) {
			err = udfs_pack_append(pk, out[i], out_len[i],
					       &t->chunks[c0 + i]);
			t->stored_bytes += out_len[i];
		}
		for (size_t i = 0; i < n; i++) {
			udfs_fidelity_merge(&am->fid, &fid[i]);
			memset(&fid[i], 0, sizeof(fid[i]));
			free(out[i]);
			out[i] = NULL;
			pr->done += udfs_chunk_out_len(t, c0 + (uint32_t)i);
		}
		udfs_progress_show(pr, am->name, t->name, false);
	}
	if (!err && lt)
		am->kept_elems += udfs_lossy_tensor_kept(lt);
	udfs_lossy_tensor_free(lt);
	free(fid);
	free(out);
	free(out_len);
	return err;
}

/* Record the code an adaptive tensor got, its bytes and its delta error
 * measured on the chunks just written (the fidelity sums are additive),
 * for `udfs info`. */
static void note_code(struct add_model *am, const udfs_tensor *t,
		      const struct tensor_plan *p, const udfs_fidelity *before)
{
	udfs_fidelity f = am->fid;
	char name[64];

	f.err2 -= before->err2;
	f.src2 -= before->src2;
	f.rec2 -= before->rec2;
	f.dot -= before->dot;
	f.n -= before->n;
	udfs_mix_code_name(&p->mix, &p->lp, name, sizeof(name));
	if (!am->codes)
		am->codes = json_object();
	json_object_set_new(am->codes, t->name,
			    json_pack("{s:s,s:I,s:f}", "code", name, "bytes",
				      (json_int_t)udfs_encoded_bytes(t),
				      "error", udfs_fidelity_rel_err(&f)));
}

/* Build file f of the new model from source file sf and write its chunks.
 * The source's sha256 is computed on a thread of its own meanwhile: it
 * reads the same mapped bytes, and would otherwise add a serial pass. */
static int write_file(struct add_group *g, struct add_model *am, size_t fi,
		      udfs_file *f, struct udfs_pack *pk,
		      struct udfs_progress *pr)
{
	const udfs_source_file *sf = &am->src->files[fi];
	struct udfs_sha256_job hj;
	udfs_fidelity before;
	int err = 0, herr;

	f->path = udfs_xstrdup(sf->path);
	f->kind = sf->kind;
	f->size = sf->size;
	f->fd = -1;
	udfs_sha256_start(&hj, sf->map, sf->size, f->sha256);
	if (sf->st) {
		f->data_offset = sf->st->data_offset;
		f->header = udfs_xmalloc(f->data_offset);
		memcpy(f->header, sf->st->raw, f->data_offset);
		f->n_tensors = sf->st->n_tensors;
		f->tensors = udfs_xcalloc(f->n_tensors, sizeof(*f->tensors));
		for (size_t j = 0; j < f->n_tensors && !err; j++)
			err = udfs_tensor_from_st(&f->tensors[j],
						  &sf->st->tensors[j]);
	} else if (sf->size) {
		f->n_tensors = 1;
		f->tensors = udfs_xcalloc(1, sizeof(*f->tensors));
		err = udfs_tensor_verbatim(f->tensors, sf->size);
	}
	for (size_t j = 0; j < f->n_tensors && !err; j++) {
		udfs_tensor *t = &f->tensors[j];
		const struct tensor_plan *p = &am->plan[fi][j];

		t->file = f;
		t->enc = p->enc;
		t->lp = p->lp;
		if (p->base) {
			t->base_file_id = (int64_t)p->base->file->ino;
			t->base_begin = p->base->begin;
		}
		if (t->enc == UDFS_ENC_SAME || t->end == t->begin) {
			pr->done += t->end - t->begin;
			continue;
		}
		before = am->fid;
		err = write_tensor(g, am, pk, p, t,
				   sf->map + f->data_offset + t->begin, pr);
		if (!err && t->enc == UDFS_ENC_ADAPTIVE)
			note_code(am, t, p, &before);
	}
	herr = udfs_sha256_wait(&hj);
	return err ? err : herr;
}

static int map_base(struct add_group *g)
{
	udfs_model *b = g->base;

	g->base_map = udfs_xcalloc(b->n_files, sizeof(*g->base_map));
	g->base_verbatim = udfs_xcalloc(b->n_files, sizeof(*g->base_verbatim));
	for (size_t i = 0; i < b->n_files; i++) {
		void *p;

		if (!b->files[i].size)
			continue;
		if (b->files[i].kind == UDFS_FILE_VERBATIM) {
			int err = udfs_tensor_verbatim(&g->base_verbatim[i],
						       b->files[i].size);

			if (err)
				return err;
			g->base_verbatim[i].file = &b->files[i];
		}
		p = mmap(NULL, b->files[i].size, PROT_READ, MAP_SHARED,
			 b->files[i].fd, 0);
		if (p == MAP_FAILED)
			return udfs_error(-errno, "base %s: %s: %s", b->name,
					  b->files[i].path, strerror(errno));
		g->base_map[i] = p;
	}
	return 0;
}

static void unmap_base(struct add_group *g)
{
	for (size_t i = 0; g->base_map && i < g->base->n_files; i++)
		if (g->base_map[i])
			munmap((void *)g->base_map[i], g->base->files[i].size);
	free(g->base_map);
	if (g->base_verbatim)
		udfs_tensors_free(g->base_verbatim, g->base->n_files);
}

/* What the catalog lists: a lossy add in which no tensor could be made
 * lossy (no base tensor of the same dtype and shape, say) stored every
 * byte exactly, and is listed and verified as lossless. */
static const char *method_name(const udfs_add_opts *o,
			       const struct add_model *am)
{
	if (o->lossless || am->lossy_elems == 0)
		return "lossless";
	return udfs_encoding_name(o->method);
}

/* The base model o->base, which must be a base. */
static int load_base(udfs_store *s, const udfs_add_opts *o, udfs_model **out)
{
	int err = udfs_model_load(s, o->base, out);

	if (err == -ENOENT) {
		udfs_error_clear();
		return udfs_error(-ENOENT, "no base model named \"%s\" in %s",
				  o->base, udfs_store_dir(s));
	}
	if (err)
		return err;
	if ((*out)->kind != UDFS_MODEL_BASE)
		return udfs_error(
		    -EINVAL,
		    "\"%s\" is not a base model (add it with udfs-compress add-base)",
		    o->base);
	return 0;
}

/* Validate every name and open (and so validate) every source before
 * writing anything. */
static int open_sources(udfs_store *s, size_t n, const char *const *names,
			const char *const *srcs, udfs_source **src)
{
	int err = 0;

	for (size_t i = 0; i < n && !err; i++) {
		err = udfs_name_check_new(s, names[i]);
		for (size_t j = 0; j < i && !err; j++)
			if (!strcmp(names[i], names[j]))
				err = udfs_error(
				    -EINVAL, "model name \"%s\" given twice",
				    names[i]);
		if (!err)
			err = udfs_source_open(srcs[i], &src[i]);
	}
	return err;
}

/* Build model m (catalog rows) of group model am and write its pack. */
static int write_model(struct add_group *g, struct add_model *am, udfs_model *m,
		       struct udfs_pack *pk)
{
	const udfs_add_opts *o = g->o;
	const udfs_source *src = am->src;
	double t0 = udfs_now();
	int err;

	m->name = udfs_xstrdup(am->name);
	m->kind = UDFS_MODEL_DELTA;
	m->base = g->base;
	m->method = udfs_xstrdup(method_name(o, am));
	m->params = NULL; /* once the adaptive codes are known, below */
	m->seed = (int64_t)o->seed;
	m->created = (int64_t)time(NULL);
	m->n_files = src->n_files;
	m->files = udfs_xcalloc(m->n_files, sizeof(*m->files));
	err = udfs_pack_open(g->store, pk, src->mode);
	for (size_t j = 0; j < m->n_files && !err; j++) {
		m->files[j].model = m;
		err = write_file(g, am, j, &m->files[j], pk, g->pr);
		m->source_bytes += src->files[j].size;
	}
	if (!err)
		err = udfs_pack_sync(pk);
	m->params = udfs_add_params_json(o, am->target_sparsity, am->codes);
	if (am->lossy_elems)
		m->sparsity =
		    1.0 - (double)am->kept_elems / (double)am->lossy_elems;
	am->seconds += udfs_now() - t0;
	return err;
}

/* One transaction: place every pack and insert every model's rows, or
 * nothing. stored[i] receives what the catalog counts for model i. */
static int commit_group(udfs_store *s, size_t n, const char *const *names,
			udfs_model *models, struct udfs_pack *packs,
			uint64_t *stored)
{
	udfs_catalog *cat;
	bool in_tx;
	int err;

	err = udfs_store_begin(s);
	in_tx = !err;
	cat = udfs_store_catalog(s);
	/* Another writer may have taken a name while we compressed. */
	for (size_t i = 0; i < n && !err; i++)
		err = udfs_name_check_new(s, names[i]);
	for (size_t i = 0; i < n && !err; i++)
		err = udfs_pack_place(s, &packs[i]);
	for (size_t i = 0; i < n && !err; i++) {
		udfs_model *m = &models[i];
		uint64_t meta = 0;

		m->stored_bytes = packs[i].off;
		err = udfs_catalog_insert_model(cat, m, packs[i].final_rel);
		for (size_t j = 0; j < m->n_files && !err; j++)
			err =
			    udfs_catalog_insert_file(cat, m->id, &m->files[j]);
		if (!err)
			err = udfs_catalog_model_meta_bytes(cat, m->id, &meta);
		if (!err)
			err = udfs_catalog_set_stored(cat, m->id,
						      packs[i].off + meta);
		stored[i] = packs[i].off + meta;
	}
	if (!err)
		err = udfs_store_commit(s);
	else if (in_tx)
		udfs_store_rollback(s);
	return err;
}

/* The plan of am (plan_lossless) and what the planner hung on it. */
static void free_plan(struct add_model *am, const udfs_source *src)
{
	for (size_t i = 0; am->plan && i < src->n_files; i++) {
		const udfs_source_file *sf = &src->files[i];

		for (size_t k = 0; sf->st && k < sf->st->n_tensors; k++)
			udfs_mix_priced_free(am->plan[i][k].priced);
		free(am->plan[i]);
	}
	free(am->plan);
}

/* Free what udfs_compress_add made; on failure its packs are removed. */
static void group_free(struct add_group *g, udfs_source **src,
		       udfs_model *models, struct udfs_pack *packs, int err)
{
	for (size_t i = 0; i < g->n; i++) {
		if (err) {
			udfs_pack_discard(&packs[i]);
		} else {
			close(packs[i].fd);
			free(packs[i].tmp_path);
			free(packs[i].final_rel);
		}
		udfs_files_free(models[i].files, models[i].n_files);
		free(models[i].name);
		free(models[i].method);
		free(models[i].params);
		json_decref(g->models[i].codes);
		free_plan(&g->models[i], src[i]);
		udfs_source_close(src[i]);
	}
	if (g->base)
		unmap_base(g);
	udfs_model_put(g->base);
	free(g->models);
}

int udfs_compress_add(udfs_store *s, const udfs_add_opts *o, size_t n,
		      const char *const *names, const char *const *srcs)
{
	struct add_group g = {.store = s, .o = o, .n = n};
	udfs_source **src = udfs_xcalloc(n, sizeof(*src));
	struct udfs_pack *packs = udfs_xcalloc(n, sizeof(*packs));
	udfs_model *models = udfs_xcalloc(n, sizeof(*models));
	uint64_t *stored = udfs_xcalloc(n, sizeof(*stored));
	struct udfs_progress pr;
	uint64_t total = 0;
	int err;

	for (size_t i = 0; i < n; i++)
		packs[i].fd = -1;
	g.pr = &pr;
	g.models = udfs_xcalloc(n, sizeof(*g.models));
	err = udfs_add_opts_check(o);
	if (!err)
		err = load_base(s, o, &g.base);
	if (!err)
		err = open_sources(s, n, names, srcs, src);
	if (!err)
		err = map_base(&g);
	if (err)
		goto out;
	for (size_t i = 0; i < n; i++) {
		g.models[i].name = names[i];
		g.models[i].src = src[i];
		plan_lossless(&g, &g.models[i]);
		for (size_t j = 0; j < src[i]->n_files; j++)
			total += src[i]->files[j].size;
	}
	udfs_progress_init(&pr, o->quiet, total);
	if (!o->lossless) {
		err = o->method == UDFS_ENC_ADAPTIVE
			  ? udfs_mix_plan_group(&g)
			  : udfs_lossy_plan_group(&g);
		if (err)
			goto out;
	}
	udfs_progress_init(&pr, o->quiet, total);
	for (size_t i = 0; i < n && !err; i++)
		err = write_model(&g, &g.models[i], &models[i], &packs[i]);
	/* For the report's warnings; after the write, which mapped every
	 * page that the sample touches (before, each was a page fault of a
	 * serial pass). */
	for (size_t i = 0; i < n && !err; i++)
		udfs_add_match_base(&g, &g.models[i]);
	udfs_progress_show(&pr, "", "", true);
	udfs_progress_end(&pr);
	if (!err)
		err = commit_group(s, n, names, models, packs, stored);
	for (size_t i = 0; i < n && !err; i++)
		udfs_add_report(&g, &g.models[i], models[i].source_bytes,
				stored[i]);
out:
	group_free(&g, src, models, packs, err);
	free(models);
	free(packs);
	free(stored);
	free(src);
	return err;
}

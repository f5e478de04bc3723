// SPDX-License-Identifier: MIT
/*
 * The add pipeline: validate every source completely, plan each tensor's
 * encoding, then stream tensor by tensor into a pack under STORE/tmp,
 * encoding the chunks of a tensor in parallel and appending them in order;
 * fsync, rename into STORE/packs, and insert every catalog row of the group
 * in one transaction. Peak memory is a few windows of chunks plus, for a
 * lossy tensor, its mask and codes: never the whole model.
 *
 * Also add-base (copy or hard-link into STORE/bases), rm and gc.
 */
#include "write/add.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/lossy.h"
#include "codec/plane.h"
#include "common/dtype.h"
#include "common/pool.h"
#include "common/sha256.h"
#include "common/util.h"
#include "read/recon.h"
#include "udfs/catalog.h"
#include "write/add_i.h"

#define PACK_MAGIC "UDFSPAK1"
#define PACK_HEADER 16

volatile sig_atomic_t udfs_interrupted;

int udfs_name_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 200)
		return udfs_error(-EINVAL,
				  "model name \"%.40s\" must have 1 to "
				  "200 characters",
				  name);
	if (name[0] == '.' || name[0] == '-')
		return udfs_error(-EINVAL,
				  "model name \"%s\" must not start "
				  "with '%c'",
				  name, name[0]);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c > 0x7e || c == '/' || c == '\\')
			return udfs_error(-EINVAL,
					  "model name \"%.40s\" has a "
					  "character that is not allowed (%s)",
					  c >= 0x20 && c <= 0x7e ? name : "?",
					  c == '/' || c == '\\'
					      ? "a slash"
					      : "not printable ASCII");
	}
	return 0;
}

static int check_new_name(udfs_store *s, const char *name)
{
	int64_t id;
	int err = udfs_name_check(name);

	if (err)
		return err;
	err = udfs_catalog_model_id(udfs_store_catalog(s), name, &id);
	if (err == 0)
		return udfs_error(-EEXIST,
				  "a model named \"%s\" already "
				  "exists",
				  name);
	return err == -ENOENT ? 0 : err;
}

/* A random file name under tmp/ or packs/: 16 hex digits. */
static char *random_name(void)
{
	unsigned char r[8];
	FILE *f = fopen("/dev/urandom", "rb");
	uint64_t v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

	if (f) {
		if (fread(r, 1, sizeof(r), f) == sizeof(r))
			for (int i = 0; i < 8; i++)
				v = v << 8 ^ r[i];
		fclose(f);
	}
	return udfs_xasprintf("%016" PRIx64, v);
}

/* ---- progress ---------------------------------------------------------- */

struct progress {
	bool on;
	uint64_t total, done;
	double t0, last;
};

static void progress_init(struct progress *p, bool quiet, uint64_t total)
{
	p->on = !quiet && isatty(2);
	p->total = total;
	p->done = 0;
	p->t0 = p->last = udfs_now();
}

static void progress_show(struct progress *p, const char *model,
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
	struct progress *p = g->pr;
	double now = udfs_now();

	if (!p || !p->on || (done && done < total && now - p->last < 0.25))
		return;
	p->last = now;
	fprintf(stderr, "\r\033[K%s: %s  %" PRIu64 "/%" PRIu64 " %s", model,
		phase, done, total, unit);
}

static void progress_end(struct progress *p)
{
	if (p->on)
		fprintf(stderr, "\r\033[K");
}

/* ---- the pack writer -------------------------------------------------- */

struct pack {
	char *tmp_path;	 /* STORE/tmp/<name>.pack */
	char *final_rel; /* packs/<name>.pack */
	int fd;
	uint64_t off;
};

/* Open a new pack under tmp/ with permission bits mode (the source's,
 * udfs_source.mode: private weights stay private). */
static int pack_open(udfs_store *s, struct pack *pk, unsigned mode)
{
	char *name = random_name();
	char hdr[PACK_HEADER] = PACK_MAGIC;
	int err;

	pk->tmp_path =
	    udfs_xasprintf("%s/tmp/%s.pack", udfs_store_dir(s), name);
	pk->final_rel = udfs_xasprintf("packs/%s.pack", name);
	free(name);
	pk->fd = open(pk->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		      (mode_t)mode);
	if (pk->fd < 0)
		return udfs_error(-errno, "%s: %s", pk->tmp_path,
				  strerror(errno));
	/* gc skips tmp files that a live writer holds locked. */
	flock(pk->fd, LOCK_EX);
	err = udfs_write_full(pk->fd, hdr, sizeof(hdr));
	if (err)
		return udfs_error(err, "%s: %s", pk->tmp_path, strerror(-err));
	pk->off = PACK_HEADER;
	return 0;
}

static int pack_append(struct pack *pk, const void *buf, size_t len,
		       udfs_chunk_ref *ref)
{
	int err = udfs_write_full(pk->fd, buf, len);

	if (err)
		return udfs_error(err, "%s: %s", pk->tmp_path, strerror(-err));
	ref->offset = pk->off;
	ref->length = (uint32_t)len;
	ref->checksum = XXH3_64bits(buf, len);
	pk->off += len;
	return 0;
}

/* rename(2) that never replaces an existing entry. Filesystems without
 * RENAME_NOREPLACE (NFS) get a check first: a narrow race, only between
 * two random 64-bit names. */
static int rename_noreplace(const char *from, const char *to)
{
	struct stat st;

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/* Make the pack durable in tmp/. It moves into packs/ only inside the
 * catalog transaction (pack_place), so gc, which holds the writer lock
 * while it scans, never sees a placed pack that is not yet referenced. */
static int pack_sync(struct pack *pk)
{
	int err = 0;

	/* The descriptor stays open, and locked, until the catalog commit. */
	if (fsync(pk->fd) < 0)
		err =
		    udfs_error(-errno, "%s: %s", pk->tmp_path, strerror(errno));
	return err;
}

static int pack_place(udfs_store *s, struct pack *pk)
{
	char *final = udfs_xasprintf("%s/%s", udfs_store_dir(s), pk->final_rel);
	char *dir = udfs_xasprintf("%s/packs", udfs_store_dir(s));
	int err = 0;

	/* Never replace a pack that is there already (a name collision). */
	if (rename_noreplace(pk->tmp_path, final) < 0)
		err = udfs_error(-errno, "%s: %s", final, strerror(errno));
	if (!err) {
		free(pk->tmp_path);
		pk->tmp_path = final;
		final = NULL;
		err = udfs_fsync_dir(dir);
	}
	free(final);
	free(dir);
	return err;
}

/* Remove a pack that will not be referenced (error path). */
static void pack_discard(struct pack *pk)
{
	if (pk->fd >= 0)
		close(pk->fd);
	if (pk->tmp_path)
		unlink(pk->tmp_path);
	free(pk->tmp_path);
	free(pk->final_rel);
	memset(pk, 0, sizeof(*pk));
	pk->fd = -1;
}

/* ---- tensors ---------------------------------------------------------- */

const unsigned char *udfs_add_base_bytes(const struct add_group *g,
					 const udfs_tensor *bt)
{
	size_t i = (size_t)(bt->file - g->base->files);

	return g->base_map[i] + bt->file->data_offset + bt->begin;
}

static bool same_shape(const udfs_st_tensor *a, const udfs_tensor *b)
{
	if (a->dtype != b->dtype || a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

/* The lossless plan of every tensor: same, xor, or raw. */
static void plan_lossless(struct add_group *g, struct add_model *am)
{
	const udfs_source *src = am->src;

	am->plan = udfs_xcalloc(src->n_files, sizeof(*am->plan));
	for (size_t i = 0; i < src->n_files; i++) {
		const udfs_source_file *sf = &src->files[i];
		size_t n = sf->st ? sf->st->n_tensors : 1;

		am->plan[i] = udfs_xcalloc(n, sizeof(**am->plan));
		if (!sf->st) {
			am->plan[i][0].enc = UDFS_ENC_RAW;
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			const udfs_st_tensor *st = &sf->st->tensors[j];
			const udfs_tensor *bt =
			    udfs_model_tensor(g->base, st->name);
			struct tensor_plan *p = &am->plan[i][j];

			if (!bt || !same_shape(st, bt)) {
				p->enc = UDFS_ENC_RAW;
				continue;
			}
			p->base = bt;
			p->enc =
			    memcmp(sf->map + sf->st->data_offset + st->begin,
				   udfs_add_base_bytes(g, bt),
				   st->end - st->begin)
				? UDFS_ENC_XOR
				: UDFS_ENC_SAME;
		}
	}
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

/* Decode lossy chunk i of the window just encoded and measure it against
 * the fine-tune: the add's error figures come from the real bytes. */
static int measure_chunk(const struct chunk_job *j, size_t i, uint64_t off,
			 size_t len)
{
	const udfs_tensor *t = j->t;
	unsigned es = udfs_dtype_size(t->dtype);
	void *rec = udfs_xmalloc(len);
	int err;

	err = udfs_lossy_decode_chunk(&t->lp, t->dtype, off / es,
				      (uint32_t)(len / es), j->out[i],
				      j->out_len[i], j->base + off, rec);
	if (!err)
		udfs_fidelity_add(&j->fid[i], t->dtype, j->base + off, rec,
				  j->cur + off, len / es);
	free(rec);
	return err;
}

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
	return err ? err : measure_chunk(j, i, off, len);
}

/* Encode tensor t's chunks (windows of a few per thread, in parallel) and
 * append them to the pack in order. */
static int write_tensor(struct add_group *g, struct add_model *am,
			struct pack *pk, const struct tensor_plan *p,
			udfs_tensor *t, const unsigned char *cur,
			struct progress *pr)
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
						job.base, &lt);
		job.lt = lt;
		if (!err)
			am->kept_elems += udfs_lossy_tensor_kept(lt);
	}
	for (uint32_t c0 = 0; c0 < t->n_chunks && !err;
	     c0 += (uint32_t)window) {
		size_t n = UDFS_MIN(window, (size_t)(t->n_chunks - c0));

		job.first_chunk = c0;
		err = udfs_parallel_for(o->jobs, n, encode_one, &job);
		for (size_t i = 0; i < n && !err; i++) {
			err = pack_append(pk, out[i], out_len[i],
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
		progress_show(pr, am->name, t->name, false);
	}
	udfs_lossy_tensor_free(lt);
	free(fid);
	free(out);
	free(out_len);
	return err;
}

static void tensor_from_source(udfs_tensor *t, const udfs_st_tensor *st)
{
	t->name = udfs_xstrdup(st->name);
	t->dtype = st->dtype;
	t->ndim = st->ndim;
	t->shape = udfs_xcalloc((size_t)st->ndim + 1, sizeof(uint64_t));
	memcpy(t->shape, st->shape, (size_t)st->ndim * sizeof(uint64_t));
	t->nelems = st->nelems;
	t->begin = st->begin;
	t->end = st->end;
}

/* Build file f of the new model from source file sf and write its chunks.
 * The source's sha256 is computed on a thread of its own meanwhile: it
 * reads the same mapped bytes, and would otherwise add a serial pass. */
static int write_file(struct add_group *g, struct add_model *am, size_t fi,
		      udfs_file *f, struct pack *pk, struct progress *pr)
{
	const udfs_source_file *sf = &am->src->files[fi];
	struct udfs_sha256_job hj;
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
		for (size_t j = 0; j < f->n_tensors; j++)
			tensor_from_source(&f->tensors[j], &sf->st->tensors[j]);
	} else if (sf->size) {
		udfs_tensor *t;

		f->n_tensors = 1;
		f->tensors = t = udfs_xcalloc(1, sizeof(*t));
		t->name = udfs_xstrdup("");
		t->dtype = UDFS_DT_U8;
		t->ndim = 1;
		t->shape = udfs_xcalloc(1, sizeof(uint64_t));
		t->shape[0] = t->nelems = t->end = sf->size;
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
		err = write_tensor(g, am, pk, p, t,
				   sf->map + f->data_offset + t->begin, pr);
	}
	herr = udfs_sha256_wait(&hj);
	return err ? err : herr;
}

static void files_free(udfs_file *files, size_t n)
{
	for (size_t i = 0; files && i < n; i++) {
		udfs_file *f = &files[i];

		for (size_t j = 0; j < f->n_tensors; j++) {
			free(f->tensors[j].name);
			free(f->tensors[j].shape);
			free(f->tensors[j].chunks);
		}
		free(f->tensors);
		free(f->header);
		free(f->path);
	}
	free(files);
}

static int map_base(struct add_group *g)
{
	udfs_model *b = g->base;

	g->base_map = udfs_xcalloc(b->n_files, sizeof(*g->base_map));
	for (size_t i = 0; i < b->n_files; i++) {
		void *p;

		if (!b->files[i].size)
			continue;
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

int udfs_compress_add(udfs_store *s, const udfs_add_opts *o, size_t n,
		      const char *const *names, const char *const *srcs)
{
	struct add_group g = {.store = s, .o = o, .n = n};
	udfs_catalog *cat = udfs_store_catalog(s);
	udfs_source **src = udfs_xcalloc(n, sizeof(*src));
	struct pack *packs = udfs_xcalloc(n, sizeof(*packs));
	udfs_model *models = udfs_xcalloc(n, sizeof(*models));
	uint64_t *stored = udfs_xcalloc(n, sizeof(*stored));
	struct progress pr;
	uint64_t total = 0;
	bool in_tx = false;
	int err;

	for (size_t i = 0; i < n; i++)
		packs[i].fd = -1;
	g.pr = &pr;
	g.models = udfs_xcalloc(n, sizeof(*g.models));
	err = udfs_add_opts_check(o);
	if (err)
		goto out;
	err = udfs_model_load(s, o->base, &g.base);
	if (err == -ENOENT) {
		udfs_error_clear();
		err = udfs_error(-ENOENT, "no base model named \"%s\" in %s",
				 o->base, udfs_store_dir(s));
	}
	if (err)
		goto out;
	if (g.base->kind != UDFS_MODEL_BASE) {
		err = udfs_error(-EINVAL,
				 "\"%s\" is not a base model (add it "
				 "with udfs-compress add-base)",
				 o->base);
		goto out;
	}
	/* Validate everything before writing anything. */
	for (size_t i = 0; i < n && !err; i++) {
		err = check_new_name(s, names[i]);
		for (size_t j = 0; j < i && !err; j++)
			if (!strcmp(names[i], names[j]))
				err = udfs_error(-EINVAL,
						 "model name \"%s\" "
						 "given twice",
						 names[i]);
		if (!err)
			err = udfs_source_open(srcs[i], &src[i]);
	}
	if (!err)
		err = map_base(&g);
	if (err)
		goto out;
	for (size_t i = 0; i < n; i++) {
		g.models[i].name = names[i];
		g.models[i].src = src[i];
		plan_lossless(&g, &g.models[i]);
		udfs_add_match_base(&g, &g.models[i]);
		for (size_t j = 0; j < src[i]->n_files; j++)
			total += src[i]->files[j].size;
	}
	progress_init(&pr, o->quiet, total);
	if (!o->lossless) {
		err = udfs_lossy_plan_group(&g);
		if (err)
			goto out;
	}
	progress_init(&pr, o->quiet, total);
	for (size_t i = 0; i < n && !err; i++) {
		udfs_model *m = &models[i];
		double t0 = udfs_now();

		m->name = (char *)names[i];
		m->kind = UDFS_MODEL_DELTA;
		m->base = g.base;
		m->method = (char *)method_name(o, &g.models[i]);
		m->params =
		    udfs_add_params_json(o, g.models[i].target_sparsity);
		m->seed = (int64_t)o->seed;
		m->created = (int64_t)time(NULL);
		m->n_files = src[i]->n_files;
		m->files = udfs_xcalloc(m->n_files, sizeof(*m->files));
		err = pack_open(s, &packs[i], src[i]->mode);
		for (size_t j = 0; j < m->n_files && !err; j++) {
			m->files[j].model = m;
			err = write_file(&g, &g.models[i], j, &m->files[j],
					 &packs[i], &pr);
			m->source_bytes += src[i]->files[j].size;
		}
		if (!err)
			err = pack_sync(&packs[i]);
		if (g.models[i].lossy_elems)
			m->sparsity = 1.0 - (double)g.models[i].kept_elems /
						(double)g.models[i].lossy_elems;
		g.models[i].seconds += udfs_now() - t0;
	}
	progress_show(&pr, "", "", true);
	progress_end(&pr);
	if (err)
		goto out;
	err = udfs_catalog_begin(cat);
	in_tx = !err;
	/* Another writer may have taken a name while we compressed. */
	for (size_t i = 0; i < n && !err; i++)
		err = check_new_name(s, names[i]);
	for (size_t i = 0; i < n && !err; i++)
		err = pack_place(s, &packs[i]);
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
		err = udfs_catalog_commit(cat);
	if (!err)
		in_tx = false;
	for (size_t i = 0; i < n && !err; i++)
		udfs_add_report(&g, &g.models[i], models[i].source_bytes,
				stored[i]);
out:
	if (in_tx)
		udfs_catalog_rollback(cat);
	for (size_t i = 0; i < n; i++) {
		if (err)
			pack_discard(&packs[i]);
		else {
			close(packs[i].fd);
			free(packs[i].tmp_path);
			free(packs[i].final_rel);
		}
		files_free(models[i].files, models[i].n_files);
		free(models[i].params);
		for (size_t j = 0; g.models[i].plan && j < src[i]->n_files; j++)
			free(g.models[i].plan[j]);
		free(g.models[i].plan);
		udfs_source_close(src[i]);
	}
	if (g.base)
		unmap_base(&g);
	udfs_model_put(g.base);
	free(g.models);
	free(models);
	free(packs);
	free(stored);
	free(src);
	return err;
}

/* ---- add-base --------------------------------------------------------- */

/* Copy source file sf to the new file dst with permission bits mode. */
static int copy_file(const udfs_source_file *sf, const char *dst, unsigned mode)
{
	int fd, err = 0;

	fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return udfs_error(-errno, "%s: %s", dst, strerror(errno));
	for (uint64_t off = 0; off < sf->size && !err; off += 16 << 20) {
		if (udfs_interrupted)
			err = udfs_error(-EINTR, "interrupted");
		else
			err = udfs_write_full(
			    fd, sf->map + off,
			    (size_t)UDFS_MIN(sf->size - off, 16ull << 20));
	}
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (err)
		udfs_error(err, "%s: %s", dst, strerror(-err));
	return err;
}

/* Hard-link the file that sf was read from (its resolved path, so a
 * symlink of a Hugging Face snapshot links the blob, never itself) to
 * dst. 0, or -errno with dst absent. */
static int link_file(const udfs_source_file *sf, const char *dst)
{
	struct stat st;

	if (link(sf->real, dst) < 0)
		return -errno;
	/* The file may have been replaced since it was read and hashed. */
	if (lstat(dst, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_dev == sf->dev && (uint64_t)st.st_ino == sf->ino)
		return 0;
	unlink(dst);
	return -ESTALE;
}

/*
 * Place source file sf at dst: a hard link when link_ok and the link
 * would carry exactly the permission bits mode that a copy gets, else a
 * copy. A hard link shares the source's inode, mode included, and
 * changing that mode would change the user's file: so a file more open
 * than the model's mode (a 0644 file beside a 0600 one, anything group-
 * or world-writable, an executable) is copied, never linked. A link that
 * cannot be made (another filesystem, protected_hardlinks) is a copy too.
 */
static int place_file(const udfs_source_file *sf, const char *dst, bool link_ok,
		      unsigned mode)
{
	if (link_ok && sf->mode == mode && link_file(sf, dst) == 0)
		return 0;
	return copy_file(sf, dst, mode);
}

/* Directories of a base: owner rwx, and group/other r-x where the files
 * are readable by them. */
static mode_t dir_mode(unsigned mode)
{
	return (mode_t)(0700 | (mode & 044) | (mode & 044) >> 2);
}

/* Create the directories above path (a file of the model) under dir;
 * those made for an earlier file are there already (EEXIST). */
static int make_parents(const char *dir, const char *path, unsigned mode)
{
	char *p = udfs_xasprintf("%s/%s", dir, path);
	char *slash = p + strlen(dir) + 1;
	int err = 0;

	while (!err && (slash = strchr(slash, '/'))) {
		*slash = '\0';
		if (mkdir(p, dir_mode(mode)) < 0 && errno != EEXIST)
			err = udfs_error(-errno, "%s: %s", p, strerror(errno));
		*slash++ = '/';
	}
	free(p);
	return err;
}

/* fsync the prefixes of path below tmp that are directories (len: the
 * length of its parent), so that each entry made in them is durable. */
static int sync_parents(const char *tmp, const char *path, size_t len)
{
	int err = 0;

	for (size_t k = 1; k <= len && !err; k++) {
		char *d;

		if (k < len && path[k] != '/')
			continue;
		d = udfs_xasprintf("%s/%.*s", tmp, (int)k, path);
		err = udfs_fsync_dir(d);
		free(d);
	}
	return err;
}

/* fsync every directory of the base at tmp. Files are sorted, so the
 * files of one directory mostly come together: a parent is synced once
 * per run of files in it. */
static int sync_dirs(const char *tmp, const udfs_model *m)
{
	const char *prev = "";
	size_t prev_len = 0;
	int err = 0;

	for (size_t i = 0; i < m->n_files && !err; i++) {
		const char *path = m->files[i].path;
		const char *slash = strrchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : 0;

		if (!len || (len == prev_len && !strncmp(path, prev, len)))
			continue;
		err = sync_parents(tmp, path, len);
		prev = path;
		prev_len = len;
	}
	return err ? err : udfs_fsync_dir(tmp);
}

int udfs_compress_add_base(udfs_store *s, const char *name,
			   const char *src_path, bool link, bool quiet)
{
	udfs_catalog *cat = udfs_store_catalog(s);
	udfs_source *src = NULL;
	udfs_model m = {0};
	char *id = random_name();
	char *tmp = udfs_xasprintf("%s/tmp/%s", udfs_store_dir(s), id);
	char *rel = udfs_xasprintf("bases/%s", id);
	char *final = udfs_xasprintf("%s/%s", udfs_store_dir(s), rel);
	struct progress pr;
	bool placed = false, in_tx = false;
	int lock_fd = -1, err;

	err = check_new_name(s, name);
	if (!err)
		err = udfs_source_open(src_path, &src);
	if (err)
		goto out;
	if (mkdir(tmp, dir_mode(src->mode)) < 0) {
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	lock_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lock_fd >= 0)
		flock(lock_fd, LOCK_EX); /* gc leaves it alone */
	m.name = (char *)name;
	m.kind = UDFS_MODEL_BASE;
	m.method = (char *)"base";
	m.params = (char *)"{}";
	m.created = (int64_t)time(NULL);
	m.n_files = src->n_files;
	m.files = udfs_xcalloc(m.n_files, sizeof(*m.files));
	progress_init(&pr, quiet, 0);
	for (size_t i = 0; i < src->n_files; i++)
		pr.total += src->files[i].size;
	for (size_t i = 0; i < src->n_files && !err; i++) {
		const udfs_source_file *sf = &src->files[i];
		udfs_file *f = &m.files[i];
		char *dst = udfs_xasprintf("%s/%s", tmp, sf->path);

		progress_show(&pr, name, sf->path, true);
		pr.done += sf->size;
		err = make_parents(tmp, sf->path, src->mode);
		if (!err)
			err = place_file(sf, dst, link, src->mode);
		free(dst);
		f->path = udfs_xstrdup(sf->path);
		f->kind = sf->kind;
		f->size = sf->size;
		if (!err)
			err = udfs_sha256_hex(sf->map, sf->size, f->sha256);
		if (sf->st) {
			f->data_offset = sf->st->data_offset;
			f->header = udfs_xmalloc(f->data_offset);
			memcpy(f->header, sf->st->raw, f->data_offset);
			f->n_tensors = sf->st->n_tensors;
			f->tensors =
			    udfs_xcalloc(f->n_tensors, sizeof(*f->tensors));
			for (size_t j = 0; j < f->n_tensors; j++) {
				tensor_from_source(&f->tensors[j],
						   &sf->st->tensors[j]);
				f->tensors[j].enc = UDFS_ENC_BASE;
			}
		}
		m.source_bytes += sf->size;
	}
	progress_end(&pr);
	if (!err)
		err = sync_dirs(tmp, &m);
	if (!err)
		err = udfs_catalog_begin(cat);
	in_tx = !err;
	/* Placed inside the transaction, for the same reason as packs. */
	if (!err && rename_noreplace(tmp, final) < 0)
		err = udfs_error(-errno, "%s: %s", final, strerror(errno));
	if (err)
		goto out;
	placed = true;
	{
		char *bases = udfs_xasprintf("%s/bases", udfs_store_dir(s));

		err = udfs_fsync_dir(bases);
		free(bases);
	}
	m.stored_bytes = m.source_bytes;
	if (!err)
		err = udfs_catalog_insert_model(cat, &m, rel);
	for (size_t i = 0; i < m.n_files && !err; i++)
		err = udfs_catalog_insert_file(cat, m.id, &m.files[i]);
	if (!err)
		err = udfs_catalog_commit(cat);
	if (!err)
		in_tx = false;
out:
	if (in_tx)
		udfs_catalog_rollback(cat);
	if (err)
		udfs_rm_tree(placed ? final : tmp);
	if (lock_fd >= 0)
		close(lock_fd);
	files_free(m.files, m.n_files);
	udfs_source_close(src);
	free(final);
	free(rel);
	free(tmp);
	free(id);
	return err;
}

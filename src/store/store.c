// SPDX-License-Identifier: MIT
/*
 * A store on disk and the models loaded from it. Loaded models live in a
 * small registry keyed by catalog id, so that every open file of one model
 * shares one in-memory copy; a model stays alive while anyone holds a
 * reference, even after `udfs rm` dropped it from the catalog (its pack
 * and base descriptors stay open, so reads keep working).
 *
 * The catalog connection is shared and serialized by the store lock; the
 * read path never touches it.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/util.h"
#include "store/catalog.h"

struct udfs_store {
	char *dir;
	udfs_catalog *cat;
	pthread_mutex_t lock; /* catalog calls (and so model loads) */
	pthread_mutex_t reg;  /* the registry and every model's refs: held
				 only briefly, so that readers taking and
				 dropping references never wait on SQLite */
	udfs_model **loaded;  /* registry of live models */
	size_t n_loaded;

	/* Descriptor lifetime (UDFS_STORE_LAZY_FDS): pinned models keep
	 * theirs; unpinned ones wait on the idle list, most recent first,
	 * and the oldest are closed past IDLE_FDS_MAX descriptors. */
	bool lazy_fds;
	pthread_mutex_t fds; /* pins, fds_open and the idle list */
	udfs_model *idle_head, *idle_tail;
	size_t idle_fds;
	size_t open_models, open_fds;
};

/* Descriptors idle models may keep open in a lazy store: enough to reopen
 * nothing while a few models are read in turn, far below any fd limit. */
#define IDLE_FDS_MAX 64

int udfs_store_init(const char *dir)
{
	static const char *const sub[] = {"bases", "packs", "tmp"};
	char *path = NULL;
	udfs_catalog *cat = NULL;
	struct stat st;
	int err = 0;

	if (mkdir(dir, 0755) < 0) {
		DIR *d;
		struct dirent *e;
		bool is_store;

		if (errno != EEXIST)
			return udfs_error(-errno, "%s: %s", dir,
					  strerror(errno));
		d = opendir(dir);
		if (!d)
			return udfs_error(-errno, "%s: %s", dir,
					  strerror(errno));
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				break;
		closedir(d);
		if (e) {
			path = udfs_xasprintf("%s/catalog.db", dir);
			is_store = stat(path, &st) == 0;
			free(path);
			return udfs_error(-EEXIST,
					  "%s: directory is not empty%s", dir,
					  is_store ? " (already a store)" : "");
		}
	}
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(sub); i++) {
		free(path);
		path = udfs_xasprintf("%s/%s", dir, sub[i]);
		if (mkdir(path, 0755) < 0) {
			err =
			    udfs_error(-errno, "%s: %s", path, strerror(errno));
			goto out;
		}
	}
	free(path);
	path = udfs_xasprintf("%s/catalog.db", dir);
	err = udfs_catalog_open(path, false, true, &cat);
	udfs_catalog_close(cat);
	if (!err)
		err = udfs_fsync_dir(dir);
out:
	free(path);
	return err;
}

int udfs_store_open(const char *dir, unsigned flags, udfs_store **out)
{
	udfs_store *s;
	char *path = udfs_xasprintf("%s/catalog.db", dir);
	struct stat st;
	int err;

	if (stat(path, &st) < 0) {
		err = udfs_error(
		    -ENOENT,
		    "%s: not a udfs store (no catalog.db; create one with udfs-compress init)",
		    dir);
		free(path);
		return err;
	}
	s = udfs_xcalloc(1, sizeof(*s));
	s->dir = udfs_xstrdup(dir);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->reg, NULL);
	pthread_mutex_init(&s->fds, NULL);
	s->lazy_fds = flags & UDFS_STORE_LAZY_FDS;
	err =
	    udfs_catalog_open(path, flags & UDFS_STORE_RDONLY, false, &s->cat);
	free(path);
	if (err) {
		udfs_store_close(s);
		return err;
	}
	*out = s;
	return 0;
}

void udfs_store_close(udfs_store *s)
{
	if (!s)
		return;
	udfs_catalog_close(s->cat);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->reg);
	pthread_mutex_destroy(&s->fds);
	free(s->loaded);
	free(s->dir);
	free(s);
}

const char *udfs_store_dir(const udfs_store *s) { return s->dir; }

udfs_catalog *udfs_store_catalog(udfs_store *s) { return s->cat; }

int udfs_store_list(udfs_store *s, udfs_model_info **list, size_t *n)
{
	int err;

	pthread_mutex_lock(&s->lock);
	err = udfs_catalog_list(s->cat, list, n);
	pthread_mutex_unlock(&s->lock);
	return err;
}

static void forget_fds(udfs_model *m);

static void model_free(udfs_model *m)
{
	if (!m)
		return;
	forget_fds(m);
	udfs_files_free(m->files, m->n_files);
	free(m->storage);
	free(m->index);
	free(m->name);
	free(m->method);
	free(m->params);
	free(m);
}

static int by_name(const void *a, const void *b)
{
	const udfs_tensor *x = *(const udfs_tensor *const *)a;
	const udfs_tensor *y = *(const udfs_tensor *const *)b;

	return strcmp(x->name, y->name);
}

static void build_index(udfs_model *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->n_files; i++)
		n += m->files[i].kind == UDFS_FILE_SAFETENSORS
			 ? m->files[i].n_tensors
			 : 0;
	m->index = udfs_xcalloc(n, sizeof(*m->index));
	for (size_t i = 0; i < m->n_files; i++)
		if (m->files[i].kind == UDFS_FILE_SAFETENSORS)
			for (size_t j = 0; j < m->files[i].n_tensors; j++)
				m->index[m->n_index++] =
				    &m->files[i].tensors[j];
	qsort(m->index, m->n_index, sizeof(*m->index), by_name);
}

/* Remember what the mount serves file f with, and which file it is: at
 * the first open only (the load), before anyone else sees the model, so
 * that readers of these fields need no lock. */
static void note_stat(udfs_file *f, const struct stat *st)
{
	if (f->st_ino)
		return;
	f->mode = st->st_mode & 07777;
	f->uid = st->st_uid;
	f->gid = st->st_gid;
	f->st_dev = st->st_dev;
	f->st_ino = st->st_ino;
}

/* A stored file opened again must be the one first opened: after `udfs
 * rm` and a new add, the same path may name other bytes. */
static bool same_file(const udfs_file *f, const struct stat *st)
{
	return !f->st_ino ||
	       (f->st_dev == st->st_dev && f->st_ino == st->st_ino);
}

/* Descriptors a model with open storage holds. */
static size_t fd_count(const udfs_model *m)
{
	return m->kind == UDFS_MODEL_DELTA ? 1 : m->n_files;
}

static void close_fds(udfs_model *m)
{
	for (size_t i = 0; i < m->n_files; i++) {
		if (m->files[i].fd >= 0)
			close(m->files[i].fd);
		m->files[i].fd = -1;
	}
	if (m->pack_fd >= 0)
		close(m->pack_fd);
	m->pack_fd = -1;
	m->fds_open = false;
}

static int open_pack(udfs_store *s, udfs_model *m)
{
	struct stat st;
	char *path = udfs_xasprintf("%s/%s", s->dir, m->storage);
	int err = 0;

	/* A file the catalog names but cannot be opened is a damaged
	 * store (EIO), never "no such model" (ENOENT). */
	m->pack_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m->pack_fd < 0 || fstat(m->pack_fd, &st) < 0)
		err = udfs_error(-EIO, "model %s: pack %s: %s", m->name, path,
				 strerror(errno));
	else if (m->n_files && !same_file(&m->files[0], &st))
		err = udfs_error(-EIO, "model %s: pack %s was replaced",
				 m->name, path);
	for (size_t i = 0; !err && i < m->n_files; i++)
		note_stat(&m->files[i], &st);
	free(path);
	return err;
}

static int open_base_file(udfs_store *s, udfs_model *m, udfs_file *f)
{
	struct stat st;
	char *path = udfs_xasprintf("%s/%s/%s", s->dir, m->storage, f->path);
	int err = 0;

	f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (f->fd < 0 || fstat(f->fd, &st) < 0)
		err = udfs_error(-EIO, "base %s: %s: %s", m->name, path,
				 strerror(errno));
	else if (!same_file(f, &st))
		err =
		    udfs_error(-EIO, "base %s: %s was replaced", m->name, path);
	else if ((uint64_t)st.st_size != f->size)
		err = udfs_error(
		    -EIO,
		    "base %s: %s is %lld bytes, the catalog says %" PRIu64,
		    m->name, path, (long long)st.st_size, f->size);
	if (!err)
		note_stat(f, &st);
	free(path);
	return err;
}

/* Open the descriptors a model reads from, and check that what is on disk
 * is what the catalog describes: a missing or truncated file is a clear
 * error now rather than EIO on every read later. */
static int open_fds(udfs_store *s, udfs_model *m)
{
	int err = 0;

	if (m->kind == UDFS_MODEL_DELTA)
		err = open_pack(s, m);
	for (size_t i = 0;
	     m->kind != UDFS_MODEL_DELTA && i < m->n_files && !err; i++)
		err = open_base_file(s, m, &m->files[i]);
	if (err)
		close_fds(m);
	else
		m->fds_open = true;
	return err;
}

/* ---- descriptor lifetime: pins and the idle list ---------------------- */

static void idle_unlink(udfs_store *s, udfs_model *m)
{
	if (m->idle_prev)
		m->idle_prev->idle_next = m->idle_next;
	else
		s->idle_head = m->idle_next;
	if (m->idle_next)
		m->idle_next->idle_prev = m->idle_prev;
	else
		s->idle_tail = m->idle_prev;
	m->idle_prev = m->idle_next = NULL;
	m->idle = false;
	s->idle_fds -= fd_count(m);
}

static void idle_push(udfs_store *s, udfs_model *m)
{
	m->idle_prev = NULL;
	m->idle_next = s->idle_head;
	if (s->idle_head)
		s->idle_head->idle_prev = m;
	else
		s->idle_tail = m;
	s->idle_head = m;
	m->idle = true;
	s->idle_fds += fd_count(m);
}

/* Close m's descriptors and stop counting them. Under s->fds. */
static void drop_fds(udfs_store *s, udfs_model *m)
{
	if (m->idle)
		idle_unlink(s, m);
	if (m->fds_open) {
		s->open_models--;
		s->open_fds -= fd_count(m);
	}
	close_fds(m);
}

/* At free: m is unreferenced, so nobody pins it. */
static void forget_fds(udfs_model *m)
{
	udfs_store *s = m->store;

	if (!s) { /* never got past the catalog */
		close_fds(m);
		return;
	}
	pthread_mutex_lock(&s->fds);
	drop_fds(s, m);
	pthread_mutex_unlock(&s->fds);
}

static void unpin_locked(udfs_model *m)
{
	udfs_store *s = m->store;

	if (--m->pins == 0 && s->lazy_fds) {
		idle_push(s, m);
		while (s->idle_fds > IDLE_FDS_MAX && s->idle_tail &&
		       s->idle_tail != m)
			drop_fds(s, s->idle_tail);
	}
	if (m->base)
		unpin_locked(m->base);
}

static int pin_locked(udfs_model *m)
{
	udfs_store *s = m->store;
	int err;

	if (m->base) {
		err = pin_locked(m->base);
		if (err)
			return err;
	}
	if (!m->fds_open) {
		err = open_fds(s, m);
		if (err) {
			if (m->base)
				unpin_locked(m->base);
			return err;
		}
		s->open_models++;
		s->open_fds += fd_count(m);
	}
	if (m->idle)
		idle_unlink(s, m);
	m->pins++;
	return 0;
}

int udfs_model_pin(udfs_model *m)
{
	int err;

	pthread_mutex_lock(&m->store->fds);
	err = pin_locked(m);
	pthread_mutex_unlock(&m->store->fds);
	return err;
}

void udfs_model_unpin(udfs_model *m)
{
	pthread_mutex_lock(&m->store->fds);
	unpin_locked(m);
	pthread_mutex_unlock(&m->store->fds);
}

void udfs_store_fd_stats(udfs_store *s, uint64_t *loaded, uint64_t *open_models,
			 uint64_t *open_fds)
{
	pthread_mutex_lock(&s->reg);
	*loaded = s->n_loaded;
	pthread_mutex_unlock(&s->reg);
	pthread_mutex_lock(&s->fds);
	*open_models = s->open_models;
	*open_fds = s->open_fds;
	pthread_mutex_unlock(&s->fds);
}

/* Check that each tensor's encoding fits its model and its rows: the
 * catalog is input like any file, and the read path relies on this. */
static int check_tensor(const udfs_model *m, const udfs_tensor *t)
{
	bool chunked = t->enc == UDFS_ENC_XOR || t->enc == UDFS_ENC_RAW ||
		       udfs_encoding_is_lossy(t->enc);
	bool needs_base = t->enc == UDFS_ENC_SAME || t->enc == UDFS_ENC_XOR ||
			  udfs_encoding_is_lossy(t->enc);
	unsigned es = udfs_dtype_size(t->dtype);

	if ((m->kind == UDFS_MODEL_BASE) != (t->enc == UDFS_ENC_BASE) ||
	    (t->end > t->begin && chunked != (t->n_chunks > 0)) ||
	    (!chunked && t->n_chunks) || needs_base != (t->base_file_id != 0) ||
	    (udfs_encoding_is_lossy(t->enc) &&
	     (!udfs_dtype_is_lossy_float(t->dtype) || es == 0 ||
	      (t->end - t->begin) % es || t->lp.mask > UDFS_MASK_SEEDED ||
	      t->lp.values > UDFS_VAL_SIGN || t->lp.bits > 8)))
		return udfs_error(
		    -EIO,
		    "model %s: tensor \"%s\": encoding %s does not fit its catalog row",
		    m->name, t->name, udfs_encoding_name(t->enc));
	return 0;
}

static int link_base(udfs_model *m)
{
	for (size_t i = 0; i < m->n_files; i++) {
		udfs_file *f = &m->files[i];

		for (size_t j = 0; j < f->n_tensors; j++) {
			udfs_tensor *t = &f->tensors[j];
			const udfs_file *bf = NULL;
			int err = check_tensor(m, t);

			if (err)
				return err;
			if (!t->base_file_id)
				continue;
			for (size_t k = 0; m->base && k < m->base->n_files; k++)
				if (m->base->files[k].ino ==
				    (uint64_t)t->base_file_id)
					bf = &m->base->files[k];
			if (!bf || t->base_begin > bf->size - bf->data_offset ||
			    t->end - t->begin >
				bf->size - bf->data_offset - t->base_begin)
				return udfs_error(
				    -EIO,
				    "model %s: tensor \"%s\" refers to a missing base tensor",
				    m->name, t->name);
			t->base_file = bf;
		}
	}
	return 0;
}

static udfs_model *registry_find(udfs_store *s, int64_t id)
{
	for (size_t i = 0; i < s->n_loaded; i++)
		if (s->loaded[i]->id == id)
			return s->loaded[i];
	return NULL;
}

/* A storage path from the catalog names a file or directory directly
 * under packs/ or bases/; anything else (a "../" from a hostile catalog)
 * is refused before it is opened or removed. */
bool udfs_storage_path_ok(const char *rel)
{
	const char *name;

	if (!strncmp(rel, "packs/", 6))
		name = rel + 6;
	else if (!strncmp(rel, "bases/", 6))
		name = rel + 6;
	else
		return false;
	return name[0] && name[0] != '.' && !strchr(name, '/');
}

/* Load model id; the caller holds s->lock (the catalog). */
static int load_locked(udfs_store *s, int64_t id, int depth, udfs_model **out)
{
	udfs_model *m;
	char *storage = NULL;
	int64_t base_id = 0;
	int err;

	pthread_mutex_lock(&s->reg);
	m = registry_find(s, id);
	if (m)
		m->refs++;
	pthread_mutex_unlock(&s->reg);
	if (m) {
		*out = m;
		return 0;
	}
	if (depth > 1)
		return udfs_error(-EIO,
				  "model %" PRId64 ": base chain too deep", id);
	err = udfs_catalog_load_model(s->cat, id, &m, &storage, &base_id);
	if (err)
		goto out;
	m->store = s;
	if (!udfs_storage_path_ok(storage)) {
		err = udfs_error(
		    -EIO,
		    "model %s: storage path \"%s\" is not inside the store",
		    m->name, storage);
		goto out;
	}
	if (m->kind == UDFS_MODEL_DELTA) {
		if (!base_id) {
			err = udfs_error(-EIO, "model %s has no base", m->name);
			goto out;
		}
		err = load_locked(s, base_id, depth + 1, &m->base);
		if (err)
			goto out;
	}
	m->storage = storage;
	storage = NULL;
	/* Pinned once: the load checks the stored files. A lazy store lets
	 * them idle at once; any other keeps them until the last put. */
	err = link_base(m);
	if (!err)
		err = udfs_model_pin(m);
	if (err)
		goto out;
	if (s->lazy_fds)
		udfs_model_unpin(m);
	build_index(m);
	pthread_mutex_lock(&s->reg);
	s->loaded =
	    udfs_xrealloc(s->loaded, (s->n_loaded + 1) * sizeof(*s->loaded));
	s->loaded[s->n_loaded++] = m;
	pthread_mutex_unlock(&s->reg);
	*out = m;
out:
	free(storage);
	if (err && m) {
		udfs_model *base = m->base;

		model_free(m);
		udfs_model_put(base);
	}
	return err;
}

int udfs_model_load(udfs_store *s, const char *name, udfs_model **out)
{
	int64_t id;
	int err;

	pthread_mutex_lock(&s->lock);
	err = udfs_catalog_model_id(s->cat, name, &id);
	if (err == -ENOENT)
		err = udfs_error(-ENOENT, "no model named \"%s\" in %s", name,
				 s->dir);
	if (!err)
		err = load_locked(s, id, 0, out);
	pthread_mutex_unlock(&s->lock);
	return err;
}

void udfs_model_get(udfs_model *m)
{
	pthread_mutex_lock(&m->store->reg);
	m->refs++;
	pthread_mutex_unlock(&m->store->reg);
}

void udfs_model_put(udfs_model *m)
{
	udfs_store *s;
	udfs_model *base;

	if (!m)
		return;
	s = m->store;
	pthread_mutex_lock(&s->reg);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&s->reg);
		return;
	}
	for (size_t i = 0; i < s->n_loaded; i++)
		if (s->loaded[i] == m) {
			s->loaded[i] = s->loaded[--s->n_loaded];
			break;
		}
	pthread_mutex_unlock(&s->reg);
	base = m->base;
	model_free(m);
	udfs_model_put(base);
}

const udfs_file *udfs_model_file(const udfs_model *m, const char *path)
{
	size_t lo = 0, hi = m->n_files;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(path, m->files[mid].path);

		if (c == 0)
			return &m->files[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const udfs_tensor *udfs_model_tensor(const udfs_model *m, const char *name)
{
	size_t lo = 0, hi = m->n_index;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, m->index[mid]->name);

		if (c == 0)
			return m->index[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int udfs_store_generation(udfs_store *s, int64_t *gen)
{
	int err;

	pthread_mutex_lock(&s->lock);
	err = udfs_catalog_generation(s->cat, gen);
	pthread_mutex_unlock(&s->lock);
	return err;
}

static uint64_t tree_bytes(const char *path)
{
	struct stat st;
	uint64_t sum = 0;
	DIR *d;
	struct dirent *e;

	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return (uint64_t)st.st_blocks * 512;
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char *sub;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		sub = udfs_xasprintf("%s/%s", path, e->d_name);
		sum += tree_bytes(sub);
		free(sub);
	}
	closedir(d);
	return sum;
}

int udfs_store_usage(udfs_store *s, uint64_t *bytes)
{
	*bytes = tree_bytes(s->dir);
	return 0;
}

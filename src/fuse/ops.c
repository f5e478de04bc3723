// SPDX-License-Identifier: MIT
/*
 * The FUSE lowlevel operations of `udfs mount`: translate a request, call
 * the core (store.h, recon.h) and reply exactly once. The tree is
 *
 *   /                  one directory per model (short timeouts: models
 *   /<model>/          come and go), loaded lazily with udfs_model_load
 *   /<model>/<path>    the model's files, immutable (long timeouts), in
 *                      subdirectories when their paths hold some
 *                      (fuse/tree.c)
 *
 * Files are served read-only with the permission bits and owner of the
 * model's stored bytes (its pack, or each base file; udfs(5)), and the
 * kernel enforces them (default_permissions), so a model kept 0600 stays
 * private whatever allow_other says. A directory gets the read bits its
 * files share, and x where r.
 *
 * Every inode the kernel holds is a node in a hash table with its lookup
 * count (lookup, readdirplus and forget keep it exact); a node owns a
 * reference on its model, and every open file another, so a model removed
 * from the store keeps serving its open files. An open file also pins its
 * model: the store opens a model's pack only while it is pinned (and keeps
 * a few idle ones), so thousands of looked-up models cost no descriptor
 * each. Reads go through
 * udfs_file_read with the chunk cache as provider; FOPEN_KEEP_CACHE keeps
 * the page cache across opens and direct_io is never used (shared mmap).
 * The filesystem is mounted read-only (fuse/mount.c passes -o ro), so the
 * kernel answers EROFS to every modifying operation before it reaches us.
 */
#include "fuse/fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define FILE_TIMEOUT 3600.0 /* files and model contents never change */
#define ROOT_TIMEOUT 1.0    /* the model list does */
#define LIST_MAX_AGE 1.0    /* seconds between generation checks */
#define NODE_BUCKETS 4096

#define DBG(fs, ...)                                                           \
	do {                                                                   \
		if ((fs)->debug)                                               \
			udfs_fs_log(fs, LOG_DEBUG, __VA_ARGS__);               \
	} while (0)

#define STATS_XATTR "user.udfs.stats" /* of the root; see udfs status */

static const char *const xattr_names[] = {
    "user.udfs.base",
    "user.udfs.method",
    "user.udfs.ratio",
    "user.udfs.sparsity",
};

static struct udfs_fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

/* ---- the node table ---------------------------------------------------- */

static struct udfs_node *node_find(struct udfs_fs *fs, fuse_ino_t ino)
{
	struct udfs_hnode *h;

	if (ino == UDFS_ROOT_INO)
		return &fs->root;
	h = udfs_htable_first(&fs->nodes, ino);
	return h ? udfs_container_of(h, struct udfs_node, hn) : NULL;
}

static void node_free(struct udfs_node *n)
{
	udfs_model_put(n->model);
	pthread_mutex_destroy(&n->ra_lock);
	free(n);
}

/*
 * Count one kernel lookup of the node like proto (its ino, kind, model,
 * file and dir), creating it (with a reference of its own on the model)
 * when the kernel did not know it. proto's pointers are borrowed. NULL
 * when out of memory (nothing counted).
 */
static struct udfs_node *node_ref(struct udfs_fs *fs,
				  const struct udfs_node *proto)
{
	struct udfs_node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, proto->ino);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n)
			goto out;
		n->ino = proto->ino;
		n->kind = proto->kind;
		n->model = proto->model;
		n->file = proto->file;
		n->dir = proto->dir;
		udfs_model_get(n->model);
		pthread_mutex_init(&n->ra_lock, NULL);
		udfs_htable_add(&fs->nodes, &n->hn, n->ino);
	}
	n->nlookup++;
out:
	pthread_mutex_unlock(&fs->lock);
	return n;
}

/* Drop nlookup kernel references; free the node when nothing uses it. */
static void node_forget(struct udfs_fs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct udfs_node *n, *dead = NULL;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (n && n != &fs->root) {
		n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
		if (!n->nlookup && !n->opens) {
			udfs_htable_del(&fs->nodes, &n->hn);
			dead = n;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (dead)
		node_free(dead);
}

void udfs_fs_nodes_init(struct udfs_fs *fs)
{
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->list_lock, NULL);
	if (udfs_htable_init(&fs->nodes, NODE_BUCKETS))
		udfs_die("out of memory");
	udfs_list_init(&fs->handles);
	udfs_list_init(&fs->dirs);
	fs->root.ino = UDFS_ROOT_INO;
	fs->root.kind = UDFS_NODE_ROOT;
	fs->root.nlookup = 1;
	pthread_mutex_init(&fs->root.ra_lock, NULL);
}

static void dirh_free_all(struct udfs_fs *fs);

void udfs_fs_nodes_free(struct udfs_fs *fs)
{
	struct udfs_hnode *h;

	while (!udfs_list_empty(&fs->handles)) {
		struct udfs_fh *fh =
		    udfs_container_of(fs->handles.next, struct udfs_fh, link);

		udfs_list_del(&fh->link);
		if (fh->pinned)
			udfs_model_unpin(fh->model);
		udfs_model_put(fh->model);
		free(fh);
	}
	dirh_free_all(fs);
	while ((h = udfs_htable_pop(&fs->nodes)))
		node_free(udfs_container_of(h, struct udfs_node, hn));
	udfs_htable_destroy(&fs->nodes);
	free(fs->models);
	fs->models = NULL;
	pthread_mutex_destroy(&fs->root.ra_lock);
	pthread_mutex_destroy(&fs->list_lock);
	pthread_mutex_destroy(&fs->lock);
}

static bool name_ok(const char *name)
{
	return udfs_name_ok(name, strlen(name));
}

/* ---- the model list ---------------------------------------------------- */

/* Re-read the model list when the catalog changed. Under fs->list_lock. */
static int list_refresh(struct udfs_fs *fs, bool force)
{
	double now = udfs_now();
	udfs_model_info *list = NULL;
	size_t n = 0;
	int64_t gen;
	int err;

	if (!force && fs->list_time > 0 && now - fs->list_time < LIST_MAX_AGE)
		return 0;
	err = udfs_store_generation(fs->store, &gen);
	if (err < 0)
		return err;
	if (fs->list_time > 0 && gen == fs->generation) {
		fs->list_time = now;
		return 0;
	}
	err = udfs_store_list(fs->store, &list, &n);
	if (err < 0)
		return err;
	free(fs->models);
	fs->models = list;
	fs->n_models = n;
	fs->generation = gen;
	fs->list_time = now;
	return 0;
}

static const udfs_model_info *list_find(const struct udfs_fs *fs,
					const char *name)
{
	for (size_t i = 0; i < fs->n_models; i++)
		if (strcmp(fs->models[i].name, name) == 0)
			return &fs->models[i];
	return NULL;
}

/* Is name a model of the store now (force: according to the catalog, not
 * a list up to LIST_MAX_AGE old)? 0, -ENOENT or -errno. */
static int model_exists(struct udfs_fs *fs, const char *name, bool force)
{
	int err;

	pthread_mutex_lock(&fs->list_lock);
	err = list_refresh(fs, force);
	if (!err && !list_find(fs, name))
		err = list_refresh(fs, true); /* perhaps just added */
	if (!err && !list_find(fs, name))
		err = -ENOENT;
	pthread_mutex_unlock(&fs->list_lock);
	return err;
}

/* ---- attributes -------------------------------------------------------- */

/* The root and the directories of the root's listing. */
static void fill_dir_attr(const struct udfs_fs *fs, struct stat *st,
			  fuse_ino_t ino, int64_t mtime)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = 4096;
	st->st_blksize = 4096;
	st->st_atime = st->st_mtime = st->st_ctime = mtime;
}

/* A directory of model m: owned like m's files, readable (and so
 * searchable) by whom all of its files are. */
static void fill_model_dir_attr(const udfs_model *m, const struct udfs_dir *d,
				struct stat *st)
{
	unsigned r = 0444;

	memset(st, 0, sizeof(*st));
	st->st_ino = udfs_dir_ino(m, d);
	st->st_size = 4096;
	st->st_blksize = 4096;
	st->st_atime = st->st_mtime = st->st_ctime = m->created;
	for (size_t i = 0; i < m->n_files; i++)
		r &= m->files[i].mode;
	st->st_mode = S_IFDIR | r | (r >> 2);
	st->st_nlink = udfs_dir_nlink(m, d);
	if (m->n_files) {
		st->st_uid = m->files[0].uid;
		st->st_gid = m->files[0].gid;
	}
}

static void fill_file_attr(struct stat *st, const udfs_file *f)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = UDFS_FILE_INO(f->ino);
	/* The stored bytes' read bits: the mount is read-only. */
	st->st_mode = S_IFREG | (f->mode & 0444);
	st->st_nlink = 1;
	st->st_uid = f->uid;
	st->st_gid = f->gid;
	st->st_size = (off_t)f->size;
	st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
	st->st_blksize = UDFS_CHUNK_BYTES; /* cp and friends read this much */
	st->st_atime = st->st_mtime = st->st_ctime = f->model->created;
}

/* Attributes of node n and how long the kernel may keep them. Under
 * fs->lock (or with n otherwise pinned). */
static double fill_node_attr(const struct udfs_fs *fs,
			     const struct udfs_node *n, struct stat *st)
{
	switch (n->kind) {
	case UDFS_NODE_ROOT:
		fill_dir_attr(fs, st, n->ino, fs->started);
		return ROOT_TIMEOUT;
	case UDFS_NODE_MODEL:
		fill_model_dir_attr(n->model, &n->dir, st);
		return ROOT_TIMEOUT;
	case UDFS_NODE_DIR:
		fill_model_dir_attr(n->model, &n->dir, st);
		return FILE_TIMEOUT;
	default:
		fill_file_attr(st, n->file);
		return FILE_TIMEOUT;
	}
}

/* ---- lookup, forget, getattr ------------------------------------------- */

/*
 * err from loading or pinning model name, as the caller should answer it:
 * a model no longer in the catalog (`udfs rm` won the race) is ENOENT; one
 * still there whose stored files fail is damage, EIO (logged).
 */
static int model_error(struct udfs_fs *fs, const char *name, int err)
{
	int gone = model_exists(fs, name, true);

	if (gone == -ENOENT)
		return -ENOENT;
	udfs_fs_log(fs, LOG_ERR, "model %s: %s", name, udfs_error_msg(err));
	return err == -ENOENT ? -EIO : err;
}

static int lookup_model(struct udfs_fs *fs, const char *name,
			struct fuse_entry_param *e)
{
	struct udfs_node proto = {.kind = UDFS_NODE_MODEL};
	udfs_model *m = NULL;
	int err;

	if (!name_ok(name))
		return -ENOENT;
	err = model_exists(fs, name, false);
	if (err < 0)
		return err;
	err = udfs_model_load(fs->store, name, &m);
	if (err < 0)
		return model_error(fs, name, err);
	proto.model = m;
	udfs_dir_of_model(m, &proto.dir);
	proto.ino = UDFS_DIR_INO(m->id);
	if (!node_ref(fs, &proto)) {
		udfs_model_put(m);
		return -ENOMEM;
	}
	e->ino = proto.ino;
	fill_model_dir_attr(m, &proto.dir, &e->attr);
	e->attr_timeout = ROOT_TIMEOUT;
	e->entry_timeout = ROOT_TIMEOUT;
	udfs_model_put(m);
	return 0;
}

/* The model and directory of directory node ino, with a reference on the
 * model: the caller puts it. */
static int dir_node(struct udfs_fs *fs, fuse_ino_t ino, udfs_model **m,
		    struct udfs_dir *d)
{
	struct udfs_node *n;
	int err = 0;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (!n)
		err = -ENOENT;
	else if (n->kind == UDFS_NODE_FILE)
		err = -ENOTDIR;
	else if (n->kind == UDFS_NODE_ROOT)
		err = -ENOENT;
	else {
		udfs_model_get(*m = n->model);
		*d = n->dir;
	}
	pthread_mutex_unlock(&fs->lock);
	return err;
}

/* The node an entry of a model's directory becomes. */
static void entry_node(udfs_model *m, const struct udfs_dirent *de,
		       struct udfs_node *proto)
{
	memset(proto, 0, sizeof(*proto));
	proto->ino = de->ino;
	proto->model = m;
	if (de->kind == UDFS_ENT_FILE) {
		proto->kind = UDFS_NODE_FILE;
		proto->file = de->file;
	} else {
		proto->kind = UDFS_NODE_DIR;
		proto->dir = de->sub;
	}
}

static int lookup_in_model(struct udfs_fs *fs, fuse_ino_t parent,
			   const char *name, struct fuse_entry_param *e)
{
	struct udfs_node proto;
	struct udfs_dirent de;
	struct udfs_dir d;
	udfs_model *m;
	int err;

	err = dir_node(fs, parent, &m, &d);
	if (err < 0)
		return err;
	err = udfs_dir_lookup(m, &d, name, &de);
	if (err < 0)
		goto out;
	entry_node(m, &de, &proto);
	if (!node_ref(fs, &proto)) {
		err = -ENOMEM;
		goto out;
	}
	e->ino = proto.ino;
	fill_node_attr(fs, &proto, &e->attr);
	e->attr_timeout = FILE_TIMEOUT;
	e->entry_timeout = FILE_TIMEOUT;
out:
	udfs_model_put(m);
	return err;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct udfs_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	int err;

	DBG(fs, "lookup parent=%" PRIu64 " name=%s", (uint64_t)parent, name);
	udfs_error_clear();
	memset(&e, 0, sizeof(e));
	if (parent == UDFS_ROOT_INO)
		err = lookup_model(fs, name, &e);
	else
		err = lookup_in_model(fs, parent, name, &e);
	if (err == -ENOENT) {
		/* A negative entry: the kernel remembers the miss, so a
		 * stream of lookups of absent names does not reach the
		 * catalog each time. Root misses age fast, so a model added
		 * meanwhile shows up within a second; a model's file list
		 * never changes. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = parent == UDFS_ROOT_INO ? 1.0 : 3600.0;
		fuse_reply_entry(req, &e);
	} else if (err < 0) {
		fuse_reply_err(req, -err);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct udfs_fs *fs = fs_of(req);

	DBG(fs, "forget ino=%" PRIu64 " n=%" PRIu64, (uint64_t)ino, nlookup);
	node_forget(fs, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct udfs_fs *fs = fs_of(req);

	DBG(fs, "forget_multi count=%zu", count);
	for (size_t i = 0; i < count; i++)
		node_forget(fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_node *n;
	struct stat st;
	double timeout = 0;

	(void)fi;
	DBG(fs, "getattr ino=%" PRIu64, (uint64_t)ino);
	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (n)
		timeout = fill_node_attr(fs, n, &st);
	pthread_mutex_unlock(&fs->lock);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (ino == UDFS_ROOT_INO) { /* ".", ".." and one per model */
		pthread_mutex_lock(&fs->list_lock);
		st.st_nlink = 2 + fs->n_models;
		pthread_mutex_unlock(&fs->list_lock);
	}
	fuse_reply_attr(req, &st, timeout);
}

/* ---- files ------------------------------------------------------------- */

static void fh_release(struct udfs_fs *fs, struct udfs_fh *fh)
{
	struct udfs_node *n = fh->node, *dead = NULL;

	pthread_mutex_lock(&fs->lock);
	udfs_list_del(&fh->link);
	fs->open_files--;
	if (--n->opens == 0 && n->nlookup == 0) {
		udfs_htable_del(&fs->nodes, &n->hn);
		dead = n;
	}
	pthread_mutex_unlock(&fs->lock);
	if (fh->pinned)
		udfs_model_unpin(fh->model);
	udfs_model_put(fh->model);
	free(fh);
	if (dead)
		node_free(dead);
}

/* A new handle on file node ino, its model referenced but not pinned. */
static int fh_new(struct udfs_fs *fs, fuse_ino_t ino, struct udfs_fh **out)
{
	struct udfs_fh *fh;
	struct udfs_node *n;
	int err = 0;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (!n) {
		err = -ENOENT;
	} else if (n->kind != UDFS_NODE_FILE) {
		err = -EISDIR;
	} else if (!(fh = calloc(1, sizeof(*fh)))) {
		err = -ENOMEM;
	} else {
		fh->node = n;
		fh->model = n->model;
		fh->file = n->file;
		udfs_model_get(fh->model);
		n->opens++;
		fs->open_files++;
		udfs_list_push(&fs->handles, &fh->link);
		*out = fh;
	}
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_fh *fh = NULL;
	int err;

	DBG(fs, "open ino=%" PRIu64 " flags=0%o", (uint64_t)ino, fi->flags);
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	err = fh_new(fs, ino, &fh);
	if (err < 0) {
		fuse_reply_err(req, -err);
		return;
	}
	/* Pinned while open: reads need the pack (store.h). */
	udfs_error_clear();
	err = udfs_model_pin(fh->model);
	fh->pinned = err == 0;
	if (err < 0) {
		err = model_error(fs, fh->model->name, err);
		fh_release(fs, fh);
		fuse_reply_err(req, -err);
		return;
	}
	fi->fh = (uintptr_t)fh;
	fi->keep_cache = 1; /* immutable: keep the page cache across opens */
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fh_release(fs, fh); /* the open was interrupted */
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct udfs_fs *fs = fs_of(req);

	DBG(fs, "release ino=%" PRIu64, (uint64_t)ino);
	fh_release(fs, (struct udfs_fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_fh *fh = (struct udfs_fh *)(uintptr_t)fi->fh;

	DBG(fs, "read ino=%" PRIu64 " off=%lld size=%zu", (uint64_t)ino,
	    (long long)off, size);
	__atomic_add_fetch(&fs->reads, 1, __ATOMIC_RELAXED);
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= fh->file->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size = (size_t)UDFS_MIN((uint64_t)size, fh->file->size - (uint64_t)off);
	udfs_fs_readahead(fs, fh->node, (uint64_t)off, size);
	udfs_fs_read(req, fs, fh, size, off, (fi->flags & O_DIRECT) != 0);
}

/* ---- directories ------------------------------------------------------- */

struct dent {
	char *name;
	fuse_ino_t ino;
	int64_t mtime;	       /* root entries */
	const udfs_file *file; /* a model's files */
	bool subdir;	       /* a directory inside a model */
	struct udfs_dir dir;   /* ... its files */
};

struct udfs_dirh {
	fuse_ino_t ino;
	udfs_model *model; /* model directories: a reference */
	size_t n;
	struct dent *ents;
	struct udfs_list link; /* in fs->dirs, under fs->lock */
};

static void dirh_free(struct udfs_dirh *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	udfs_model_put(d->model);
	free(d->ents);
	free(d);
}

/* At unmount: the directories the kernel did not release. */
static void dirh_free_all(struct udfs_fs *fs)
{
	while (!udfs_list_empty(&fs->dirs)) {
		struct udfs_dirh *d =
		    udfs_container_of(fs->dirs.next, struct udfs_dirh, link);

		udfs_list_del(&d->link);
		dirh_free(d);
	}
}

/* Unlink an open directory from fs->dirs and free it. */
static void dirh_release(struct udfs_fs *fs, struct udfs_dirh *d)
{
	pthread_mutex_lock(&fs->lock);
	udfs_list_del(&d->link);
	pthread_mutex_unlock(&fs->lock);
	dirh_free(d);
}

/* Snapshot the root's model list. */
static int snap_root(struct udfs_fs *fs, struct udfs_dirh *d)
{
	int err;

	pthread_mutex_lock(&fs->list_lock);
	err = list_refresh(fs, true);
	if (!err && !(d->ents = calloc(fs->n_models + 1, sizeof(*d->ents))))
		err = udfs_error(-ENOMEM, "out of memory");
	if (!err) {
		for (size_t i = 0; i < fs->n_models; i++) {
			struct dent *de = &d->ents[d->n];

			if (!name_ok(fs->models[i].name))
				continue;
			de->name = strdup(fs->models[i].name);
			if (!de->name) {
				err = udfs_error(-ENOMEM, "out of memory");
				break;
			}
			de->ino = UDFS_DIR_INO(fs->models[i].id);
			de->mtime = fs->models[i].created;
			d->n++;
		}
	}
	pthread_mutex_unlock(&fs->list_lock);
	return err;
}

/* Snapshot the entries of directory dir of model m (files and
 * subdirectories, in path order). 0 or -ENOMEM. */
static int snap_model_dir(struct udfs_dirh *d, const struct udfs_dir *dir)
{
	const udfs_model *m = d->model;
	struct udfs_dirent e;
	size_t i = dir->lo;

	d->ents = calloc(dir->hi - dir->lo + 1, sizeof(*d->ents));
	if (!d->ents)
		return -ENOMEM;
	while (udfs_dir_next(m, dir, &i, &e)) {
		struct dent *de = &d->ents[d->n];

		if (e.kind == UDFS_ENT_NONE)
			continue;
		de->name = strndup(e.name, e.len);
		if (!de->name)
			return -ENOMEM;
		de->ino = e.ino;
		de->file = e.kind == UDFS_ENT_FILE ? e.file : NULL;
		de->subdir = e.kind == UDFS_ENT_DIR;
		de->dir = e.sub;
		d->n++;
	}
	return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_dirh *d;
	struct udfs_dir dir;
	int err;

	DBG(fs, "opendir ino=%" PRIu64, (uint64_t)ino);
	udfs_error_clear();
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	d->ino = ino;
	if (ino == UDFS_ROOT_INO) {
		err = snap_root(fs, d);
		if (err < 0)
			udfs_fs_log(fs, LOG_ERR, "model list: %s",
				    udfs_error_msg(err));
	} else {
		err = dir_node(fs, ino, &d->model, &dir);
		if (!err)
			err = snap_model_dir(d, &dir);
		if (!err) {
			fi->cache_readdir = 1; /* immutable listing */
			fi->keep_cache = 1;
		}
	}
	if (err < 0) {
		dirh_free(d);
		fuse_reply_err(req, -err);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	udfs_list_push(&fs->dirs, &d->link);
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dirh_release(fs, d);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct udfs_fs *fs = fs_of(req);

	DBG(fs, "releasedir ino=%" PRIu64, (uint64_t)ino);
	dirh_release(fs, (struct udfs_dirh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Attributes of entry i of d (0 ".", 1 "..", then d->ents). */
static void dent_attr(const struct udfs_fs *fs, const struct udfs_dirh *d,
		      size_t i, struct stat *st)
{
	const struct dent *de = i >= 2 ? &d->ents[i - 2] : NULL;

	if (de && de->file)
		fill_file_attr(st, de->file);
	else if (de && de->subdir)
		fill_model_dir_attr(d->model, &de->dir, st);
	else if (de)
		fill_dir_attr(fs, st, de->ino, de->mtime);
	else
		fill_dir_attr(fs, st, i == 0 ? d->ino : UDFS_ROOT_INO,
			      fs->started);
}

/*
 * readdir and readdirplus. Offsets are entry indices + 1 (0 is "start");
 * entries 0 and 1 are "." and "..". readdirplus counts a lookup for each
 * model file it returns (only once it is sure the entry fits); the root's
 * entries and subdirectories carry no inode (e.ino = 0), so listing the
 * root loads nothing.
 */
static void do_readdir(fuse_req_t req, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_dirh *d = (struct udfs_dirh *)(uintptr_t)fi->fh;
	char *buf = NULL;
	size_t pos = 0;
	bool oom = false;

	if (size) {
		buf = malloc(size);
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	for (size_t i = off < 0 ? 0 : (size_t)off; i < d->n + 2; i++) {
		struct fuse_entry_param e;
		const struct dent *de = i >= 2 ? &d->ents[i - 2] : NULL;
		const char *name = i == 0 ? "." : i == 1 ? ".." : de->name;
		size_t need;

		memset(&e, 0, sizeof(e));
		dent_attr(fs, d, i, &e.attr);
		if (!plus) {
			need = fuse_add_direntry(req, buf + pos, size - pos,
						 name, &e.attr, (off_t)i + 1);
			if (need > size - pos)
				break;
			pos += need;
			continue;
		}
		need = fuse_add_direntry_plus(req, NULL, 0, name, &e,
					      (off_t)i + 1);
		if (need > size - pos)
			break;
		if (de && de->file) {
			struct udfs_node proto = {
			    .ino = de->ino,
			    .kind = UDFS_NODE_FILE,
			    .model = d->model,
			    .file = de->file,
			};

			if (!node_ref(fs, &proto)) {
				oom = true; /* the entries so far, or ENOMEM */
				break;
			}
			e.ino = de->ino;
			e.attr_timeout = FILE_TIMEOUT;
			e.entry_timeout = FILE_TIMEOUT;
		}
		pos += fuse_add_direntry_plus(req, buf + pos, size - pos, name,
					      &e, (off_t)i + 1);
	}
	if (oom && !pos)
		fuse_reply_err(req, ENOMEM);
	else
		fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	DBG(fs_of(req), "readdir ino=%" PRIu64 " off=%lld", (uint64_t)ino,
	    (long long)off);
	do_readdir(req, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	DBG(fs_of(req), "readdirplus ino=%" PRIu64 " off=%lld", (uint64_t)ino,
	    (long long)off);
	do_readdir(req, size, off, fi, true);
}

/* ---- statfs and extended attributes ------------------------------------ */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct udfs_fs *fs = fs_of(req);
	struct statvfs st;
	uint64_t bytes = 0;
	int err;

	DBG(fs, "statfs ino=%" PRIu64, (uint64_t)ino);
	udfs_error_clear();
	err = udfs_store_usage(fs->store, &bytes);
	if (err < 0) {
		udfs_fs_log(fs, LOG_ERR, "statfs: %s", udfs_error_msg(err));
		fuse_reply_err(req, -err);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_blocks = (fsblkcnt_t)((bytes + 4095) / 4096);
	pthread_mutex_lock(&fs->list_lock);
	st.f_files = fs->n_models;
	pthread_mutex_unlock(&fs->list_lock);
	st.f_namemax = 255;
	st.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	fuse_reply_statfs(req, &st);
}

/* Value of xattr name of model m into buf (>= 64 bytes): its length, or
 * -ENODATA. */
static int xattr_value(const udfs_model *m, const char *name, char *buf,
		       size_t len)
{
	if (strcmp(name, "user.udfs.base") == 0) {
		if (!m->base)
			return -ENODATA;
		snprintf(buf, len, "%s", m->base->name);
	} else if (strcmp(name, "user.udfs.method") == 0) {
		snprintf(buf, len, "%s", m->method ? m->method : "");
	} else if (strcmp(name, "user.udfs.ratio") == 0) {
		snprintf(buf, len, "%.2f",
			 m->stored_bytes
			     ? (double)m->source_bytes / (double)m->stored_bytes
			     : 0.0);
	} else if (strcmp(name, "user.udfs.sparsity") == 0) {
		snprintf(buf, len, "%.4f", m->sparsity);
	} else {
		return -ENODATA;
	}
	return (int)strlen(buf);
}

/* Reply to a getxattr/listxattr query of size bytes with len bytes. */
static void reply_xattr(fuse_req_t req, const char *val, size_t len,
			size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

/*
 * user.udfs.stats of the root: what the mount is doing, one "name value"
 * line each (`udfs status` prints it). Returns its length.
 */
static int stats_text(struct udfs_fs *fs, char *buf, size_t len)
{
	udfs_cache_stats c;
	uint64_t loaded = 0, open_models = 0, open_fds = 0, open_files;
	int n;

	memset(&c, 0, sizeof(c));
	if (fs->cache)
		udfs_cache_get_stats(fs->cache, &c);
	if (fs->store)
		udfs_store_fd_stats(fs->store, &loaded, &open_models,
				    &open_fds);
	pthread_mutex_lock(&fs->lock);
	open_files = fs->open_files;
	pthread_mutex_unlock(&fs->lock);
	n = snprintf(
	    buf, len,
	    "store %s\npid %d\nuptime_s %lld\nmodels_loaded %" PRIu64
	    "\nmodels_with_open_storage %" PRIu64 "\nstorage_fds %" PRIu64
	    "\nopen_files %" PRIu64 "\nreads %" PRIu64 "\nbytes_served %" PRIu64
	    "\nread_errors %" PRIu64 "\ncache_hits %" PRIu64
	    "\ncache_misses %" PRIu64 "\ncache_waits %" PRIu64
	    "\nchunks_decoded %" PRIu64 "\nbytes_decoded %" PRIu64
	    "\ndecode_errors %" PRIu64 "\ncache_evictions %" PRIu64
	    "\ncache_bytes %" PRIu64 "\ncache_capacity %" PRIu64
	    "\ndecode_ahead_queued %" PRIu64 "\ndecode_ahead_dropped %" PRIu64
	    "\ndecode_ahead_cancelled %" PRIu64 "\n",
	    fs->store_dir, (int)getpid(), (long long)(time(NULL) - fs->started),
	    loaded, open_models, open_fds, open_files,
	    __atomic_load_n(&fs->reads, __ATOMIC_RELAXED),
	    __atomic_load_n(&fs->bytes_served, __ATOMIC_RELAXED),
	    __atomic_load_n(&fs->read_errors, __ATOMIC_RELAXED), c.hits,
	    c.misses, c.waits, c.decodes, c.bytes_decoded, c.errors,
	    c.evictions, c.bytes, c.capacity, c.ahead_queued, c.ahead_dropped,
	    c.ahead_cancelled);
	return n < 0 ? 0 : (int)UDFS_MIN((size_t)n, len - 1);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_node *n;
	char val[8192];
	int len = -ENODATA;

	DBG(fs, "getxattr ino=%" PRIu64 " name=%s", (uint64_t)ino, name);
	if (ino == UDFS_ROOT_INO && strcmp(name, STATS_XATTR) == 0) {
		len = stats_text(fs, val, sizeof(val));
		reply_xattr(req, val, (size_t)len, size);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (!n)
		len = -ENOENT;
	else if (n->model)
		len = xattr_value(n->model, name, val, sizeof(val));
	pthread_mutex_unlock(&fs->lock);
	if (len < 0)
		fuse_reply_err(req, -len);
	else
		reply_xattr(req, val, (size_t)len, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct udfs_fs *fs = fs_of(req);
	struct udfs_node *n;
	char list[256], val[512];
	size_t pos = 0;
	int err = 0;

	DBG(fs, "listxattr ino=%" PRIu64, (uint64_t)ino);
	if (ino == UDFS_ROOT_INO) {
		reply_xattr(req, STATS_XATTR, sizeof(STATS_XATTR), size);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, ino);
	if (!n)
		err = ENOENT;
	for (size_t i = 0; n && n->model && i < UDFS_ARRAY_SIZE(xattr_names);
	     i++) {
		if (xattr_value(n->model, xattr_names[i], val, sizeof(val)) < 0)
			continue;
		memcpy(list + pos, xattr_names[i], strlen(xattr_names[i]) + 1);
		pos += strlen(xattr_names[i]) + 1;
	}
	pthread_mutex_unlock(&fs->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		reply_xattr(req, list, pos, size);
}

/* ---- session ----------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct udfs_fs *fs = userdata;

	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* Replies come from a user buffer, where splice saves no copy. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
				  FUSE_CAP_SPLICE_READ);
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	/* The kernel takes the smaller of this and its bdi readahead,
	 * which the daemon raises through sysfs (fuse/mount.c). */
	conn->max_readahead = 16u << 20;
	/* conn->max_read stays as the mount option set it: libfuse rejects
	 * a value that differs from the kernel's. */
	DBG(fs, "init: proto %u.%u, capable 0x%x, want 0x%x, max_write %u",
	    conn->proto_major, conn->proto_minor, conn->capable, conn->want,
	    conn->max_write);
}

const struct fuse_lowlevel_ops udfs_fuse_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
};

// SPDX-License-Identifier: MIT
/*
 * Model sources for udfs-compress: one .safetensors file, or a Hugging Face
 * model directory walked recursively. Opening validates everything before
 * the caller writes a byte: each file is a regular file (or a symlink that
 * resolves inside the directory, or into the blobs of a Hugging Face cache
 * snapshot), every safetensors
 * header parses strictly, tensor names are unique across shards, and
 * model.safetensors.index.json, when present, maps exactly the tensors of
 * the shards to the shards that hold them. The layout rules are in
 * source.h and udfs-compress(1). Paths are what readdir gives, joined with
 * '/': every component is a file name the mount serves as it is (udfs(5),
 * files.path), control characters included, so none needs checking here.
 *
 * Files are mmap-ed read-only and shared, so reading a multi-gigabyte
 * source costs page cache, not heap, and their descriptors are closed at
 * once, so a source of a thousand files needs no descriptor limit raised.
 * One name index (sorted array over all shards) serves udfs_source_find().
 */
#include "format/source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "format/model.h"
#include "format/source_i.h"

#define ST_SUFFIX ".safetensors"

struct src_ent {
	const char *name;
	const udfs_st_tensor *t;
	const udfs_source_file *file;
};

/* The public source plus its private name index; the public part comes
 * first so a source pointer converts back. */
struct src_priv {
	udfs_source s;
	struct src_ent *idx; /* s.n_tensors entries sorted by name */
};

static bool has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* A name that can only mean a file directly inside the directory. */
static bool plain_name(const char *s)
{
	return s[0] && s[0] != '.' && !strchr(s, '/');
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_ent(const void *a, const void *b)
{
	const struct src_ent *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Where the index names tensor name when it is not there: the shard that
 * really holds it, or NULL. */
static const char *holder(const char *name, size_t n_shards,
			  const char *const *names,
			  const udfs_st_header *const *shards)
{
	for (size_t i = 0; i < n_shards; i++)
		if (udfs_st_find(shards[i], name))
			return names[i];
	return NULL;
}

/* Check one weight_map entry: tensor key is in shard val, a safetensors
 * file of the model. */
static int check_entry(const char *label, const char *key, json_t *val,
		       size_t n_shards, const char *const *names,
		       const udfs_st_header *const *shards)
{
	const char *shard, *real;
	size_t k;

	if (!json_is_string(val))
		return udfs_error(
		    -EINVAL, "%s: tensor \"%s\": shard name is not a string",
		    label, key);
	shard = json_string_value(val);
	if (!plain_name(shard))
		return udfs_error(
		    -EINVAL,
		    "%s: tensor \"%s\": shard name \"%s\" is not a plain file name in the model directory",
		    label, key, shard);
	for (k = 0; k < n_shards; k++)
		if (strcmp(names[k], shard) == 0)
			break;
	if (k == n_shards)
		return udfs_error(
		    -EINVAL,
		    "%s: tensor \"%s\": shard %s is not a safetensors file of the model",
		    label, key, shard);
	if (udfs_st_find(shards[k], key))
		return 0;
	real = holder(key, n_shards, names, shards);
	if (real)
		return udfs_error(
		    -EINVAL,
		    "%s: tensor \"%s\" is in %s but the index names %s", label,
		    key, real, shard);
	return udfs_error(-EINVAL,
			  "%s: tensor \"%s\" is not in %s (nor in any shard)",
			  label, key, shard);
}

/* Check that every tensor of every shard is in the weight_map wm, under
 * its own shard. */
static int check_shards(const char *label, json_t *wm, size_t n_shards,
			const char *const *names,
			const udfs_st_header *const *shards)
{
	for (size_t i = 0; i < n_shards; i++) {
		for (size_t j = 0; j < shards[i]->n_tensors; j++) {
			const char *name = shards[i]->tensors[j].name;
			json_t *val = json_object_get(wm, name);

			if (!val)
				return udfs_error(
				    -EINVAL,
				    "%s: tensor \"%s\" of %s is missing from the weight_map",
				    label, name, names[i]);
			if (strcmp(json_string_value(val), names[i]))
				return udfs_error(
				    -EINVAL,
				    "%s: tensor \"%s\" is in %s but the index names %s",
				    label, name, names[i],
				    json_string_value(val));
		}
	}
	return 0;
}

int udfs_index_check(const char *label, const void *buf, size_t len,
		     size_t n_shards, const char *const *names,
		     const udfs_st_header *const *shards)
{
	json_t *root = NULL, *wm, *val;
	json_error_t jerr;
	const char *key;
	int err = -EINVAL;

	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return udfs_error(-EINVAL, "%s: not valid JSON: %s at byte %d",
				  label, jerr.text, jerr.position);
	if (!json_is_object(root)) {
		udfs_error(err, "%s: not a JSON object", label);
		goto out;
	}
	wm = json_object_get(root, "weight_map");
	if (!json_is_object(wm)) {
		udfs_error(err, "%s: \"weight_map\" is %s", label,
			   wm ? "not an object" : "missing");
		goto out;
	}
	json_object_foreach(wm, key, val)
	{
		err = check_entry(label, key, val, n_shards, names, shards);
		if (err)
			goto out;
	}
	err = check_shards(label, wm, n_shards, names, shards);
out:
	json_decref(root);
	return err;
}

/* ---- where files may live -------------------------------------------- */

/*
 * The places a file of a directory source may resolve to: the directory
 * itself and, for a Hugging Face cache snapshot REPO/snapshots/REV, the
 * repository's REPO/blobs/, where the snapshot's symlinks point. Symlinks
 * anywhere else are refused: a model directory must not read, and store,
 * files that only happen to be reachable from it.
 */
struct roots {
	char *dir;   /* realpath of the source directory */
	char *blobs; /* realpath of REPO/blobs for a snapshot, or NULL */
};

/* Is path strictly below directory root (both absolute, resolved)? */
static bool below(const char *path, const char *root)
{
	size_t n = strlen(root);

	/* "/" is a prefix of everything: no separator to add. */
	if (n == 1)
		n = 0;
	return strncmp(path, root, n) == 0 && path[n] == '/';
}

static bool inside(const struct roots *r, const char *path)
{
	return below(path, r->dir) || (r->blobs && below(path, r->blobs));
}

/* REPO/blobs when dir (resolved) is REPO/snapshots/REV, else NULL. */
static char *snapshot_blobs(const char *dir)
{
	const char *rev = strrchr(dir, '/');
	char *repo, *blobs, *real = NULL;
	struct stat st;
	size_t n;

	if (!rev || rev == dir)
		return NULL;
	n = (size_t)(rev - dir);
	if (n < 10 || strncmp(dir + n - 10, "/snapshots", 10) != 0)
		return NULL;
	repo = udfs_xasprintf("%.*s", (int)(n - 10), dir);
	blobs = udfs_xasprintf("%s/blobs", repo);
	if (stat(blobs, &st) == 0 && S_ISDIR(st.st_mode))
		real = realpath(blobs, NULL);
	free(blobs);
	free(repo);
	return real;
}

/* ---- the directory walk ----------------------------------------------- */

#define MAX_DEPTH 32

struct scan {
	const char *label; /* the SRC argument */
	struct roots r;
	char **paths; /* files found, relative to the directory */
	size_t n, cap;
	char *skipped; /* "a/.git/, .cache/" for the one note, or NULL */
};

/* HF and git bookkeeping, not files of the model: hub downloads leave
 * .cache/huggingface/ in a local dir, a clone has .git/. */
static bool metadata_dir(const char *name)
{
	return strcmp(name, ".git") == 0 || strcmp(name, ".cache") == 0;
}

static void note_skip(struct scan *sc, const char *rel)
{
	char *s = sc->skipped ? udfs_xasprintf("%s, %s/", sc->skipped, rel)
			      : udfs_xasprintf("%s/", rel);

	free(sc->skipped);
	sc->skipped = s;
}

/* Follow symlink rel: *st becomes its target's. Refused unless it
 * resolves to a regular file where the source may read (struct roots). */
static int follow(struct scan *sc, const char *rel, struct stat *st)
{
	char *full = udfs_xasprintf("%s/%s", sc->r.dir, rel);
	char *target = realpath(full, NULL);
	int err = 0;

	if (!target)
		err = udfs_error(-errno, "%s: symlink %s: %s", sc->label, rel,
				 strerror(errno));
	else if (!inside(&sc->r, target))
		err = udfs_error(
		    -EINVAL,
		    "%s: symlink %s points outside the model directory (to %s); add a copy made with cp -rL instead",
		    sc->label, rel, target);
	else if (stat(target, st) < 0)
		err = udfs_error(-errno, "%s: %s: %s", sc->label, rel,
				 strerror(errno));
	else if (S_ISDIR(st->st_mode))
		err = udfs_error(
		    -EINVAL,
		    "%s: symlink %s points to a directory, which udfs does not follow; add a copy made with cp -rL instead",
		    sc->label, rel);
	free(target);
	free(full);
	return err;
}

static void add_path(struct scan *sc, const char *rel)
{
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? 2 * sc->cap : 16;
		sc->paths = udfs_xrealloc(sc->paths, sc->cap * sizeof(char *));
	}
	sc->paths[sc->n++] = udfs_xstrdup(rel);
}

static int walk(struct scan *sc, int dfd, const char *prefix, int depth);

/* Walk subdirectory name (rel from the top) of the directory at dfd. */
static int descend(struct scan *sc, int dfd, const char *name, const char *rel,
		   int depth)
{
	int fd, err;

	if (depth >= MAX_DEPTH)
		return udfs_error(
		    -EINVAL, "%s: %s: directories nested more than %d deep",
		    sc->label, rel, MAX_DEPTH);
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return udfs_error(-errno, "%s: %s: %s", sc->label, rel,
				  strerror(errno));
	err = walk(sc, fd, rel, depth + 1);
	close(fd);
	return err;
}

/* Take entry name (rel from the top) of the directory at dfd: a file of
 * the model, a directory to walk or skip, or an error. */
static int visit(struct scan *sc, int dfd, const char *name, const char *rel,
		 int depth)
{
	struct stat st;
	int err;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return udfs_error(-errno, "%s: %s: %s", sc->label, rel,
				  strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		if (!metadata_dir(name))
			return descend(sc, dfd, name, rel, depth);
		note_skip(sc, rel);
		return 0;
	}
	if (S_ISLNK(st.st_mode)) {
		err = follow(sc, rel, &st);
		if (err)
			return err;
	}
	if (!S_ISREG(st.st_mode))
		return udfs_error(
		    -EINVAL,
		    "%s: %s is not a regular file (device, fifo or socket)",
		    sc->label, rel);
	add_path(sc, rel);
	return 0;
}

/* Add the files below the directory at dfd (prefix: its path from the
 * top, NULL for the top) to sc. */
static int walk(struct scan *sc, int dfd, const char *prefix, int depth)
{
	DIR *d = NULL;
	struct dirent *de;
	int fd = dup(dfd), err = 0;

	if (fd < 0 || !(d = fdopendir(fd))) {
		err = udfs_error(-errno, "%s: %s: %s", sc->label,
				 prefix ? prefix : ".", strerror(errno));
		if (fd >= 0)
			close(fd);
		return err;
	}
	while (!err && (errno = 0, de = readdir(d))) {
		char *rel;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rel = prefix ? udfs_xasprintf("%s/%s", prefix, de->d_name)
			     : udfs_xstrdup(de->d_name);
		err = visit(sc, dfd, de->d_name, rel, depth);
		free(rel);
	}
	if (!err && errno)
		err = udfs_error(-errno, "%s: readdir: %s", sc->label,
				 strerror(errno));
	closedir(d);
	return err;
}

/* ---- opening files ---------------------------------------------------- */

/* Absolute path of what descriptor fd has open, or NULL without /proc. */
static char *fd_path(int fd)
{
	char link[64], target[PATH_MAX];
	ssize_t len;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	len = readlink(link, target, sizeof(target) - 1);
	if (len < 0)
		return NULL;
	target[len] = '\0';
	return udfs_xstrdup(target);
}

/* Is f a safetensors file? Only at the top of a directory, where shards
 * and the index live; one in a subdirectory is kept verbatim. A dotfile
 * is never a shard (the index cannot name one). */
static int file_kind(const char *path)
{
	return has_suffix(path, ST_SUFFIX) && path[0] != '.' &&
		       !strchr(path, '/')
		   ? UDFS_FILE_SAFETENSORS
		   : UDFS_FILE_VERBATIM;
}

/* Map fd's file into f; msg_name names it in messages. */
static int map_file(int fd, const char *msg_name, udfs_source_file *f)
{
	void *map;

	if (!f->size)
		return 0;
	if (f->size > SIZE_MAX)
		return udfs_error(-EFBIG, "%s: too large to map", msg_name);
	map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return udfs_error(-errno, "%s: mmap: %s", msg_name,
				  strerror(errno));
	f->map = map;
	return 0;
}

/*
 * Open, map and (for .safetensors) parse one file into f; f->path is set
 * on entry. msg_name names the file in messages. With roots, what was
 * opened must lie inside them: the entry was checked by name before, and
 * a symlink swapped in between must not lead out. The descriptor is
 * closed before returning; the mapping stays valid without it.
 */
static int open_file(int dfd, const char *rel, const char *msg_name,
		     const struct roots *roots, udfs_source_file *f)
{
	struct stat st;
	int fd, err = 0;

	fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return udfs_error(-errno, "%s: %s", msg_name, strerror(errno));
	if (fstat(fd, &st) < 0) {
		err = udfs_error(-errno, "%s: %s", msg_name, strerror(errno));
		goto out;
	}
	/* Checked again on the descriptor: the entry may have changed. */
	if (!S_ISREG(st.st_mode)) {
		err = udfs_error(-EINVAL, "%s: not a regular file", msg_name);
		goto out;
	}
	f->size = (uint64_t)st.st_size;
	f->mode = st.st_mode & 07777;
	f->dev = (uint64_t)st.st_dev;
	f->ino = (uint64_t)st.st_ino;
	f->kind = file_kind(f->path);
	f->real = fd_path(fd);
	if (!f->real && !(f->real = realpath(msg_name, NULL))) {
		err = udfs_error(-errno, "%s: %s", msg_name, strerror(errno));
		goto out;
	}
	if (roots && !inside(roots, f->real)) {
		err = udfs_error(-EINVAL,
				 "%s: opened %s, outside the model directory",
				 msg_name, f->real);
		goto out;
	}
	err = map_file(fd, msg_name, f);
out:
	close(fd);
	if (err || f->kind != UDFS_FILE_SAFETENSORS)
		return err;
	err = udfs_st_parse(msg_name, f->map, (size_t)f->size, f->size, NULL,
			    &f->st);
	/* The whole file is mapped, so the parser never asks for more. */
	if (err == -EAGAIN)
		err = udfs_error(-EINVAL, "%s: truncated header", msg_name);
	return err;
}

/* Build the name index over all shards; tensor names must be unique. */
static int build_index(struct src_priv *sp)
{
	udfs_source *s = &sp->s;
	size_t k = 0;

	s->n_tensors = 0;
	for (size_t i = 0; i < s->n_files; i++)
		if (s->files[i].st)
			s->n_tensors += s->files[i].st->n_tensors;
	sp->idx = udfs_xcalloc(s->n_tensors + 1, sizeof(*sp->idx));
	for (size_t i = 0; i < s->n_files; i++) {
		const udfs_st_header *h = s->files[i].st;

		for (size_t j = 0; h && j < h->n_tensors; j++)
			sp->idx[k++] = (struct src_ent){
			    h->tensors[j].name, &h->tensors[j], &s->files[i]};
	}
	qsort(sp->idx, k, sizeof(*sp->idx), cmp_ent);
	for (size_t i = 1; i < k; i++)
		if (strcmp(sp->idx[i - 1].name, sp->idx[i].name) == 0)
			return udfs_error(
			    -EINVAL, "%s: tensor \"%s\" is in both %s and %s",
			    s->label, sp->idx[i].name,
			    sp->idx[i - 1].file->path, sp->idx[i].file->path);
	return 0;
}

/* Check model.safetensors.index.json against the shards, if present. */
static int check_index(const udfs_source *s)
{
	const udfs_source_file *index = NULL;
	const char **names = NULL;
	const udfs_st_header **shards = NULL;
	size_t n = 0;
	int err;

	for (size_t i = 0; i < s->n_files; i++)
		if (strcmp(s->files[i].path, UDFS_INDEX_NAME) == 0)
			index = &s->files[i];
	if (!index)
		return 0;
	names = udfs_xcalloc(s->n_files, sizeof(*names));
	shards = udfs_xcalloc(s->n_files, sizeof(*shards));
	for (size_t i = 0; i < s->n_files; i++) {
		if (!s->files[i].st)
			continue;
		names[n] = s->files[i].path;
		shards[n++] = s->files[i].st;
	}
	err = udfs_index_check(index->path,
			       index->map ? (const void *)index->map : "",
			       (size_t)index->size, n, names, shards);
	free(names);
	free(shards);
	return err;
}

/* Open every file of directory source path into s; *skipped receives
 * the metadata directories left out (for the note), or NULL. */
static int open_dir(udfs_source *s, const char *path, char **skipped)
{
	struct scan sc = {.label = path};
	size_t n_st = 0;
	int dfd, err;

	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return udfs_error(-errno, "%s: %s", path, strerror(errno));
	sc.r.dir = realpath(path, NULL);
	if (!sc.r.dir) {
		err = udfs_error(-errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	sc.r.blobs = snapshot_blobs(sc.r.dir);
	err = walk(&sc, dfd, NULL, 0);
	if (err)
		goto out;
	if (sc.n)
		qsort(sc.paths, sc.n, sizeof(char *), cmp_str);
	s->files = udfs_xcalloc(sc.n + 1, sizeof(*s->files));
	for (size_t i = 0; i < sc.n && !err; i++) {
		udfs_source_file *f = &s->files[s->n_files++];
		/* Messages name the file with its directory. */
		char *shown = udfs_xasprintf("%s/%s", path, sc.paths[i]);

		f->path = sc.paths[i];
		sc.paths[i] = NULL;
		err = open_file(dfd, f->path, shown, &sc.r, f);
		free(shown);
		n_st += f->kind == UDFS_FILE_SAFETENSORS;
	}
	if (!err && !n_st)
		err = udfs_error(
		    -EINVAL,
		    "%s: no .safetensors files at the top of the directory",
		    path);
	*skipped = sc.skipped;
	sc.skipped = NULL;
out:
	for (size_t i = 0; i < sc.n; i++)
		free(sc.paths[i]);
	free(sc.paths);
	free(sc.skipped);
	free(sc.r.blobs);
	free(sc.r.dir);
	close(dfd);
	return err;
}

static int open_single(udfs_source *s, const char *path)
{
	const char *base = strrchr(path, '/');

	if (!has_suffix(path, ST_SUFFIX))
		return udfs_error(
		    -EINVAL, "%s: not a .safetensors file or a model directory",
		    path);
	s->files = udfs_xcalloc(1, sizeof(*s->files));
	s->files[0].path = udfs_xstrdup(base ? base + 1 : path);
	s->n_files = 1;
	return open_file(AT_FDCWD, path, path, NULL, &s->files[0]);
}

int udfs_source_open(const char *path, udfs_source **out)
{
	struct src_priv *sp = NULL;
	udfs_source *s;
	char *skipped = NULL;
	struct stat st;
	int err;

	*out = NULL;
	if (stat(path, &st) < 0)
		return udfs_error(-errno, "%s: %s", path, strerror(errno));
	sp = udfs_xcalloc(1, sizeof(*sp));
	s = &sp->s;
	s->label = udfs_xstrdup(path);
	if (S_ISREG(st.st_mode))
		err = open_single(s, path);
	else if (S_ISDIR(st.st_mode))
		err = open_dir(s, path, &skipped);
	else
		err = udfs_error(-EINVAL,
				 "%s: not a regular file or a directory", path);
	if (!err)
		err = build_index(sp);
	if (!err)
		err = check_index(s);
	if (err)
		goto out;
	/* Contract of udfs(5): group and other bits only if every file has
	 * them, so private weights stay private in the store. */
	s->mode = 0644;
	for (size_t i = 0; i < s->n_files; i++)
		s->mode &= s->files[i].mode;
	if (skipped)
		udfs_warn(
		    "%s: skipped %s (git and Hugging Face metadata, not model files)",
		    path, skipped);
	*out = s;
	sp = NULL;
out:
	free(skipped);
	if (sp)
		udfs_source_close(&sp->s);
	return err;
}

void udfs_source_close(udfs_source *src)
{
	struct src_priv *sp = (struct src_priv *)src;

	if (!src)
		return;
	for (size_t i = 0; i < src->n_files; i++) {
		udfs_source_file *f = &src->files[i];

		udfs_st_free(f->st);
		if (f->map)
			munmap((void *)f->map, (size_t)f->size);
		free(f->real);
		free(f->path);
	}
	free(src->files);
	free(src->label);
	free(sp->idx);
	free(sp);
}

const udfs_st_tensor *udfs_source_find(const udfs_source *src, const char *name,
				       const udfs_source_file **file)
{
	const struct src_priv *sp = (const struct src_priv *)src;
	struct src_ent key = {.name = name};
	const struct src_ent *e;

	if (file)
		*file = NULL;
	if (!src || !sp->idx)
		return NULL;
	e = bsearch(&key, sp->idx, src->n_tensors, sizeof(*sp->idx), cmp_ent);
	if (!e)
		return NULL;
	if (file)
		*file = e->file;
	return e->t;
}

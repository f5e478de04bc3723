// SPDX-License-Identifier: MIT
/*
 * The directory tree inside a model directory of `udfs mount`. A model's
 * file paths may hold subdirectories ("original/params.json"); its files
 * are sorted by path (strcmp), so the files under any directory prefix
 * ("original/") form one contiguous range of the array. A directory is
 * that range and the prefix length: listing walks the range once, a lookup
 * is two binary searches, and nothing is built or stored per model.
 *
 * Inode numbers are stable: an inner directory is numbered from its model,
 * its depth and the index of its first file (both fixed: a model's files
 * never change), see fuse_i.h. Paths a damaged catalog could hold ("",
 * ".", "..", empty components) are never shown.
 */
#include "fuse/fuse_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

bool udfs_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > 255 || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return memchr(name, '/', len) == NULL && memchr(name, 0, len) == NULL;
}

/* Is every component of the rest of path (after a valid prefix) valid? */
static bool rest_ok(const char *rest)
{
	for (;;) {
		const char *slash = strchr(rest, '/');
		size_t len = slash ? (size_t)(slash - rest) : strlen(rest);

		if (!udfs_name_ok(rest, len))
			return false;
		if (!slash)
			return true;
		rest = slash + 1;
	}
}

void udfs_dir_of_model(const udfs_model *m, struct udfs_dir *d)
{
	d->lo = 0;
	d->hi = m->n_files;
	d->plen = 0;
	d->depth = 0;
}

fuse_ino_t udfs_dir_ino(const udfs_model *m, const struct udfs_dir *d)
{
	uint64_t key = ((uint64_t)d->lo << 10) | d->depth;

	if (d->depth == 0)
		return UDFS_DIR_INO(m->id);
	/* Past these bounds the numbers would collide: not served. */
	if (m->id >= (1ll << 31) || d->lo >= (1u << 22) || d->depth >= 1024)
		return 0;
	return UDFS_DIR_INO(m->id) + (key << 32);
}

/*
 * First index in [lo, hi) whose path does not sort before key (its first
 * klen bytes); with upper, the first whose path neither sorts before key
 * nor starts with it.
 */
static size_t bound(const udfs_model *m, size_t lo, size_t hi, const char *key,
		    size_t klen, bool upper)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strncmp(m->files[mid].path, key, klen);

		if (c < 0 || (upper && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The subdirectory of d whose files start with path[0, klen) ("a/b/"). */
static void sub_of(const udfs_model *m, const struct udfs_dir *d,
		   const char *path, size_t klen, struct udfs_dir *sub)
{
	sub->lo = bound(m, d->lo, d->hi, path, klen, false);
	sub->hi = bound(m, sub->lo, d->hi, path, klen, true);
	sub->plen = klen;
	sub->depth = d->depth + 1;
}

bool udfs_dir_next(const udfs_model *m, const struct udfs_dir *d, size_t *i,
		   struct udfs_dirent *e)
{
	const char *path, *rest, *slash;

	if (*i >= d->hi)
		return false;
	memset(e, 0, sizeof(*e));
	path = m->files[*i].path;
	rest = path + d->plen;
	slash = strchr(rest, '/');
	e->name = rest;
	e->len = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!slash) {
		e->kind = rest_ok(rest) ? UDFS_ENT_FILE : UDFS_ENT_NONE;
		e->file = &m->files[*i];
		e->ino = UDFS_FILE_INO(e->file->ino);
		(*i)++;
		return true;
	}
	sub_of(m, d, path, d->plen + e->len + 1, &e->sub);
	*i = e->sub.hi > *i ? e->sub.hi : *i + 1;
	e->ino = udfs_dir_ino(m, &e->sub);
	e->kind =
	    udfs_name_ok(rest, e->len) && e->ino ? UDFS_ENT_DIR : UDFS_ENT_NONE;
	return true;
}

int udfs_dir_lookup(const udfs_model *m, const struct udfs_dir *d,
		    const char *name, struct udfs_dirent *e)
{
	size_t len = strlen(name), klen;
	char *key;
	size_t i;
	int err = -ENOENT;

	if (!udfs_name_ok(name, len) || d->lo >= d->hi)
		return -ENOENT;
	/* The prefix is the start of any path in the range. */
	klen = d->plen + len;
	key = malloc(klen + 2);
	if (!key)
		return -ENOMEM;
	memcpy(key, m->files[d->lo].path, d->plen);
	memcpy(key + d->plen, name, len);
	/* A file: the whole path, its NUL included; else a directory. */
	key[klen] = 0;
	i = bound(m, d->lo, d->hi, key, klen + 1, false);
	if (i < d->hi && strcmp(m->files[i].path, key) == 0) {
		err = 0;
	} else {
		key[klen] = '/';
		key[klen + 1] = 0;
		i = bound(m, d->lo, d->hi, key, klen + 1, false);
		if (i < d->hi && strncmp(m->files[i].path, key, klen + 1) == 0)
			err = 0;
	}
	free(key);
	if (err)
		return err;
	return udfs_dir_next(m, d, &i, e) && e->kind != UDFS_ENT_NONE ? 0
								      : -ENOENT;
}

unsigned udfs_dir_nlink(const udfs_model *m, const struct udfs_dir *d)
{
	struct udfs_dirent e;
	unsigned n = 2;
	size_t i = d->lo;

	while (udfs_dir_next(m, d, &i, &e))
		n += e.kind == UDFS_ENT_DIR;
	return n;
}

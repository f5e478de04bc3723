// SPDX-License-Identifier: MIT
/*
 * Removing from a store: `udfs rm` (catalog rows first, in one
 * transaction, then the bytes) and `udfs gc` (files no catalog row
 * references: interrupted adds, removed models whose unlink failed).
 * Kept apart from compress.c so that `udfs` does not link the compressor
 * (and with it OpenBLAS).
 */
#include "store/admin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "store/catalog.h"

/* The -EBUSY of rm of a base that deps models use, naming a few. */
static int in_use(udfs_catalog *cat, const char *name, int deps)
{
	enum { SHOWN = 3 };
	udfs_model_info *v = NULL;
	char users[SHOWN * 260] = ""; /* names are < 256 bytes */
	size_t n = 0, len = 0;
	int named = 0;

	if (udfs_catalog_list(cat, &v, &n) == 0)
		for (size_t k = 0; k < n && named < SHOWN; k++)
			if (!strcmp(v[k].base, name))
				len += (size_t)snprintf(
				    users + len, sizeof(users) - len, "%s%s",
				    named++ ? ", " : "", v[k].name);
	free(v);
	if (deps > named)
		snprintf(users + len, sizeof(users) - len, "%s%d more",
			 named ? " and " : "", deps - named);
	return udfs_error(
	    -EBUSY,
	    "base \"%s\" is used by %d delta model%s (%s); remove them first",
	    name, deps, deps == 1 ? "" : "s", users);
}

int udfs_store_rm(udfs_store *s, const char *name)
{
	udfs_catalog *cat = udfs_store_catalog(s);
	char *storage = NULL, *path;
	int64_t id;
	int deps = 0, err;

	err = udfs_catalog_begin(cat);
	if (err)
		return err;
	err = udfs_catalog_model_id(cat, name, &id);
	if (err == -ENOENT)
		err = udfs_error(-ENOENT, "no model named \"%s\" in %s", name,
				 udfs_store_dir(s));
	if (!err)
		err = udfs_catalog_dependents(cat, id, &deps);
	if (!err && deps)
		err = in_use(cat, name, deps);
	if (!err)
		err = udfs_catalog_delete_model(cat, id, &storage);
	if (!err && !udfs_storage_path_ok(storage))
		err = udfs_error(
		    -EIO,
		    "model \"%s\": storage path \"%s\" is not inside the store; not removed",
		    name, storage);
	if (!err)
		err = udfs_catalog_commit(cat);
	if (err) {
		udfs_catalog_rollback(cat);
		free(storage);
		return err;
	}
	/* The rows are gone; the bytes go now (open readers keep their
	 * descriptors). A failure here leaves garbage for gc, not damage. */
	path = udfs_xasprintf("%s/%s", udfs_store_dir(s), storage);
	udfs_rm_tree(path);
	free(path);
	free(storage);
	return 0;
}

static bool referenced(char **paths, size_t n, const char *rel)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(paths[i], rel))
			return true;
	return false;
}

/* True when a running writer holds path locked (its tmp pack or dir). */
static bool busy(const char *path)
{
	/* O_NONBLOCK: a fifo someone left in tmp/ must not hang gc. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	bool locked = false;

	if (fd < 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK)
		locked = true;
	close(fd);
	return locked;
}

/* Bytes an entry of packs/, bases/ or tmp/ holds (one level deep). */
static uint64_t entry_bytes(const char *abs, const struct stat *st)
{
	uint64_t bytes = (uint64_t)st->st_blocks * 512;
	DIR *sd;
	struct dirent *se;

	if (!S_ISDIR(st->st_mode) || !(sd = opendir(abs)))
		return bytes;
	while ((se = readdir(sd))) {
		char *sub = udfs_xasprintf("%s/%s", abs, se->d_name);
		struct stat ss;

		if (se->d_name[0] != '.' && lstat(sub, &ss) == 0)
			bytes += (uint64_t)ss.st_blocks * 512;
		free(sub);
	}
	closedir(sd);
	return bytes;
}

int udfs_store_gc(udfs_store *s, bool dry_run, udfs_gc_fn each, void *ctx,
		  uint64_t *freed, size_t *files)
{
	static const char *const dirs[] = {"tmp", "packs", "bases"};
	udfs_catalog *cat = udfs_store_catalog(s);
	char **paths = NULL;
	size_t n = 0;
	int err;

	*freed = 0;
	*files = 0;
	/* Hold the writer lock so no add commits a pack we are judging. */
	err = udfs_catalog_begin(cat);
	if (!err)
		err = udfs_catalog_storage_paths(cat, &paths, &n);
	for (size_t d = 0; d < UDFS_ARRAY_SIZE(dirs) && !err; d++) {
		char *dir = udfs_xasprintf("%s/%s", udfs_store_dir(s), dirs[d]);
		DIR *dp = opendir(dir);
		struct dirent *e;

		while (dp && (e = readdir(dp))) {
			char *rel, *abs;
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			rel = udfs_xasprintf("%s/%s", dirs[d], e->d_name);
			abs = udfs_xasprintf("%s/%s", udfs_store_dir(s), rel);
			if (!referenced(paths, n, rel) && !busy(abs) &&
			    lstat(abs, &st) == 0) {
				uint64_t bytes = entry_bytes(abs, &st);

				if (each)
					each(rel, bytes, ctx);
				if (!dry_run)
					udfs_rm_tree(abs);
				*freed += bytes;
				(*files)++;
			}
			free(abs);
			free(rel);
		}
		if (dp)
			closedir(dp);
		free(dir);
	}
	udfs_catalog_rollback(cat);
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	return err;
}

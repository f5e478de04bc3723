// SPDX-License-Identifier: MIT
/*
 * Removing from a store: `udfs rm` (catalog rows, in one transaction) and
 * `udfs gc` (files nothing references: removed models, interrupted adds).
 * Part of the read library: `udfs` runs them without linking the write
 * library (and with it OpenBLAS).
 *
 * What a store may delete, when readers on other nodes serve snapshots of
 * older generations (udfs(5)): a pack or base goes only when neither the
 * live catalog nor any snapshot a reader may still use (current, named by
 * a live lease, or superseded less than the grace period ago) references
 * it; a tmp/ entry only when no writer holds its lock and it is older than
 * the grace period.
 */
#include "store/admin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "store/catalog.h"
#include "store/cluster.h"

/* What gc may not delete, and what it may. */
struct gc_view {
	char **paths; /* storage paths some catalog a reader may use names */
	size_t n;
	double now;   /* the filesystem's clock */
	double grace; /* seconds */
};

static void view_free(struct gc_view *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->paths[i]);
	free(v->paths);
}

static int add_paths(struct gc_view *v, udfs_catalog *cat)
{
	char **p = NULL;
	size_t n = 0;
	int err = udfs_catalog_storage_paths(cat, &p, &n);

	if (err)
		return err;
	v->paths = udfs_xrealloc(v->paths, (v->n + n + 1) * sizeof(*v->paths));
	if (n)
		memcpy(v->paths + v->n, p, n * sizeof(*p));
	v->n += n;
	free(p);
	return 0;
}

/* Under the writer lock: the live catalog's paths and those of every
 * snapshot that stays (pruning the others unless dry_run). A snapshot that
 * stays but cannot be read makes gc delete nothing. */
static int view_build(udfs_store *s, bool dry_run, struct gc_view *v)
{
	const char *dir = udfs_store_dir(s);
	int64_t *gens = NULL, live_gen;
	size_t n = 0;
	int err = udfs_catalog_generation(udfs_store_catalog(s), &live_gen);

	if (!err)
		err = add_paths(v, udfs_store_catalog(s));
	if (!err)
		err = udfs_store_gc_view(s, dry_run, &gens, &n, &v->now);
	v->grace = udfs_cluster_grace(dir);
	for (size_t i = 0; i < n && !err; i++) {
		char path[PATH_MAX];
		udfs_catalog *cat = NULL;

		if (gens[i] != live_gen) {
			err = udfs_cluster_snapshot_path(dir, gens[i], path,
							 sizeof(path));
			if (err)
				break;
			err = udfs_catalog_open(path, true, false, &cat);
			if (!err)
				err = add_paths(v, cat);
			if (err)
				err = udfs_error(
				    err,
				    "%s (a reader may still use it; nothing removed)",
				    udfs_error_msg(err));
			udfs_catalog_close(cat);
		}
	}
	free(gens);
	return err;
}

static bool referenced(const struct gc_view *v, const char *rel)
{
	for (size_t i = 0; i < v->n; i++)
		if (!strcmp(v->paths[i], rel))
			return true;
	return false;
}

/* May tmp/ entry abs (st) go? Not while a writer holds it (a pack) or its
 * companion lock file (an add-base directory), nor before it is older than
 * the grace period: an interrupted add's leftover, not one in progress. */
static bool tmp_abandoned(const struct gc_view *v, const char *abs,
			  const struct stat *st)
{
	char *lock = udfs_xasprintf("%s.lock", abs);
	double mtime = (double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec * 1e-9;
	bool busy = udfs_cluster_tmp_busy(abs) ||
		    (S_ISDIR(st->st_mode) && udfs_cluster_tmp_busy(lock));

	free(lock);
	return !busy && v->now - mtime >= v->grace;
}

static uint64_t entry_bytes(const char *abs, const struct stat *st)
{
	uint64_t sum = (uint64_t)st->st_blocks * 512;
	DIR *d = S_ISDIR(st->st_mode) ? opendir(abs) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char *sub = udfs_xasprintf("%s/%s", abs, e->d_name);
		struct stat ss;

		if (e->d_name[0] != '.' && lstat(sub, &ss) == 0)
			sum += (uint64_t)ss.st_blocks * 512;
		free(sub);
	}
	if (d)
		closedir(d);
	return sum;
}

/* Remove (or with dry_run count) what may go in STORE/sub; with only, just
 * that storage path. */
static void sweep(udfs_store *s, const struct gc_view *v, const char *sub,
		  const char *only, bool dry_run, udfs_gc_fn each, void *ctx,
		  uint64_t *freed, size_t *files)
{
	char *dir = udfs_xasprintf("%s/%s", udfs_store_dir(s), sub);
	DIR *dp = opendir(dir);
	struct dirent *e;

	while (dp && (e = readdir(dp))) {
		char *rel = udfs_xasprintf("%s/%s", sub, e->d_name);
		char *abs = udfs_xasprintf("%s/%s", udfs_store_dir(s), rel);
		struct stat st;
		bool drop = e->d_name[0] != '.' &&
			    (!only || !strcmp(only, rel)) &&
			    lstat(abs, &st) == 0;

		if (drop && !strcmp(sub, "tmp"))
			drop = tmp_abandoned(v, abs, &st);
		else if (drop)
			drop = !referenced(v, rel);
		if (drop) {
			uint64_t bytes = entry_bytes(abs, &st);

			if (each)
				each(rel, bytes, ctx);
			*freed += bytes;
			(*files)++;
			if (!dry_run)
				udfs_rm_tree(abs);
		}
		free(abs);
		free(rel);
	}
	if (dp)
		closedir(dp);
	free(dir);
}

static int collect(udfs_store *s, const char *only, bool dry_run,
		   udfs_gc_fn each, void *ctx, uint64_t *freed, size_t *files)
{
	static const char *const dirs[] = {"tmp", "packs", "bases"};
	struct gc_view v = {0};
	int err;

	*freed = 0;
	*files = 0;
	/* The writer lock: no add commits a pack while we judge it. */
	err = udfs_store_begin(s);
	if (!err)
		err = view_build(s, dry_run, &v);
	for (size_t d = 0; d < UDFS_ARRAY_SIZE(dirs) && !err; d++)
		if (!only || !strncmp(only, dirs[d], strlen(dirs[d])))
			sweep(s, &v, dirs[d], only, dry_run, each, ctx, freed,
			      files);
	udfs_store_rollback(s);
	view_free(&v);
	return err;
}

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
	udfs_catalog *cat;
	char *storage = NULL;
	uint64_t freed;
	size_t files;
	int64_t id;
	int deps = 0, err;

	err = udfs_store_begin(s);
	if (err)
		return err;
	cat = udfs_store_catalog(s);
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
	if (err) {
		udfs_store_rollback(s);
		free(storage);
		return err;
	}
	err = udfs_store_commit(s);
	/* The rows are gone. The bytes go now only when no reader may still
	 * use them (on a local store with no mount holding the model);
	 * otherwise a later gc removes them. */
	if (!err && collect(s, storage, false, NULL, NULL, &freed, &files) < 0)
		udfs_error_clear();
	free(storage);
	return err;
}

int udfs_store_gc(udfs_store *s, bool dry_run, udfs_gc_fn each, void *ctx,
		  uint64_t *freed, size_t *files)
{
	return collect(s, NULL, dry_run, each, ctx, freed, files);
}

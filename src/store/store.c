// SPDX-License-Identifier: MIT
/*
 * A store on disk and the models loaded from it. Loaded models live in a
 * small registry keyed by catalog id, so that every open file of one model
 * shares one in-memory copy; a model stays alive while anyone holds a
 * reference, even after `udfs rm` dropped it from the catalog (its pack
 * and base descriptors stay open, so reads keep working).
 *
 * Readers never open the live catalog: they serve the immutable snapshot
 * the store's pointer names and follow the pointer as writers publish new
 * generations (cluster.h, udfs(5)), so that any number of processes on
 * any number of nodes read one store safely. Writers take the store's
 * writer lock, change the live catalog in one transaction and publish.
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
#include <time.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/util.h"
#include "store/catalog.h"
#include "store/cluster.h"

struct udfs_store {
	char *dir;
	udfs_catalog *cat; /* readers: the snapshot of generation gen */
	int64_t gen;
	bool frozen;	      /* a format 1 catalog read once, not followed */
	udfs_catalog *live;   /* writers: the working copy of the catalog,
				 between udfs_store_begin and commit or
				 rollback */
	char *live_tmp;	      /* ... and its path (local temporary file) */
	int64_t published;    /* generation of the last publish */
	int lock_fd;	      /* the writer lock while held, else -1 */
	bool rdonly;	      /* opened UDFS_STORE_RDONLY: never writes */
	pthread_mutex_t lock; /* catalog calls (and so model loads) */
	pthread_mutex_t reg;  /* the registry and every model's refs: held
				 only briefly, so that readers taking and
				 dropping references never wait on SQLite */
	udfs_model **loaded;  /* registry of live models */
	size_t n_loaded;
	/* Following (udfs_store_follow): this process's lease. */
	char *lease;		/* its name, NULL when not following */
	pthread_t lease_thread; /* refreshes it */
	bool lease_started;
	bool lease_stop;	   /* under lock */
	pthread_cond_t lease_cond; /* with lock: wakes the thread to stop */

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

static int make_dirs(const char *dir, bool exist_ok)
{
	static const char *const sub[] = {"bases", "packs", "tmp",
					  UDFS_SNAPSHOT_DIR, UDFS_LEASE_DIR};
	int err = 0;

	for (size_t i = 0; i < UDFS_ARRAY_SIZE(sub) && !err; i++) {
		char *path = udfs_xasprintf("%s/%s", dir, sub[i]);

		if (mkdir(path, 0755) < 0 && !(exist_ok && errno == EEXIST))
			err =
			    udfs_error(-errno, "%s: %s", path, strerror(errno));
		free(path);
	}
	return err;
}

/* ---- writers: the lock, the live catalog, publishing ------------------ */

static char *live_path(const udfs_store *s)
{
	return udfs_xasprintf("%s/catalog.db", s->dir);
}

/*
 * Writers never change a catalog file in place. Under the writer lock,
 * a writer copies the current catalog to a local temporary file
 * (s->live_tmp), changes the copy in one transaction, then publishes it:
 * copied into snapshots/<gen>.db, then over catalog.db (each written to
 * tmp/ and renamed), then the pointer replaced. Every published file is a new
 * file whose content never changes, so a client of a network filesystem that
 * caches file pages can see an old name for a moment, but never a mix of old
 * and new bytes; a stale name is caught by the generation numbers (latest_gen).
 */

static bool snapshot_exists(udfs_store *s, int64_t gen)
{
	char path[PATH_MAX];
	struct stat st;

	return udfs_cluster_snapshot_path(s->dir, gen, path, sizeof(path)) ==
		   0 &&
	       stat(path, &st) == 0;
}

/* The latest published generation: the pointer, or a newer snapshot a
 * writer killed before it replaced the pointer left. -1 when none.
 * Under the writer lock: a missing name is never cached (a lookup that
 * fails asks the server), so probing upward finds the newest. */
static int latest_gen(udfs_store *s, int64_t *gen, int64_t *pointer,
		      uint32_t *stamp)
{
	int err = udfs_cluster_pointer_read(s->dir, gen, stamp);

	if (err == -ENOENT) {
		*gen = -1;
		*stamp = 0;
		err = 0;
	}
	*pointer = *gen;
	while (snapshot_exists(s, *gen + 1))
		++*gen;
	return err;
}

/* Generation of the catalog file path (opened immutable: no lock files,
 * and it is never written while we hold the writer lock). */
static int file_gen(const char *path, int64_t *gen)
{
	udfs_catalog *c = NULL;
	int err = udfs_catalog_open(path, true, false, &c);

	if (!err)
		err = udfs_catalog_generation(c, gen);
	udfs_catalog_close(c);
	return err;
}

/*
 * Copy catalog file from to a local temporary file as this writer's
 * working catalog and open it for writing. SQLite writes pages of a few
 * KiB one at a time; on a network filesystem each is a round trip, so
 * the working copy lives on local disk and reaches the store in a few
 * large writes when published.
 */
static int open_copy(udfs_store *s, const char *from)
{
	const char *tmpdir = getenv("TMPDIR");
	udfs_catalog *src = NULL;
	int fd, err;

	free(s->live_tmp);
	s->live_tmp = udfs_xasprintf("%s/udfs-catalog.XXXXXX",
				     tmpdir && *tmpdir ? tmpdir : "/tmp");
	fd = mkstemp(s->live_tmp); /* empty: what VACUUM INTO accepts */
	if (fd < 0) {
		err =
		    udfs_error(-errno, "%s: %s", s->live_tmp, strerror(errno));
		free(s->live_tmp);
		s->live_tmp = NULL;
		return err;
	}
	close(fd);
	err = udfs_catalog_open(from, true, false, &src);
	if (!err)
		err = udfs_catalog_snapshot(src, s->live_tmp);
	udfs_catalog_close(src);
	if (!err)
		err = udfs_catalog_open(s->live_tmp, false, false, &s->live);
	return err;
}

/* Copy the (closed) working catalog to a new file in the store's tmp/,
 * fsync it and rename it to path. */
static int place_copy(udfs_store *s, const char *path)
{
	char *lease = udfs_cluster_lease_name();
	char *tmp = udfs_xasprintf("%s/tmp/%s.catalog", s->dir, lease);
	char *dir = udfs_xstrdup(path);
	unsigned char *buf = udfs_xmalloc(1 << 20);
	int in = open(s->live_tmp, O_RDONLY | O_CLOEXEC);
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t r = 0;
	int err = 0;

	if (in < 0 || out < 0)
		err = -errno;
	while (!err && (r = read(in, buf, 1 << 20)) > 0)
		err = udfs_write_full(out, buf, (size_t)r);
	if (!err && r < 0)
		err = -errno;
	if (!err && fsync(out) < 0)
		err = -errno;
	if (out >= 0 && close(out) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	*strrchr(dir, '/') = '\0';
	if (!err)
		err = udfs_fsync_dir(dir);
	if (err) {
		unlink(tmp);
		err = udfs_error(err, "%s: %s", path, strerror(-err));
	}
	if (in >= 0)
		close(in);
	free(buf);
	free(dir);
	free(tmp);
	free(lease);
	return err;
}

/*
 * Publish the working catalog (committed): snapshot, then catalog.db,
 * then the pointer. The snapshot's rename is the commit point: a writer
 * killed after it leaves a state the next writer completes (latest_gen
 * finds the snapshot); an error before it leaves the store as it was.
 * The working copy is closed afterwards.
 */
static int publish(udfs_store *s)
{
	char *live = live_path(s), snap[PATH_MAX];
	uint32_t stamp = 0;
	int64_t gen = 0;
	int err = udfs_catalog_generation(s->live, &gen);

	udfs_catalog_close(s->live);
	s->live = NULL;
	if (!err)
		err =
		    udfs_cluster_snapshot_path(s->dir, gen, snap, sizeof(snap));
	if (!err)
		err = place_copy(s, snap);
	if (err) {
		free(live);
		return err;
	}
	s->published = gen;
	err = udfs_catalog_file_stamp(s->live_tmp, &stamp);
	if (!err)
		err = place_copy(s, live);
	if (!err)
		err = udfs_cluster_pointer_write(s->dir, gen, stamp);
	if (err)
		udfs_warn(
		    "committed, but not yet visible to readers (the next writer finishes it): %s",
		    udfs_error_msg(err));
	udfs_error_clear();
	free(live);
	return 0;
}

/* Drop the working copy (nothing of it was published). */
static void discard_copy(udfs_store *s)
{
	udfs_catalog_close(s->live);
	s->live = NULL;
	if (s->live_tmp) {
		char *journal = udfs_xasprintf("%s-journal", s->live_tmp);

		unlink(s->live_tmp);
		unlink(journal);
		free(journal);
	}
	free(s->live_tmp);
	s->live_tmp = NULL;
}

/* Remove the snapshots nobody may still need (cluster.h). With keep, the
 * generations that stay are returned (caller frees), and nothing is
 * removed when dry_run. Under the writer lock. */
static int prune(udfs_store *s, int64_t current, bool dry_run, int64_t **keep,
		 size_t *n_keep)
{
	udfs_snapshot_info *list = NULL;
	int64_t *leased = NULL;
	size_t n = 0, n_leased = 0;
	double now, grace = udfs_cluster_grace(s->dir);
	int err = udfs_cluster_now(s->lock_fd, &now);

	if (!err)
		err = udfs_cluster_leases(s->dir, now, grace, !dry_run, &leased,
					  &n_leased);
	if (!err)
		err = udfs_cluster_snapshots(s->dir, &list, &n);
	for (size_t i = 0; i < n && !err; i++) {
		char path[PATH_MAX];

		if (udfs_cluster_snapshot_needed(list, n, i, current, leased,
						 n_leased, now, grace)) {
			if (keep) {
				*keep = udfs_xrealloc(
				    *keep, (*n_keep + 1) * sizeof(**keep));
				(*keep)[(*n_keep)++] = list[i].gen;
			}
			continue;
		}
		if (!dry_run &&
		    udfs_cluster_snapshot_path(s->dir, list[i].gen, path,
					       sizeof(path)) == 0)
			unlink(path);
	}
	free(list);
	free(leased);
	return err;
}

/* A format 1 catalog is upgraded in place, once: WAL to a rollback
 * journal (which checkpoints the WAL) and the current user_version. */
static int upgrade_in_place(udfs_store *s)
{
	char *live = live_path(s);
	udfs_catalog *c = NULL;
	int err = udfs_catalog_open(live, false, false, &c);

	udfs_catalog_close(c);
	free(live);
	return err;
}

/*
 * Take the writer lock and open a working copy of the newest catalog. A
 * generation that a killed writer committed but did not finish
 * publishing, or a catalog.db edited by hand, is published first.
 */
static int writer_enter(udfs_store *s)
{
	char *live = live_path(s), from[PATH_MAX];
	int64_t latest = -1, pointer = -1, gen = -1;
	uint32_t stamp = 0, live_stamp = 0;
	int err = udfs_cluster_lock(s->dir, &s->lock_fd);

	if (!err)
		err = make_dirs(s->dir, true);
	if (!err)
		err = latest_gen(s, &latest, &pointer, &stamp);
	if (!err && latest < 0)
		err = upgrade_in_place(s);
	if (!err)
		err = file_gen(live, &gen);
	if (!err)
		err = udfs_catalog_file_stamp(live, &live_stamp);
	/* A network client may fail to open a name another client just
	 * replaced (ESTALE, or SQLite's "cannot open"): the newest snapshot
	 * holds the same catalog. Without one, catalog.db is all there is. */
	if ((err == -ESTALE || err == -ENOENT) && latest >= 0) {
		udfs_error_clear();
		err = 0;
		gen = -1;
	}
	if (err)
		goto out;
	/* Older than the newest snapshot: this client still sees an old
	 * catalog.db, or its writer was killed before replacing it. */
	if (gen < latest)
		err = udfs_cluster_snapshot_path(s->dir, latest, from,
						 sizeof(from));
	else
		snprintf(from, sizeof(from), "%s", live);
	if (!err)
		err = open_copy(s, from);
	if (!err &&
	    (gen != latest || pointer != latest || stamp != live_stamp)) {
		err = publish(s);
		if (!err)
			err = udfs_cluster_snapshot_path(s->dir, s->published,
							 from, sizeof(from));
		if (!err)
			err = open_copy(s, from);
	}
out:
	free(live);
	return err;
}

static void writer_leave(udfs_store *s)
{
	discard_copy(s);
	udfs_cluster_unlock(s->lock_fd);
	s->lock_fd = -1;
}

int udfs_store_begin(udfs_store *s)
{
	int err;

	if (s->rdonly)
		return udfs_error(-EROFS, "store %s: opened read-only", s->dir);
	err = writer_enter(s);
	if (!err)
		err = udfs_catalog_begin(s->live);
	if (err)
		writer_leave(s);
	return err;
}

static int switch_to(udfs_store *s, int64_t gen);

int udfs_store_commit(udfs_store *s)
{
	int err = udfs_catalog_commit(s->live);

	if (!err)
		err = publish(s);
	if (!err)
		prune(s, s->published, false, NULL, NULL);
	writer_leave(s);
	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	switch_to(s, s->published);
	pthread_mutex_unlock(&s->lock);
	udfs_error_clear();
	return 0;
}

void udfs_store_rollback(udfs_store *s)
{
	if (s->lock_fd < 0)
		return;
	if (s->live)
		udfs_catalog_rollback(s->live);
	writer_leave(s);
}

int udfs_store_gc_view(udfs_store *s, bool dry_run, int64_t **gens, size_t *n,
		       double *now)
{
	int64_t gen;
	int err;

	*gens = NULL;
	*n = 0;
	if (!s->live)
		return udfs_error(
		    -EINVAL, "store %s: not in a writer transaction", s->dir);
	err = udfs_catalog_generation(s->live, &gen);
	if (!err)
		err = udfs_cluster_now(s->lock_fd, now);
	return err ? err : prune(s, gen, dry_run, gens, n);
}

int udfs_store_init(const char *dir)
{
	char *path = NULL;
	udfs_catalog *cat = NULL;
	udfs_store *s = NULL;
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
	err = make_dirs(dir, false);
	if (err)
		goto out;
	path = udfs_xasprintf("%s/catalog.db", dir);
	err = udfs_catalog_open(path, false, true, &cat);
	udfs_catalog_close(cat);
	/* Publish generation 0, so that readers have a snapshot. */
	if (!err)
		err = udfs_store_open(dir, 0, &s);
	udfs_store_close(s);
	if (!err)
		err = udfs_fsync_dir(dir);
out:
	free(path);
	return err;
}

/* Open snapshot gen as the readers' catalog (s->lock held or s private). */
static int open_snapshot(udfs_store *s, int64_t gen, udfs_catalog **cat)
{
	char path[PATH_MAX];
	struct stat st;
	int err = udfs_cluster_snapshot_path(s->dir, gen, path, sizeof(path));

	/* The missing case is told apart: a newer generation replaced it. */
	if (!err && stat(path, &st) < 0)
		err = -errno;
	else if (!err)
		err = udfs_catalog_open(path, true, false, cat);
	return err;
}

/*
 * Open the snapshot the pointer names now. One that vanishes between the
 * two reads was pruned because a newer one is current: read again.
 */
static int open_current(udfs_store *s, int64_t *gen, udfs_catalog **cat)
{
	uint32_t stamp;
	int err = 0;

	for (int tries = 0; tries < 20; tries++) {
		err = udfs_cluster_pointer_read(s->dir, gen, &stamp);
		if (err == -ENOENT)
			return udfs_error(
			    -ENOENT,
			    "%s: the store has no %s file (damaged store?)",
			    s->dir, UDFS_POINTER_FILE);
		if (err)
			return err;
		err = open_snapshot(s, *gen, cat);
		if (err != -ENOENT)
			break;
		usleep(10000);
	}
	if (err == -ENOENT)
		err = udfs_error(
		    -EIO, "%s: snapshot of generation %" PRId64 " is missing",
		    s->dir, *gen);
	return err;
}

/* Publish when the store has no (or a stale) snapshot: the first open of
 * a format 1 store, or a writer killed between its commit and publish
 * (after its snapshot, the commit point, a newer one than the pointer's;
 * after catalog.db, another stamp). */
static int catch_up(udfs_store *s)
{
	int64_t gen;
	uint32_t stamp, live_stamp;
	char *live = live_path(s);
	int err = udfs_cluster_pointer_read(s->dir, &gen, &stamp);
	bool missing = err == -ENOENT;
	bool ahead = !err && snapshot_exists(s, gen + 1);

	if (!err && udfs_catalog_file_stamp(live, &live_stamp) < 0) {
		/* A reader that may not read catalog.db serves what is
		 * published. */
		udfs_error_clear();
		live_stamp = stamp;
	}
	free(live);
	if (missing || (!err && (stamp != live_stamp || ahead))) {
		udfs_error_clear();
		err = writer_enter(s);
		writer_leave(s);
		/* Someone who cannot write serves what is published. */
		if (!missing &&
		    (err == -EACCES || err == -EROFS || err == -EPERM)) {
			udfs_error_clear();
			err = 0;
		}
	}
	return err;
}

/* A format 1 store that this process cannot upgrade: read catalog.db
 * immutable, once. */
static int open_frozen(udfs_store *s)
{
	char *path = live_path(s);
	int err;

	udfs_error_clear();
	err = udfs_catalog_open(path, true, false, &s->cat);
	free(path);
	s->frozen = !err;
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
	free(path);
	s = udfs_xcalloc(1, sizeof(*s));
	s->dir = udfs_xstrdup(dir);
	s->lock_fd = -1;
	s->rdonly = flags & UDFS_STORE_RDONLY;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->reg, NULL);
	pthread_cond_init(&s->lease_cond, NULL);
	pthread_mutex_init(&s->fds, NULL);
	s->lazy_fds = flags & UDFS_STORE_LAZY_FDS;
	err = catch_up(s);
	if ((err == -EACCES || err == -EROFS || err == -EPERM) &&
	    (flags & UDFS_STORE_RDONLY))
		err = open_frozen(s);
	else if (!err)
		err = open_current(s, &s->gen, &s->cat);
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
	if (s->lease_started) {
		pthread_mutex_lock(&s->lock);
		s->lease_stop = true;
		pthread_cond_signal(&s->lease_cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->lease_thread, NULL);
	}
	if (s->lease)
		udfs_cluster_lease_remove(s->dir, s->lease);
	udfs_store_rollback(s);
	udfs_catalog_close(s->cat);
	pthread_cond_destroy(&s->lease_cond);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->reg);
	pthread_mutex_destroy(&s->fds);
	free(s->lease);
	free(s->loaded);
	free(s->dir);
	free(s);
}

bool udfs_store_frozen(const udfs_store *s) { return s->frozen; }

/* ---- readers: following the pointer, leases --------------------------- */

/* Generations this process still serves: the current one and those its
 * loaded models came from. Under s->lock. Caller frees; NULL when out of
 * memory. */
static int64_t *served(udfs_store *s, size_t *n)
{
	int64_t *gens;

	pthread_mutex_lock(&s->reg);
	gens = calloc(s->n_loaded + 1, sizeof(*gens));
	if (!gens) {
		pthread_mutex_unlock(&s->reg);
		return NULL;
	}
	gens[0] = s->gen;
	*n = 1;
	for (size_t i = 0; i < s->n_loaded; i++) {
		size_t j = 0;

		while (j < *n && gens[j] != s->loaded[i]->generation)
			j++;
		if (j == *n)
			gens[(*n)++] = s->loaded[i]->generation;
	}
	pthread_mutex_unlock(&s->reg);
	return gens;
}

/* Write this process's lease (when following). Under s->lock. */
static int lease_refresh(udfs_store *s)
{
	size_t n;
	int64_t *gens;
	int err;

	if (!s->lease)
		return 0;
	gens = served(s, &n);
	if (!gens)
		return udfs_error(-ENOMEM, "out of memory");
	err = udfs_cluster_lease_write(s->dir, s->lease, gens, n);
	free(gens);
	return err;
}

/* Serve generation gen from now on: models still in it count as of gen,
 * the others keep the generation they were loaded from. Under s->lock. */
static int switch_to(udfs_store *s, int64_t gen)
{
	udfs_catalog *cat = NULL;
	int err;

	if (s->frozen || gen == s->gen)
		return 0;
	err = open_snapshot(s, gen, &cat);
	if (err == -ENOENT)
		err = open_current(s, &gen, &cat);
	if (err)
		return err;
	udfs_catalog_close(s->cat);
	s->cat = cat;
	s->gen = gen;
	pthread_mutex_lock(&s->reg);
	for (size_t i = 0; i < s->n_loaded; i++) {
		bool has = false;

		if (udfs_catalog_has_model(cat, s->loaded[i]->id, &has) == 0 &&
		    has)
			s->loaded[i]->generation = gen;
	}
	pthread_mutex_unlock(&s->reg);
	lease_refresh(s);
	udfs_error_clear();
	return 0;
}

static void *lease_main(void *arg)
{
	udfs_store *s = arg;
	double grace = udfs_cluster_grace(s->dir);
	double every = UDFS_MIN(UDFS_MAX(grace / 4, 1.0), 60.0);

	pthread_mutex_lock(&s->lock);
	while (!s->lease_stop) {
		struct timespec ts;
		double t;

		clock_gettime(CLOCK_REALTIME, &ts);
		t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + every;
		ts.tv_sec = (time_t)t;
		ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
		pthread_cond_timedwait(&s->lease_cond, &s->lock, &ts);
		if (!s->lease_stop)
			lease_refresh(s);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int udfs_store_follow_check(udfs_store *s)
{
	char *leases = udfs_xasprintf("%s/%s", s->dir, UDFS_LEASE_DIR);
	int err = 0;

	if (s->frozen)
		err = udfs_error(
		    -EROFS,
		    "%s: a format 1 store that this process may not upgrade: serving its catalog as it is now, without following changes (run `udfs gc %s` once as its owner to upgrade it)",
		    s->dir, s->dir);
	else if (access(leases, W_OK) < 0)
		err = udfs_error(
		    -errno,
		    "%s: %s: following changes, but gc protects what this mount serves only for the grace period after a change (udfs(5))",
		    leases, strerror(errno));
	free(leases);
	return err;
}

int udfs_store_follow(udfs_store *s)
{
	int err;

	if (s->frozen || s->lease)
		return 0;
	pthread_mutex_lock(&s->lock);
	s->lease = udfs_cluster_lease_name();
	err =
	    s->lease ? lease_refresh(s) : udfs_error(-ENOMEM, "out of memory");
	pthread_mutex_unlock(&s->lock);
	if (err) {
		free(s->lease);
		s->lease = NULL;
		return err;
	}
	if (pthread_create(&s->lease_thread, NULL, lease_main, s) != 0)
		return udfs_error(-EAGAIN, "cannot start the lease thread");
	s->lease_started = true;
	return 0;
}

const char *udfs_store_dir(const udfs_store *s) { return s->dir; }

udfs_catalog *udfs_store_catalog(udfs_store *s)
{
	return s->live ? s->live : s->cat;
}

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

/* m->index: every tensor by name. 0 or -ENOMEM. */
static int build_index(udfs_model *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->n_files; i++)
		n += m->files[i].kind == UDFS_FILE_SAFETENSORS
			 ? m->files[i].n_tensors
			 : 0;
	m->index = calloc(n ? n : 1, sizeof(*m->index));
	if (!m->index)
		return udfs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_files; i++)
		if (m->files[i].kind == UDFS_FILE_SAFETENSORS)
			for (size_t j = 0; j < m->files[i].n_tensors; j++)
				m->index[m->n_index++] =
				    &m->files[i].tensors[j];
	qsort(m->index, m->n_index, sizeof(*m->index), by_name);
	return 0;
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
	char *path = udfs_asprintf("%s/%s", s->dir, m->storage);
	int err = 0;

	if (!path)
		return udfs_error(-ENOMEM, "out of memory");
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
	char *path = udfs_asprintf("%s/%s/%s", s->dir, m->storage, f->path);
	int err = 0;

	if (!path)
		return udfs_error(-ENOMEM, "out of memory");
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
	      t->lp.values > UDFS_VAL_TRELLIS || t->lp.bits > 8)))
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

/* Room in s->loaded for one more model: 0 or -ENOMEM. */
static int reserve_loaded(udfs_store *s)
{
	udfs_model **v;
	int err = 0;

	pthread_mutex_lock(&s->reg);
	v = realloc(s->loaded, (s->n_loaded + 1) * sizeof(*s->loaded));
	if (v)
		s->loaded = v;
	else
		err = udfs_error(-ENOMEM, "out of memory");
	pthread_mutex_unlock(&s->reg);
	return err;
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
	if (m) {
		m->refs++;
		m->generation = s->gen; /* it is in the current snapshot */
	}
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
	m->generation = s->gen;
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
	 * them idle at once; any other keeps them until the last put. What
	 * may fail comes before the pin, which is not undone. */
	err = link_base(m);
	if (!err)
		err = build_index(m);
	if (!err)
		err = reserve_loaded(s);
	if (!err)
		err = udfs_model_pin(m);
	if (err)
		goto out;
	if (s->lazy_fds)
		udfs_model_unpin(m);
	pthread_mutex_lock(&s->reg);
	s->loaded[s->n_loaded++] = m; /* loads are serial (s->lock) */
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
	uint32_t stamp;
	int64_t now;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->frozen) {
		/* Open, read, close: what makes a network filesystem show
		 * another client's latest rename. */
		err = udfs_cluster_pointer_read(s->dir, &now, &stamp);
		if (!err)
			err = switch_to(s, now);
	}
	*gen = s->gen;
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
		sub = udfs_asprintf("%s/%s", path, e->d_name);
		if (sub) /* statfs: a figure short by a file, not an abort */
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

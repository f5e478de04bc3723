// SPDX-License-Identifier: MIT
/*
 * Unit tests of cluster.c (the writer lock, tmp locks, the pointer, the
 * snapshot rule, leases and their expiry) and of the store's use of them:
 * every commit publishes a snapshot that readers opened earlier switch
 * to; a generation committed but not fully published is finished by the
 * next writer; a mount's lease keeps gc off a removed model it holds;
 * a format 1 store is upgraded in place by the first writer.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "store/catalog.h"
#include "store/cluster.h"
#include "store/store.h"
#include "store_fixture.h"

static const char *top;

/* A one-tensor safetensors file of n U8 bytes of fill. */
static char *write_st(const char *name, size_t n, unsigned char fill)
{
	char *path = udfs_xasprintf("%s/%s", top, name);
	char json[256];
	size_t hl = (size_t)snprintf(json, sizeof(json),
				     "{\"t\":{\"dtype\":\"U8\",\"shape\":[%zu],"
				     "\"data_offsets\":[0,%zu]}}",
				     n, n);
	unsigned char *img = udfs_xcalloc(1, 8 + hl + n);

	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, hl);
	for (size_t i = 0; i < n; i++)
		img[8 + hl + i] = (unsigned char)(fill + (i % 5 == 0));
	write_bytes(path, img, 8 + hl + n);
	free(img);
	return path;
}

/* Set path's mtime to age seconds before the lock file's (the fs clock). */
static void age_file(const char *path, const char *dir, double age)
{
	char *lock = udfs_xasprintf("%s/%s", dir, UDFS_LOCK_FILE);
	struct stat st;
	struct timespec ts[2];

	CHECK_EQ_INT(stat(lock, &st), 0);
	ts[0] = ts[1] = st.st_mtim;
	ts[0].tv_sec = ts[1].tv_sec = st.st_mtim.tv_sec - (time_t)age;
	CHECK_EQ_INT(utimensat(AT_FDCWD, path, ts, 0), 0);
	free(lock);
}

static void test_lock(void)
{
	char *dir = udfs_xasprintf("%s/lockdir", top);
	char *lock = udfs_xasprintf("%s/%s", dir, UDFS_LOCK_FILE);
	int fd = -1, p[2];
	pid_t pid;
	char buf[8] = "";

	CHECK_EQ_INT(mkdir(dir, 0755), 0);
	CHECK_EQ_INT(udfs_cluster_lock(dir, &fd), 0);
	CHECK(fd >= 0);
	/* Seen as held by anyone else (gc's probe uses the same test). */
	CHECK(udfs_cluster_tmp_busy(lock));
	CHECK_EQ_INT(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		int cfd = -1;

		/* The inherited descriptor shares the parent's lock. */
		close(fd);
		/* Blocks until the parent lets go, then reports. */
		if (udfs_cluster_lock(dir, &cfd) == 0 &&
		    write(p[1], "got", 3) == 3)
			_exit(0);
		_exit(1);
	}
	close(p[1]);
	/* The child cannot have it while we hold it: nothing to read yet. */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	usleep(300000);
	CHECK_EQ_INT(read(p[0], buf, sizeof(buf)), -1);
	udfs_cluster_unlock(fd);
	fcntl(p[0], F_SETFL, 0);
	CHECK_EQ_INT(read(p[0], buf, sizeof(buf)), 3);
	{
		int status = 0;

		CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	close(p[0]);
	CHECK(!udfs_cluster_tmp_busy(lock));
	free(lock);
	free(dir);
}

static void test_pointer(void)
{
	char *dir = udfs_xasprintf("%s/ptr", top);
	char *tmp = udfs_xasprintf("%s/tmp", dir);
	char *path = udfs_xasprintf("%s/%s", dir, UDFS_POINTER_FILE);
	int64_t gen = -1;
	uint32_t stamp = 0;

	CHECK_EQ_INT(mkdir(dir, 0755), 0);
	CHECK_EQ_INT(mkdir(tmp, 0755), 0);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &gen, &stamp), -ENOENT);
	CHECK_EQ_INT(udfs_cluster_pointer_write(dir, 42, 7), 0);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &gen, &stamp), 0);
	CHECK_EQ_INT(gen, 42);
	CHECK_EQ_INT(stamp, 7);
	/* No temporary file is left behind. */
	{
		char *left = udfs_xasprintf("ls -A %s | grep -q .", tmp);

		CHECK(system(left) != 0);
		free(left);
	}
	write_bytes(path, "x\n", 2);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &gen, &stamp), -EIO);
	write_bytes(path, "-3 1\n", 5);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &gen, &stamp), -EIO);
	udfs_error_clear();
	free(path);
	free(tmp);
	free(dir);
}

static void test_snapshot_rule(void)
{
	const udfs_snapshot_info l[] = {{.gen = 3, .mtime = 100},
					{.gen = 4, .mtime = 200},
					{.gen = 5, .mtime = 300},
					{.gen = 6, .mtime = 990}};
	const int64_t leased[] = {3};
	double now = 1000, grace = 60;

	/* 3: leased; 4: superseded at 300, long ago; 5: superseded at
	 * 990, within the grace period; 6: current. */
	CHECK(udfs_cluster_snapshot_needed(l, 4, 0, 6, leased, 1, now, grace));
	CHECK(!udfs_cluster_snapshot_needed(l, 4, 1, 6, leased, 1, now, grace));
	CHECK(udfs_cluster_snapshot_needed(l, 4, 2, 6, leased, 1, now, grace));
	CHECK(udfs_cluster_snapshot_needed(l, 4, 3, 6, leased, 1, now, grace));
	/* No grace (a local disk): only current and leased stay. */
	CHECK(!udfs_cluster_snapshot_needed(l, 4, 2, 6, leased, 1, now, 0));
	CHECK(udfs_cluster_snapshot_needed(l, 4, 0, 6, leased, 1, now, 0));
	CHECK(!udfs_cluster_snapshot_needed(l, 4, 0, 6, NULL, 0, now, 0));
}

static void test_leases(void)
{
	char *dir = udfs_xasprintf("%s/leasedir", top);
	char *ldir = udfs_xasprintf("%s/%s", dir, UDFS_LEASE_DIR);
	char *mine = udfs_cluster_lease_name();
	char *other = udfs_xasprintf("%s/otherhost.123", ldir);
	char *dead = NULL;
	const int64_t g1[] = {5, 9}, g2[] = {7};
	int64_t *gens = NULL;
	size_t n = 0;
	double now;
	int fd = -1;

	CHECK_EQ_INT(mkdir(dir, 0755), 0);
	CHECK_EQ_INT(mkdir(ldir, 0755), 0);
	CHECK_EQ_INT(udfs_cluster_lock(dir, &fd), 0);
	CHECK_EQ_INT(udfs_cluster_now(fd, &now), 0);
	CHECK_EQ_INT(udfs_cluster_lease_write(dir, mine, g1, 2), 0);
	write_bytes(other, "7\n", 2);
	/* A lease of this host whose process is gone: never protects. */
	{
		pid_t pid = fork();
		char *name;

		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
		name = udfs_cluster_lease_name();
		*strrchr(name, '.') = '\0';
		dead = udfs_xasprintf("%s/%s.%d", ldir, name, (int)pid);
		free(name);
		write_bytes(dead, "1\n", 2);
	}
	CHECK_EQ_INT(udfs_cluster_leases(dir, now, 60, false, &gens, &n), 0);
	CHECK_EQ_INT(n, 3);
	if (n == 3) {
		CHECK_EQ_INT(gens[0], 5);
		CHECK_EQ_INT(gens[1], 7);
		CHECK_EQ_INT(gens[2], 9);
	}
	free(gens);
	/* The other host's lease expires after the grace period (by the
	 * filesystem's clock), this process's does not, and expired ones
	 * are removed on request. */
	age_file(other, dir, 120);
	CHECK_EQ_INT(udfs_cluster_leases(dir, now, 60, true, &gens, &n), 0);
	CHECK_EQ_INT(n, 2);
	free(gens);
	CHECK(access(other, F_OK) < 0);
	CHECK(access(dead, F_OK) < 0);
	CHECK_EQ_INT(udfs_cluster_lease_write(dir, mine, g2, 1), 0);
	CHECK_EQ_INT(udfs_cluster_leases(dir, now, 60, false, &gens, &n), 0);
	CHECK_EQ_INT(n, 1);
	if (n == 1)
		CHECK_EQ_INT(gens[0], 7);
	free(gens);
	udfs_cluster_lease_remove(dir, mine);
	CHECK_EQ_INT(udfs_cluster_leases(dir, now, 60, false, &gens, &n), 0);
	CHECK_EQ_INT(n, 0);
	free(gens);
	udfs_cluster_unlock(fd);
	/* The grace period: the environment, else 0 on a local disk. */
	setenv("UDFS_GRACE", "12.5", 1);
	CHECK_NEAR(udfs_cluster_grace(dir), 12.5, 1e-9);
	unsetenv("UDFS_GRACE");
	free(dead);
	free(other);
	free(mine);
	free(ldir);
	free(dir);
}

static bool listed(udfs_store *s, const char *name)
{
	udfs_model_info *list = NULL;
	size_t n = 0;
	bool found = false;

	CHECK_EQ_INT(udfs_store_list(s, &list, &n), 0);
	for (size_t i = 0; i < n; i++)
		found |= !strcmp(list[i].name, name);
	free(list);
	return found;
}

static int64_t gen_of(udfs_store *s)
{
	int64_t g = -1;

	CHECK_EQ_INT(udfs_store_generation(s, &g), 0);
	return g;
}

/* Readers switch to each published generation; a generation whose
 * publish a killed writer did not finish is finished by the next one. */
static void test_publish(void)
{
	char *dir = udfs_xasprintf("%s/store", top);
	char *b = write_st("b.safetensors", 3000, 1);
	char *d1 = write_st("d1.safetensors", 3000, 2);
	char *d2 = write_st("d2.safetensors", 3000, 3);
	char *d3 = write_st("d3.safetensors", 3000, 8);
	udfs_store *w = NULL, *r = NULL;
	int64_t g, pg;
	uint32_t stamp;

	CHECK_EQ_INT(udfs_store_init(dir), 0);
	CHECK_EQ_INT(udfs_store_open(dir, 0, &w), 0);
	CHECK_EQ_INT(udfs_store_open(dir, UDFS_STORE_RDONLY, &r), 0);
	if (!w || !r)
		goto out;
	CHECK_EQ_INT(udfs_compress_add_base(w, "base", b, false, true), 0);
	CHECK_EQ_INT(add_model(w, "d1", d1, true, 1), 0);
	g = gen_of(w);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &pg, &stamp), 0);
	CHECK_EQ_INT(pg, g);
	/* The reader opened before both adds sees them now. */
	CHECK(gen_of(r) == g);
	CHECK(listed(r, "d1"));
	/* A read-only store never writes. */
	CHECK_EQ_INT(udfs_store_begin(r), -EROFS);
	udfs_error_clear();

	/* A writer killed after its commit point (the snapshot) but before
	 * the pointer: readers still see g, the next writer finishes. */
	CHECK_EQ_INT(add_model(w, "d2", d2, true, 1), 0);
	CHECK_EQ_INT(udfs_cluster_pointer_write(dir, g, stamp), 0);
	CHECK(gen_of(r) == g);
	CHECK(!listed(r, "d2"));
	{
		udfs_store *w2 = NULL;
		uint64_t freed;
		size_t files;

		CHECK_EQ_INT(udfs_store_open(dir, 0, &w2), 0);
		CHECK_EQ_INT(
		    udfs_store_gc(w2, false, NULL, NULL, &freed, &files), 0);
		CHECK_EQ_INT(files, 0);
		udfs_store_close(w2);
	}
	CHECK(gen_of(r) == g + 1);
	CHECK(listed(r, "d2"));

	/* Killed right after the snapshot: catalog.db and the pointer are
	 * still g + 1's (the old catalog.db is kept by a hard link, as the
	 * publish renames over it). A reader opened next finishes it. */
	{
		char *live = udfs_xasprintf("%s/catalog.db", dir);
		char *old = udfs_xasprintf("%s/old.db", dir);
		udfs_store *r2 = NULL;

		CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &pg, &stamp), 0);
		CHECK_EQ_INT(link(live, old), 0);
		CHECK_EQ_INT(add_model(w, "d3", d3, true, 1), 0);
		CHECK_EQ_INT(rename(old, live), 0);
		CHECK_EQ_INT(udfs_cluster_pointer_write(dir, pg, stamp), 0);
		CHECK_EQ_INT(udfs_store_open(dir, UDFS_STORE_RDONLY, &r2), 0);
		if (r2) {
			CHECK(gen_of(r2) == g + 2);
			CHECK(listed(r2, "d3"));
		}
		udfs_store_close(r2);
		free(old);
		free(live);
	}
out:
	udfs_store_close(r);
	udfs_store_close(w);
	free(d3);
	free(d2);
	free(d1);
	free(b);
	free(dir);
}

/* A mount's lease keeps gc off what it still serves; without it, gc with
 * no grace period removes it. */
static void test_lease_protects(void)
{
	char *dir = udfs_xasprintf("%s/store2", top);
	char *b = write_st("b2.safetensors", 3000, 4);
	char *d1 = write_st("d12.safetensors", 3000, 5);
	udfs_store *w = NULL, *r = NULL;
	udfs_model *held = NULL;
	uint64_t freed = 0;
	size_t files = 0;
	char **paths = NULL;
	size_t n = 0;
	char *pack = NULL;

	setenv("UDFS_GRACE", "0", 1);
	CHECK_EQ_INT(udfs_store_init(dir), 0);
	CHECK_EQ_INT(udfs_store_open(dir, 0, &w), 0);
	if (!w)
		goto out;
	CHECK_EQ_INT(udfs_compress_add_base(w, "base", b, false, true), 0);
	CHECK_EQ_INT(add_model(w, "d1", d1, true, 1), 0);
	CHECK_EQ_INT(udfs_store_open(dir, UDFS_STORE_RDONLY, &r), 0);
	if (!r)
		goto out;
	CHECK_EQ_INT(udfs_store_follow(r), 0);
	CHECK_EQ_INT(udfs_model_load(r, "d1", &held), 0);
	CHECK_EQ_INT(
	    udfs_catalog_storage_paths(udfs_store_catalog(r), &paths, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (!strncmp(paths[i], "packs/", 6))
			pack = udfs_xasprintf("%s/%s", dir, paths[i]);
		free(paths[i]);
	}
	free(paths);
	CHECK(pack != NULL);
	/* rm, and the reader moves on to the new generation. */
	CHECK_EQ_INT(udfs_store_rm(w, "d1"), 0);
	CHECK(gen_of(r) > 0);
	CHECK(!listed(r, "d1"));
	CHECK(pack && access(pack, F_OK) == 0);
	CHECK_EQ_INT(udfs_store_gc(w, false, NULL, NULL, &freed, &files), 0);
	CHECK_EQ_INT(files, 0);
	CHECK(pack && access(pack, F_OK) == 0);
	/* Released: the next lease refresh (a switch) drops the old
	 * generation, and gc removes the pack. */
	udfs_model_put(held);
	held = NULL;
	udfs_store_close(r);
	r = NULL;
	CHECK_EQ_INT(udfs_store_gc(w, true, NULL, NULL, &freed, &files), 0);
	CHECK_EQ_INT(files, 1);
	CHECK(pack && access(pack, F_OK) == 0);
	CHECK_EQ_INT(udfs_store_gc(w, false, NULL, NULL, &freed, &files), 0);
	CHECK_EQ_INT(files, 1);
	CHECK(pack && access(pack, F_OK) < 0);
out:
	unsetenv("UDFS_GRACE");
	udfs_model_put(held);
	udfs_store_close(r);
	udfs_store_close(w);
	free(pack);
	free(d1);
	free(b);
	free(dir);
}

/* A store as the previous udfs left it (format 1: WAL catalog, no
 * snapshots, pointer, lock or leases) is upgraded in place by the first
 * process that may write it, with every model still there. */
static void test_upgrade(void)
{
	char *dir = udfs_xasprintf("%s/old", top);
	char *db = udfs_xasprintf("%s/catalog.db", dir);
	char *b = write_st("b3.safetensors", 3000, 6);
	char *cmd;
	udfs_store *w = NULL, *r = NULL;
	sqlite3 *h = NULL;
	int64_t gen = -1;
	uint32_t stamp;

	CHECK_EQ_INT(udfs_store_init(dir), 0);
	CHECK_EQ_INT(udfs_store_open(dir, 0, &w), 0);
	if (w)
		CHECK_EQ_INT(udfs_compress_add_base(w, "base", b, false, true),
			     0);
	udfs_store_close(w);
	cmd = udfs_xasprintf("rm -rf %s/snapshots %s/leases %s/lock "
			     "%s/catalog.current",
			     dir, dir, dir, dir);
	CHECK_EQ_INT(system(cmd), 0);
	free(cmd);
	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(h,
				  "PRAGMA journal_mode=WAL; "
				  "PRAGMA user_version=1",
				  NULL, NULL, NULL),
		     SQLITE_OK);
	sqlite3_close(h);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &gen, &stamp), -ENOENT);
	/* The first open (a reader here) may write: it upgrades. */
	CHECK_EQ_INT(udfs_store_open(dir, UDFS_STORE_RDONLY, &r), 0);
	if (r) {
		CHECK(!udfs_store_frozen(r));
		CHECK(listed(r, "base"));
	}
	udfs_store_close(r);
	CHECK_EQ_INT(udfs_cluster_pointer_read(dir, &gen, &stamp), 0);
	CHECK_EQ_INT(gen, 1);
	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	{
		sqlite3_stmt *st = NULL;

		CHECK_EQ_INT(
		    sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL),
		    SQLITE_OK);
		CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
		CHECK_EQ_INT(sqlite3_column_int(st, 0), UDFS_CATALOG_VERSION);
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	free(b);
	free(db);
	free(dir);
}

int main(void)
{
	char tmpl[] = "/tmp/udfs-test-cluster.XXXXXX";

	top = mkdtemp(tmpl);
	if (!top) {
		perror("mkdtemp");
		return 1;
	}
	test_lock();
	test_pointer();
	test_snapshot_rule();
	test_leases();
	test_publish();
	test_lease_protects();
	test_upgrade();
	if (!getenv("UDFS_TEST_KEEP"))
		udfs_rm_tree(top);
	CHECK_DONE();
}

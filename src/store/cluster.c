// SPDX-License-Identifier: MIT
/*
 * The files through which processes on many nodes share one store: the
 * writer lock, the pointer to the published catalog snapshot, the
 * snapshots themselves and the readers' leases (cluster.h, udfs(5)).
 *
 * Every file that others read is written whole under a temporary name and
 * renamed into place, so a reader on any node sees either the old or the
 * new content, never a part. Locks are OFD fcntl locks on regular files:
 * they are per open file (safe with threads) and shared between the
 * clients of a network filesystem.
 */
#include "store/cluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/util.h"

/* Filesystems whose clients are all on this machine (statfs f_type). */
static const long local_fs[] = {
    0xEF53,	/* ext2, ext3, ext4 */
    0x58465342, /* xfs */
    0x9123683E, /* btrfs */
    0x01021994, /* tmpfs */
    0xF2F52010, /* f2fs */
    0x2FC12FC1, /* zfs */
    0x794C7630, /* overlayfs */
    0x3153464A, /* jfs */
    0x52654973, /* reiserfs */
};

static int set_lock(int fd, short type, bool wait)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET};

	return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) < 0 ? -errno
								     : 0;
}

/* A name for a temporary file in dir that no other process, on any node,
 * picks: host, pid and a counter; a dot file, which readers of the
 * directory skip. */
static char *tmp_name(const char *dir, const char *suffix)
{
	static unsigned counter;
	char *lease = udfs_cluster_lease_name();
	char *path = lease ? udfs_asprintf("%s/.%s.%u.%s", dir, lease,
					   __atomic_fetch_add(&counter, 1,
							      __ATOMIC_RELAXED),
					   suffix)
			   : NULL;

	free(lease);
	return path;
}

/* Write buf to path whole: a temp file in tmp_dir (on the same
 * filesystem), fsync, rename, fsync path's directory. */
static int replace_file(const char *path, const char *tmp_dir, const char *buf)
{
	char *tmp = tmp_name(tmp_dir, "new");
	char *parent = strdup(path);
	int fd = -1;
	int err = 0;

	if (!tmp || !parent) {
		err = udfs_error(-ENOMEM, "out of memory");
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	err = udfs_write_full(fd, buf, strlen(buf));
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	*strrchr(parent, '/') = '\0';
	if (!err)
		err = udfs_fsync_dir(parent);
	if (err) {
		unlink(tmp);
		udfs_error(err, "%s: %s", path, strerror(-err));
	}
out:
	free(parent);
	free(tmp);
	return err;
}

static void read_holder(int fd, char *buf, size_t len)
{
	ssize_t r = pread(fd, buf, len - 1, 0);

	buf[r > 0 ? r : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static int write_holder(int fd)
{
	char host[256] = "", buf[320];

	gethostname(host, sizeof(host) - 1);
	snprintf(buf, sizeof(buf), "%s %d\n", host, (int)getpid());
	if (ftruncate(fd, 0) < 0)
		return -errno;
	if (pwrite(fd, buf, strlen(buf), 0) != (ssize_t)strlen(buf))
		return -EIO;
	/* The holder's name is for people; the mtime is the fs clock. */
	return fsync(fd) < 0 ? -errno : 0;
}

int udfs_cluster_lock(const char *dir, int *fd)
{
	char *path = udfs_xasprintf("%s/%s", dir, UDFS_LOCK_FILE);
	char holder[300];
	int err;

	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0) {
		err = udfs_error(-errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* Commits are short: wait a moment quietly before saying so. */
	err = set_lock(*fd, F_WRLCK, false);
	for (int i = 0; i < 40 && (err == -EAGAIN || err == -EACCES); i++) {
		usleep(50000);
		err = set_lock(*fd, F_WRLCK, false);
	}
	if (err == -EAGAIN || err == -EACCES) {
		read_holder(*fd, holder, sizeof(holder));
		udfs_warn("waiting for the writer lock of %s (held by %s)", dir,
			  holder[0] ? holder : "another writer");
		err = set_lock(*fd, F_WRLCK, true);
		if (err == -EINTR)
			err = udfs_error(
			    -EINTR,
			    "interrupted while waiting for the writer lock of %s",
			    dir);
	}
	if (!err)
		err = write_holder(*fd);
	if (err && err != -EINTR)
		err = udfs_error(err, "%s: cannot lock: %s", path,
				 strerror(-err));
out:
	if (err && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	free(path);
	return err;
}

void udfs_cluster_unlock(int fd)
{
	if (fd < 0)
		return;
	/* Empty again: the lock file names a holder only while held (or
	 * one that died holding it). */
	if (ftruncate(fd, 0) < 0) {
		/* Only a name for people is left behind. */
	}
	close(fd); /* releases the OFD lock */
}

int udfs_cluster_now(int fd, double *now)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*now = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
	return 0;
}

double udfs_cluster_grace(const char *dir)
{
	const char *env = getenv("UDFS_GRACE");
	struct statfs sf;

	if (env && *env) {
		char *end;
		double g = strtod(env, &end);

		if (!*end && g >= 0)
			return g;
	}
	if (statfs(dir, &sf) == 0)
		for (size_t i = 0; i < UDFS_ARRAY_SIZE(local_fs); i++)
			if ((long)sf.f_type == local_fs[i])
				return 0;
	return UDFS_GRACE_SHARED;
}

int udfs_cluster_tmp_lock(int fd) { return set_lock(fd, F_WRLCK, false); }

bool udfs_cluster_tmp_busy(const char *path)
{
	/* O_NONBLOCK: a fifo someone left in tmp/ must not hang gc. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	struct stat st;
	bool busy = false;

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    fcntl(fd, F_OFD_GETLK, &fl) == 0)
		busy = fl.l_type != F_UNLCK;
	close(fd);
	return busy;
}

/* Read the pointer file once: -ESTALE (no message) when it was replaced
 * while we read it (a network filesystem's old inode is gone). */
static int pointer_read_once(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return errno == ESTALE ? -ESTALE : -errno;
	r = read(fd, buf, len - 1);
	if (r < 0)
		r = -errno;
	close(fd);
	if (r == -ESTALE || r == 0)
		return -ESTALE;
	if (r < 0)
		return (int)r;
	buf[r] = '\0';
	return 0;
}

int udfs_cluster_pointer_read(const char *dir, int64_t *gen, uint32_t *stamp)
{
	char *path = udfs_asprintf("%s/%s", dir, UDFS_POINTER_FILE);
	char buf[64], *end = buf;
	unsigned long long st = 0;
	int err = -ESTALE;

	if (!path)
		return udfs_error(-ENOMEM, "out of memory");
	/* A writer on another node may replace it as we read. */
	for (int tries = 0; tries < 50 && err == -ESTALE; tries++) {
		if (tries)
			usleep(20000);
		err = pointer_read_once(path, buf, sizeof(buf));
	}
	if (err == -ENOENT)
		goto out;
	if (err) {
		err = udfs_error(err, "%s: %s", path, strerror(-err));
		goto out;
	}
	errno = 0;
	*gen = strtoll(buf, &end, 10);
	if (!errno && *end == ' ')
		st = strtoull(end + 1, &end, 10);
	if (end == buf || *end != '\n' || errno || *gen < 0 || st > UINT32_MAX)
		err = udfs_error(-EIO, "%s: not a generation number", path);
	*stamp = (uint32_t)st;
out:
	free(path);
	return err;
}

int udfs_cluster_pointer_write(const char *dir, int64_t gen, uint32_t stamp)
{
	char *path = udfs_xasprintf("%s/%s", dir, UDFS_POINTER_FILE);
	char *tdir = udfs_xasprintf("%s/tmp", dir);
	char buf[48];
	int err;

	snprintf(buf, sizeof(buf), "%" PRId64 " %" PRIu32 "\n", gen, stamp);
	err = replace_file(path, tdir, buf);
	free(tdir);
	free(path);
	return err;
}

int udfs_cluster_snapshot_path(const char *dir, int64_t gen, char *buf,
			       size_t len)
{
	int n = snprintf(buf, len, "%s/%s/%" PRId64 ".db", dir,
			 UDFS_SNAPSHOT_DIR, gen);

	if (n < 0 || (size_t)n >= len)
		return udfs_error(-ENAMETOOLONG, "%s: path too long", dir);
	return 0;
}

/* "123.db" -> 123; false for anything else. */
static bool parse_snapshot_name(const char *name, int64_t *gen)
{
	char *end;

	if (name[0] < '0' || name[0] > '9')
		return false;
	errno = 0;
	*gen = strtoll(name, &end, 10);
	return !errno && strcmp(end, ".db") == 0;
}

static int by_gen(const void *a, const void *b)
{
	const udfs_snapshot_info *x = a, *y = b;

	return (x->gen > y->gen) - (x->gen < y->gen);
}

int udfs_cluster_snapshots(const char *dir, udfs_snapshot_info **list,
			   size_t *n)
{
	char *sdir = udfs_xasprintf("%s/%s", dir, UDFS_SNAPSHOT_DIR);
	DIR *d = opendir(sdir);
	struct dirent *e;
	size_t cap = 0;

	*list = NULL;
	*n = 0;
	if (!d) {
		int err = udfs_error(-errno, "%s: %s", sdir, strerror(errno));

		free(sdir);
		return err;
	}
	while ((e = readdir(d))) {
		char *path;
		struct stat st;
		int64_t gen;

		if (!parse_snapshot_name(e->d_name, &gen))
			continue;
		path = udfs_xasprintf("%s/%s", sdir, e->d_name);
		if (stat(path, &st) == 0) {
			if (*n == cap) {
				cap = cap ? 2 * cap : 16;
				*list =
				    udfs_xrealloc(*list, cap * sizeof(**list));
			}
			(*list)[*n].gen = gen;
			(*list)[(*n)++].mtime = (double)st.st_mtim.tv_sec +
						st.st_mtim.tv_nsec * 1e-9;
		}
		free(path);
	}
	closedir(d);
	free(sdir);
	if (*n)
		qsort(*list, *n, sizeof(**list), by_gen);
	return 0;
}

bool udfs_cluster_snapshot_needed(const udfs_snapshot_info *list, size_t n,
				  size_t i, int64_t current,
				  const int64_t *leased, size_t n_leased,
				  double now, double grace)
{
	if (list[i].gen >= current)
		return true;
	for (size_t j = 0; j < n_leased; j++)
		if (leased[j] == list[i].gen)
			return true;
	/* It stopped being current when the next snapshot was published. */
	return i + 1 < n && now - list[i + 1].mtime < grace;
}

char *udfs_cluster_lease_name(void)
{
	char host[256] = "";

	gethostname(host, sizeof(host) - 1);
	for (char *p = host; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			*p = '_';
	return udfs_asprintf("%s.%d", host[0] ? host : "host", (int)getpid());
}

int udfs_cluster_lease_write(const char *dir, const char *name,
			     const int64_t *gens, size_t n)
{
	char *path = udfs_asprintf("%s/%s/%s", dir, UDFS_LEASE_DIR, name);
	char *parent = udfs_asprintf("%s/%s", dir, UDFS_LEASE_DIR);
	char *buf = malloc(n * 24 + 2);
	size_t len = 0;
	int err = -ENOMEM;

	if (!path || !parent || !buf) {
		err = udfs_error(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len, "%" PRId64 "\n", gens[i]);
	buf[len] = '\0';
	err = replace_file(path, parent, buf);
out:
	free(buf);
	free(parent);
	free(path);
	return err;
}

void udfs_cluster_lease_remove(const char *dir, const char *name)
{
	char *path = udfs_asprintf("%s/%s/%s", dir, UDFS_LEASE_DIR, name);

	if (path)
		unlink(path);
	free(path);
}

/* Append the generations listed in lease file path to *gens. */
static void read_lease(const char *path, int64_t **gens, size_t *n, size_t *cap)
{
	FILE *f = fopen(path, "re");
	int64_t g;

	while (f && fscanf(f, "%" SCNd64, &g) == 1) {
		if (*n == *cap) {
			*cap = *cap ? 2 * *cap : 16;
			*gens = udfs_xrealloc(*gens, *cap * sizeof(**gens));
		}
		(*gens)[(*n)++] = g;
	}
	if (f)
		fclose(f);
}

/*
 * Does the lease named name (HOST.PID), last refreshed age seconds ago,
 * still protect? A lease of this host is live exactly while its process
 * is; another host's while it is younger than the grace period.
 */
static bool lease_live(const char *name, double age, double grace)
{
	char *mine = udfs_cluster_lease_name();
	const char *dot = strrchr(name, '.');
	const char *my_dot = mine ? strrchr(mine, '.') : NULL;
	bool same_host = dot && my_dot &&
			 (size_t)(dot - name) == (size_t)(my_dot - mine) &&
			 !strncmp(name, mine, (size_t)(dot - name));
	bool live;

	free(mine);
	if (same_host) {
		char *end;
		long pid = strtol(dot + 1, &end, 10);

		if (!*end && pid > 0)
			return kill((pid_t)pid, 0) == 0 || errno == EPERM;
	}
	live = age < grace;
	return live;
}

static int cmp_gen(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int udfs_cluster_leases(const char *dir, double now, double grace,
			bool remove_expired, int64_t **gens, size_t *n)
{
	char *ldir = udfs_xasprintf("%s/%s", dir, UDFS_LEASE_DIR);
	DIR *d = opendir(ldir);
	struct dirent *e;
	size_t cap = 0;

	*gens = NULL;
	*n = 0;
	if (!d) {
		int err = errno == ENOENT ? 0
					  : udfs_error(-errno, "%s: %s", ldir,
						       strerror(errno));

		free(ldir);
		return err;
	}
	while ((e = readdir(d))) {
		char *path;
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		path = udfs_xasprintf("%s/%s", ldir, e->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			double age = now - ((double)st.st_mtim.tv_sec +
					    st.st_mtim.tv_nsec * 1e-9);

			if (lease_live(e->d_name, age, grace))
				read_lease(path, gens, n, &cap);
			else if (remove_expired)
				unlink(path);
		}
		free(path);
	}
	closedir(d);
	free(ldir);
	if (*n)
		qsort(*gens, *n, sizeof(**gens), cmp_gen);
	return 0;
}

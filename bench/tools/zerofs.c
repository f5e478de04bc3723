// SPDX-License-Identifier: MIT
/*
 * zerofs [-z] [-j THREADS] [-r KB] [-d] SOURCE MOUNTPOINT: the FUSE
 * ceiling peer of bench/mount.sh. A read-only libfuse3 low-level
 * filesystem with one file, /<basename of SOURCE>, of SOURCE's size,
 * whose bytes are SOURCE's (pread into a per-thread buffer, a passthrough
 * of one file) or, with -z, zeros.
 *
 * It runs with the kernel settings of `udfs mount` so that the only
 * difference left is the work done per request: FUSE_USE_VERSION 314,
 * keep_cache on open, no direct_io, no splice, async_read, max_background
 * 64, a multi-threaded loop with clone_fd and THREADS workers (default 8),
 * and, as root, the mount's /sys/class/bdi/<dev>/read_ahead_kb raised to
 * KB (default 1024; 0 leaves it alone). It stays in the foreground, prints
 * "ready" on stdout once the mount answers and the readahead is set, and
 * exits 0 after fusermount3 -u or SIGTERM. -d prints every read's size
 * and offset on stderr.
 */
#define FUSE_USE_VERSION 314

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define FILE_INO 2
#define TIMEOUT 3600.0

static struct {
	const char *name; /* the one file's name */
	const char *mountpoint;
	int fd; /* SOURCE; -1 with -z */
	off_t size;
	unsigned ra_kb;
	int debug;
	unsigned char *zeros; /* ZERO_MAX bytes of zeros (-z) */
} g = {.fd = -1, .ra_kb = 1024};

#define ZERO_MAX (64u << 20) /* more than any FUSE read request */

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = g.size;
		st->st_blksize = 1 << 20;
		st->st_blocks = (g.size + 511) / 512;
	}
	st->st_uid = getuid();
	st->st_gid = getgid();
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* udfs replies from a user buffer too: same copy path. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
				  FUSE_CAP_SPLICE_READ);
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->max_readahead = 16u << 20;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	if (parent != FUSE_ROOT_ID || strcmp(name, g.name) != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = FILE_INO;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	fill_attr(FILE_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != FILE_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != FILE_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

/* One growing read buffer per worker thread, like udfs's. */
static unsigned char *thread_buf(size_t size)
{
	static __thread unsigned char *buf;
	static __thread size_t cap;

	if (size > cap) {
		unsigned char *p = realloc(buf, size);

		if (!p)
			return NULL;
		buf = p;
		cap = size;
	}
	return buf;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	unsigned char *buf;
	size_t done = 0;

	(void)ino, (void)fi;
	if (g.debug)
		fprintf(stderr, "read off=%lld size=%zu\n", (long long)off,
			size);
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off >= g.size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if ((off_t)size > g.size - off)
		size = (size_t)(g.size - off);
	if (g.fd < 0) {
		fuse_reply_buf(req, (const char *)g.zeros,
			       size < ZERO_MAX ? size : ZERO_MAX);
		return;
	}
	buf = thread_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	while (done < size) {
		ssize_t n =
		    pread(g.fd, buf + done, size - done, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fuse_reply_err(req, errno);
			return;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	fuse_reply_buf(req, (const char *)buf, done);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	const char *names[3] = {".", "..", g.name};
	char buf[1024];
	size_t len = 0;
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (off_t i = off < 0 ? 0 : off; i < 3; i++) {
		size_t need;

		fill_attr(i == 2 ? FILE_INO : FUSE_ROOT_ID, &st);
		need = fuse_add_direntry(req, buf + len, size - len, names[i],
					 &st, i + 1);
		if (need > size - len)
			break; /* did not fit: the kernel asks again */
		len += need;
	}
	fuse_reply_buf(req, buf, len);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .open = op_open,
    .read = op_read,
    .readdir = op_readdir,
};

/* Once the mount answers: raise its readahead window (root), say ready. */
static void *ready_thread(void *arg)
{
	struct stat st;
	char path[128];
	FILE *f;

	(void)arg;
	if (stat(g.mountpoint, &st) != 0) {
		fprintf(stderr, "zerofs: %s: %s\n", g.mountpoint,
			strerror(errno));
		return NULL;
	}
	if (g.ra_kb && geteuid() == 0) {
		snprintf(path, sizeof(path),
			 "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
			 minor(st.st_dev));
		f = fopen(path, "w");
		if (!f || fprintf(f, "%u\n", g.ra_kb) < 0 || fclose(f) != 0)
			fprintf(stderr, "zerofs: %s: %s\n", path,
				strerror(errno));
	}
	printf("ready\n");
	fflush(stdout);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: zerofs [-z] [-j THREADS] [-r READAHEAD_KB] "
			"[-d] SOURCE MOUNTPOINT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg = NULL;
	unsigned threads = 8;
	int zero = 0, c, ret = 1, fd = -1;
	struct stat st;
	pthread_t th;

	while ((c = getopt(argc, argv, "zj:r:d")) != -1) {
		switch (c) {
		case 'z':
			zero = 1;
			break;
		case 'j':
			threads = (unsigned)atoi(optarg);
			break;
		case 'r':
			g.ra_kb = (unsigned)atoi(optarg);
			break;
		case 'd':
			g.debug = 1;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || threads < 1)
		usage();
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "zerofs: %s: %s\n", argv[optind],
			strerror(errno));
		goto out;
	}
	g.name = basename(argv[optind]);
	g.size = st.st_size;
	g.mountpoint = argv[optind + 1];
	if (zero) {
		g.zeros = calloc(1, ZERO_MAX);
		if (!g.zeros)
			goto out;
	} else {
		g.fd = fd;
	}
	if (fuse_opt_add_arg(&args, "zerofs") ||
	    fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, "ro,fsname=zerofs,subtype=zerofs"))
		goto out;
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, g.mountpoint) != 0)
		goto out_handlers;
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		goto out_unmount;
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_max_threads(cfg, threads);
	fuse_loop_cfg_set_idle_threads(cfg, threads);
	if (pthread_create(&th, NULL, ready_thread, NULL) == 0)
		pthread_detach(th);
	ret = fuse_session_loop_mt(se, cfg) < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(cfg);
out_unmount:
	fuse_session_unmount(se);
out_handlers:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	free(g.zeros);
	if (fd >= 0)
		close(fd);
	return ret;
}

// SPDX-License-Identifier: MIT
/*
 * `udfs mount STORE MOUNTPOINT [-f] [-o opts]`: option parsing, session
 * setup, daemonizing, the multi-threaded loop and a clean unmount.
 *
 * Order matters: the store is checked (opened and closed) and the mount
 * made while stderr is still the terminal (so a bad store or mountpoint
 * gives one clear line and a non-zero exit), then fuse_daemonize() forks
 * (the parent returns only once the kernel mount exists; requests wait for
 * the loop), and only then are the store opened for serving and threads
 * started (the cache's decode-ahead pool, the loop): SQLite's POSIX locks
 * do not survive fork, so a catalog connection opened before it would stop
 * seeing other processes' commits. A helper thread waits until the mount
 * answers a stat(), raises the mount's readahead window in sysfs, and
 * writes "ready" to the notify pipe.
 *
 * Logs go to stderr in the foreground, to syslog (facility daemon, ident
 * udfs) once daemonized, or to the file of -o log=FILE.
 */
#include "fuse/fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/pool.h"
#include "common/util.h"

#define DEFAULT_CACHE (256ull << 20)
#define DEFAULT_THREADS 8
#define DEFAULT_READAHEAD_KB 1024
#define POOL_MAX 8	 /* decode pool threads: min(CPUs, this), at least 2 */
#define NOTIFY_WAIT 10.0 /* seconds to wait for a reader of the pipe */

static const char usage[] =
    "usage: udfs mount STORE MOUNTPOINT [-f] [-o OPTION[,OPTION...]]\n"
    "  -f, --foreground    stay in the foreground, log to stderr\n"
    "  -d                  foreground, and log every request\n"
    "  -h, --help          this text\n"
    "  -o allow_other      let other users read the mount\n"
    "  -o cache=SIZE       decoded-chunk cache (default 256M)\n"
    "  -o threads=N        FUSE worker threads (default 8)\n"
    "  -o readahead_kb=N   mount readahead window when root (default 1024)\n"
    "  -o noreadahead      leave the kernel's readahead window alone\n"
    "  -o notify_pipe=FIFO write \"ready\" (or an error) there once mounted\n"
    "  -o log=FILE         log there (default: stderr with -f, else syslog)\n"
    "  -o debug            log every request\n"
    "  -o ro               accepted, as are rw, defaults, sync, atime...:\n"
    "                      udfs always mounts read-only\n"
    "  other -o options (nodev, nosuid, noexec, ...) go to FUSE\n";

/* Options mount(8) passes for `defaults` and the like that mean nothing
 * to a read-only filesystem without atimes: accepted, and dropped. */
static const char *const ignored_opts[] = {
    "ro",	  "rw",		 "defaults",	  "async",
    "sync",	  "dirsync",	 "atime",	  "relatime",
    "norelatime", "strictatime", "nostrictatime", "lazytime",
    "nolazytime", "iversion",	 "noiversion",	  "diratime",
    "mand",	  "nomand",	 "symfollow",	  "nosymfollow",
    "silent",	  "loud",
};

/* Tell the notify pipe, if any, how the mount went. Bounded wait for a
 * reader; a missing reader is not an error of the mount. */
static void notify(const char *path, const char *line)
{
	double deadline = udfs_now() + NOTIFY_WAIT;
	int fd;

	if (!path)
		return;
	for (;;) {
		fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0 || errno != ENXIO || udfs_now() > deadline)
			break;
		usleep(10000);
	}
	if (fd < 0)
		return;
	(void)udfs_write_full(fd, line, strlen(line));
	close(fd);
}

/* Print "udfs: msg", tell the pipe, return exit status 1. */
static int fail(const struct udfs_fs *fs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(const struct udfs_fs *fs, const char *fmt, ...)
{
	char msg[1024], line[1100];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	udfs_fs_log(fs, LOG_ERR, "%s", msg);
	snprintf(line, sizeof(line), "error: %s\n", msg);
	notify(fs->notify_pipe, line);
	return 1;
}

/* Append opt to the comma-separated FUSE option string *s. */
static void add_opt(char **s, const char *opt)
{
	if (fuse_opt_add_opt_escaped(s, opt) != 0)
		udfs_die("out of memory");
}

static bool ignored(const char *opt)
{
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(ignored_opts); i++)
		if (strcmp(opt, ignored_opts[i]) == 0)
			return true;
	return false;
}

/* Absolute name of a file that may not exist yet: the daemon changes
 * directory to /. NULL with errno when its directory does not exist. */
static char *abs_file(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *abs, *out;

	if (slash == path)
		return udfs_xstrdup(path);
	dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (!dir)
		udfs_die("out of memory");
	abs = realpath(dir, NULL);
	free(dir);
	if (!abs)
		return NULL;
	out = udfs_xasprintf("%s/%s", abs, slash ? slash + 1 : path);
	free(abs);
	return out;
}

/* Parse one -o argument. Ours are consumed, the rest go to *fuse_opts.
 * Returns 0 or 1 (error printed). */
static int parse_opts(struct udfs_fs *fs, const char *arg, char **fuse_opts)
{
	char *copy = udfs_xstrdup(arg), *save = NULL, *o;
	uint64_t v;
	int err = 0;

	for (o = strtok_r(copy, ",", &save); o && !err;
	     o = strtok_r(NULL, ",", &save)) {
		char *val = strchr(o, '=');
		char *end;

		if (val)
			val++;
		if (ignored(o)) {
			continue;
		} else if (strcmp(o, "allow_other") == 0) {
			fs->allow_other = true;
		} else if (strcmp(o, "debug") == 0) {
			fs->debug = true;
		} else if (strcmp(o, "noreadahead") == 0) {
			fs->readahead_kb = 0;
		} else if (strncmp(o, "cache=", 6) == 0) {
			if (udfs_parse_size(val, &fs->cache_bytes) < 0)
				err = fail(fs, "-o cache=%s: not a size", val);
		} else if (strncmp(o, "threads=", 8) == 0) {
			errno = 0;
			v = strtoull(val, &end, 10);
			if (errno || end == val || *end || v < 1 || v > 1024)
				err = fail(
				    fs, "-o threads=%s: expected 1..1024", val);
			fs->threads = (unsigned)v;
		} else if (strncmp(o, "readahead_kb=", 13) == 0) {
			errno = 0;
			v = strtoull(val, &end, 10);
			if (errno || end == val || *end || v > (1u << 20))
				err = fail(
				    fs,
				    "-o readahead_kb=%s: expected 0..1048576",
				    val);
			fs->readahead_kb = (unsigned)v;
		} else if (strncmp(o, "notify_pipe=", 12) == 0) {
			/* Absolute: the daemon changes directory. */
			free(fs->notify_pipe);
			fs->notify_pipe = realpath(val, NULL);
			if (!fs->notify_pipe)
				err = fail(fs, "-o notify_pipe=%s: %s", val,
					   strerror(errno));
		} else if (strncmp(o, "log=", 4) == 0) {
			free(fs->log_path);
			fs->log_path = *val ? abs_file(val) : NULL;
			if (!fs->log_path)
				err = fail(fs, "-o log=%s: %s", val,
					   *val ? strerror(errno)
						: "needs a file name");
		} else {
			add_opt(fuse_opts, o);
		}
	}
	free(copy);
	return err;
}

/* Say that path (the store or mountpoint) is a FUSE mount whose daemon
 * died, and how to clear it. */
static void fail_dead(const struct udfs_fs *fs, const char *what,
		      const char *path)
{
	fail(
	    fs,
	    "%s %s: a FUSE mount whose daemon is gone (%s); unmount it with fusermount3 -u %s",
	    what, path, strerror(ENOTCONN), path);
}

/* Absolute path of an existing directory, or NULL after fail(). */
static char *check_dir(const struct udfs_fs *fs, const char *what,
		       const char *path)
{
	struct stat st;
	char *abs = realpath(path, NULL);

	if (abs && stat(abs, &st) < 0) {
		free(abs);
		abs = NULL;
	}
	if (!abs && errno == ENOTCONN) {
		/* What a killed daemon leaves: say so, and how to clear it. */
		fail_dead(fs, what, path);
		return NULL;
	}
	if (!abs) {
		fail(fs, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		fail(fs, "%s %s: not a directory", what, path);
		free(abs);
		return NULL;
	}
	return abs;
}

/* Undo the octal escapes (\040 and the like) of a /proc/self/mountinfo
 * field, in place. */
static void unescape_field(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] &&
		    s[3]) {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
					(s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = 0;
}

/* Is dir (absolute, resolved) itself the mount point of a FUSE
 * filesystem? Then *what says which ("fuse.udfs udfs:/store"); the caller
 * frees it. Mounting over it would stack a second daemon. */
static bool fuse_mounted(const char *dir, char **what)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char mnt[4096], type[256], source[4096];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%255s %4095s", type, source) != 2)
			continue;
		unescape_field(mnt);
		unescape_field(source);
		if (strcmp(mnt, dir) != 0)
			continue;
		/* The last entry for a path is the one on top. */
		found = strncmp(type, "fuse", 4) == 0;
		if (found) {
			free(*what);
			*what = udfs_xasprintf("%s %s", type, source);
		}
	}
	fclose(f);
	return found;
}

/* The mountpoint as an absolute path, or NULL after fail(). */
static char *check_mountpoint(const struct udfs_fs *fs, const char *path)
{
	char *abs = check_dir(fs, "mountpoint", path), *what = NULL;
	struct statvfs sv;

	if (abs && fuse_mounted(abs, &what)) {
		/* stat() may answer from the kernel's cache; statfs always
		 * asks the daemon. */
		if (statvfs(abs, &sv) < 0 && errno == ENOTCONN)
			fail_dead(fs, "mountpoint", path);
		else
			fail(
			    fs,
			    "mountpoint %s is already mounted (%s); unmount it first with fusermount3 -u %s",
			    path, what, path);
		free(abs);
		abs = NULL;
	}
	free(what);
	return abs;
}

/* Send the log to -o log=FILE from now on. 0 or 1 after fail(). */
static int open_log(struct udfs_fs *fs)
{
	if (!fs->log_path)
		return 0;
	fs->log_file = fopen(fs->log_path, "ae");
	if (!fs->log_file)
		return fail(fs, "-o log=%s: %s", fs->log_path, strerror(errno));
	setvbuf(fs->log_file, NULL, _IOLBF, 0);
	return 0;
}

struct ready_arg {
	const struct udfs_fs *fs;
	char *mountpoint;
	char *notify_pipe;
	unsigned readahead_kb;
};

/* Raise /sys/class/bdi/<dev>/read_ahead_kb of the mount so that buffered
 * reads reach the daemon as 1 MiB requests instead of 128 KiB. Root
 * only; a failure is logged, not fatal. */
static void set_readahead(const struct ready_arg *a, dev_t dev)
{
	char path[128], val[32];
	int fd;

	if (!a->readahead_kb || geteuid() != 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb",
		 major(dev), minor(dev));
	snprintf(val, sizeof(val), "%u\n", a->readahead_kb);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || udfs_write_full(fd, val, strlen(val)) < 0)
		udfs_fs_log(a->fs, LOG_WARNING, "%s: %s", path,
			    strerror(errno));
	else if (a->fs->debug)
		udfs_fs_log(a->fs, LOG_DEBUG, "%s = %u", path, a->readahead_kb);
	if (fd >= 0)
		close(fd);
}

static void *ready_thread(void *arg)
{
	struct ready_arg *a = arg;
	struct stat st;

	/* Blocks until the loop answered the kernel's INIT and GETATTR. */
	if (stat(a->mountpoint, &st) == 0) {
		set_readahead(a, st.st_dev);
		notify(a->notify_pipe, "ready\n");
	} else {
		char line[256];

		snprintf(line, sizeof(line), "error: %s: %s\n", a->mountpoint,
			 strerror(errno));
		notify(a->notify_pipe, line);
	}
	free(a->mountpoint);
	free(a->notify_pipe);
	free(a);
	return NULL;
}

static void start_ready_thread(struct udfs_fs *fs)
{
	struct ready_arg *a = udfs_xcalloc(1, sizeof(*a));
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t th;
	int err;

	a->fs = fs;
	a->mountpoint = udfs_xstrdup(fs->mountpoint);
	a->notify_pipe = fs->notify_pipe ? udfs_xstrdup(fs->notify_pipe) : NULL;
	a->readahead_kb = fs->readahead_kb;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Signals that end the daemon must reach the loop's threads, not
	 * this one (it inherits the mask). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&th, &attr, ready_thread, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		udfs_fs_log(fs, LOG_WARNING, "cannot start readiness thread");
		free(a->mountpoint);
		free(a->notify_pipe);
		free(a);
	}
	pthread_attr_destroy(&attr);
}

/* Parse argv into fs and the FUSE option string; 0, 1 (error) or -1
 * (help printed). */
static int parse_args(struct udfs_fs *fs, int argc, char **argv,
		      char **fuse_opts, const char **store, const char **mnt)
{
	bool dashdash = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!dashdash && a[0] == '-' && a[1]) {
			if (strcmp(a, "--") == 0) {
				dashdash = true;
			} else if (strcmp(a, "-f") == 0 ||
				   strcmp(a, "--foreground") == 0) {
				fs->foreground = true;
			} else if (strcmp(a, "-d") == 0) {
				fs->foreground = fs->debug = true;
			} else if (strcmp(a, "-h") == 0 ||
				   strcmp(a, "--help") == 0) {
				fputs(usage, stdout);
				return -1;
			} else if (strcmp(a, "-o") == 0) {
				if (++i == argc)
					return fail(fs, "-o needs an argument");
				if (parse_opts(fs, argv[i], fuse_opts))
					return 1;
			} else if (strncmp(a, "-o", 2) == 0) {
				if (parse_opts(fs, a + 2, fuse_opts))
					return 1;
			} else {
				return fail(
				    fs,
				    "mount: unknown option %s; see udfs mount --help",
				    a);
			}
		} else if (!*store) {
			*store = a;
		} else if (!*mnt) {
			*mnt = a;
		} else {
			return fail(fs, "mount: unexpected argument %s", a);
		}
	}
	if (!*store || !*mnt)
		return fail(
		    fs,
		    "mount: STORE and MOUNTPOINT are required; see udfs mount --help");
	return 0;
}

/* The store is checked now, for a clear error on the terminal; it is
 * opened for serving only after the fork (see the top of this file). */
static int check_store(struct udfs_fs *fs)
{
	int err;

	udfs_error_clear();
	err = udfs_store_open(fs->store_dir, UDFS_STORE_RDONLY, &fs->store);
	if (err < 0)
		return fail(fs, "%s", udfs_error_msg(err));
	/* Said at start, on the terminal: what this mount cannot follow. */
	err = udfs_store_follow_check(fs->store);
	if (err < 0)
		udfs_warn("warning: %s", udfs_error_msg(err));
	udfs_error_clear();
	udfs_store_close(fs->store);
	fs->store = NULL;
	return 0;
}

/* The libfuse arguments: our fixed options, then the user's -o. The
 * strings stay owned by the caller (*fuse_opts, *fsname). */
static void session_args(const struct udfs_fs *fs, const char *user_opts,
			 struct fuse_args *args, char **fuse_opts,
			 char **fsname)
{
	/* Immutable files, 0444: the kernel can check permissions itself. */
	add_opt(fuse_opts, "ro");
	add_opt(fuse_opts, "default_permissions");
	*fsname = udfs_xasprintf("fsname=udfs:%s", fs->store_dir);
	add_opt(fuse_opts, *fsname);
	add_opt(fuse_opts, "subtype=udfs");
	if (fs->allow_other)
		add_opt(fuse_opts, "allow_other");
	if (fuse_opt_add_arg(args, "udfs") || fuse_opt_add_arg(args, "-o") ||
	    fuse_opt_add_arg(args, *fuse_opts) ||
	    (user_opts && (fuse_opt_add_arg(args, "-o") ||
			   fuse_opt_add_arg(args, user_opts))) ||
	    (fs->debug && fs->foreground && fuse_opt_add_arg(args, "-d")))
		udfs_die("out of memory");
}

/* What udfs_mount_main has set up, for its one cleanup path. */
struct session {
	struct fuse_args args;
	struct fuse_loop_config *cfg;
	char *fuse_opts, *fsname;
	bool handlers, mounted;
};

/* Create the session, mount, daemonize, and choose where the log goes. */
static int start_session(struct udfs_fs *fs, const char *user_opts,
			 struct session *ss)
{
	session_args(fs, user_opts, &ss->args, &ss->fuse_opts, &ss->fsname);
	/* libfuse prints its own message for unknown options. */
	fs->se = fuse_session_new(&ss->args, &udfs_fuse_ops,
				  sizeof(udfs_fuse_ops), fs);
	if (!fs->se)
		return fail(fs, "mount: invalid options%s%s",
			    user_opts ? " in -o " : "",
			    user_opts ? user_opts : "");
	if (fuse_set_signal_handlers(fs->se) != 0)
		return fail(fs, "mount: cannot set signal handlers");
	ss->handlers = true;
	if (fuse_session_mount(fs->se, fs->mountpoint) != 0)
		return fail(fs, "mount: cannot mount %s", fs->mountpoint);
	ss->mounted = true;
	if (fuse_daemonize(fs->foreground) != 0)
		return fail(fs, "mount: cannot daemonize");
	if (fs->log_file) {
		fs->log_to_file = true;
	} else if (!fs->foreground) {
		openlog("udfs", LOG_PID, LOG_DAEMON);
		fs->syslog = true;
	}
	if (!fs->foreground || fs->log_to_file)
		udfs_fs_log(fs, LOG_INFO, "serving %s on %s (pid %d)",
			    fs->store_dir, fs->mountpoint, (int)getpid());
	return 0;
}

static void log_cache_stats(struct udfs_fs *fs)
{
	udfs_cache_stats st;

	udfs_cache_get_stats(fs->cache, &st);
	udfs_fs_log(
	    fs, LOG_DEBUG,
	    "cache: %llu hits, %llu misses, %llu waits, %llu decodes, %llu errors, %llu evictions, decode-ahead %llu queued %llu dropped %llu cancelled",
	    (unsigned long long)st.hits, (unsigned long long)st.misses,
	    (unsigned long long)st.waits, (unsigned long long)st.decodes,
	    (unsigned long long)st.errors, (unsigned long long)st.evictions,
	    (unsigned long long)st.ahead_queued,
	    (unsigned long long)st.ahead_dropped,
	    (unsigned long long)st.ahead_cancelled);
}

/* After the fork: open the store and the cache, start the threads and
 * serve until unmounted. The exit status. */
static int serve(struct udfs_fs *fs, struct session *ss)
{
	int err;

	udfs_error_clear();
	err = udfs_store_open(
	    fs->store_dir, UDFS_STORE_RDONLY | UDFS_STORE_LAZY_FDS, &fs->store);
	if (err < 0)
		return fail(fs, "%s", udfs_error_msg(err));
	/* Threads only now: fork() above keeps none. */
	err = udfs_cache_new(
	    fs->cache_bytes,
	    (unsigned)UDFS_MAX(UDFS_MIN(udfs_ncpus(), POOL_MAX), 2), NULL,
	    &fs->cache);
	if (err < 0)
		return fail(fs, "mount: %s", udfs_error_msg(err));
	udfs_cache_provider(fs->cache, &fs->provider);
	/* A lease naming the generations served, so that gc on any node
	 * keeps what this mount may still read (udfs(5)). */
	if (udfs_store_follow(fs->store) < 0)
		udfs_error_clear();
	ss->cfg = fuse_loop_cfg_create();
	if (!ss->cfg)
		return fail(fs, "mount: out of memory");
	fuse_loop_cfg_set_clone_fd(ss->cfg, 1);
	fuse_loop_cfg_set_max_threads(ss->cfg, fs->threads);
	fuse_loop_cfg_set_idle_threads(ss->cfg, fs->threads);
	start_ready_thread(fs);
	if (fs->debug)
		udfs_fs_log(fs, LOG_DEBUG,
			    "serving %s on %s: cache %llu bytes, %u threads",
			    fs->store_dir, fs->mountpoint,
			    (unsigned long long)fs->cache_bytes, fs->threads);
	/* 0 after fusermount3 -u, the signal number after SIGTERM, SIGINT
	 * or SIGHUP (both clean ends), or -errno. */
	err = fuse_session_loop_mt(fs->se, ss->cfg);
	if (err > 0 && fs->debug)
		udfs_fs_log(fs, LOG_DEBUG, "signal %d: unmounting", err);
	if (err < 0) {
		udfs_fs_log(fs, LOG_ERR, "session loop ended with error %d",
			    err);
		return 1;
	}
	if (fs->debug)
		log_cache_stats(fs);
	return 0;
}

int udfs_mount_main(int argc, char **argv)
{
	struct udfs_fs fs = {
	    .cache_bytes = DEFAULT_CACHE,
	    .threads = DEFAULT_THREADS,
	    .readahead_kb = DEFAULT_READAHEAD_KB,
	};
	struct session ss = {.args = FUSE_ARGS_INIT(0, NULL)};
	const char *store = NULL, *mnt = NULL;
	char *user_opts = NULL;
	int ret = 1, err;

	udfs_fs_nodes_init(&fs);
	udfs_fs_bounce_init(&fs);
	err = parse_args(&fs, argc, argv, &user_opts, &store, &mnt);
	if (err) {
		ret = err < 0 ? 0 : 2; /* a usage error (udfs(1)) */
		goto out;
	}
	fs.store_dir = check_dir(&fs, "store", store);
	if (!fs.store_dir)
		goto out;
	fs.mountpoint = check_mountpoint(&fs, mnt);
	if (!fs.mountpoint || check_store(&fs) || open_log(&fs))
		goto out;
	fs.uid = getuid();
	fs.gid = getgid();
	fs.started = (int64_t)time(NULL);
	if (start_session(&fs, user_opts, &ss) == 0)
		ret = serve(&fs, &ss);
out:
	if (ss.mounted)
		fuse_session_unmount(fs.se);
	if (ss.handlers)
		fuse_remove_signal_handlers(fs.se);
	if (fs.se)
		fuse_session_destroy(fs.se);
	if (ss.cfg)
		fuse_loop_cfg_destroy(ss.cfg);
	fuse_opt_free_args(&ss.args);
	/* Nodes and handles first: they and the cache hold models. */
	udfs_fs_nodes_free(&fs);
	udfs_fs_bounce_free(&fs);
	udfs_cache_free(fs.cache);
	udfs_store_close(fs.store);
	if (fs.syslog)
		closelog();
	if (fs.log_file)
		fclose(fs.log_file);
	free(fs.log_path);
	free(ss.fsname);
	free(ss.fuse_opts);
	free(user_opts);
	free(fs.notify_pipe);
	free(fs.mountpoint);
	free(fs.store_dir);
	return ret;
}

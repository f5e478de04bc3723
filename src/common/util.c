// SPDX-License-Identifier: MIT
/*
 * Shared helpers: the per-thread error message, die/warn, checked
 * allocation, full-length I/O and small parsers. See util.h.
 */
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t udfs_interrupted;

static const char *progname = "udfs";
static void *oom(size_t n);
static __thread char err_msg[1024];

void udfs_set_progname(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');
	progname = slash ? slash + 1 : argv0;
}

const char *udfs_progname(void) { return progname; }

int udfs_error(int err, const char *fmt, ...)
{
	va_list ap;

	if (err_msg[0])
		return err;
	va_start(ap, fmt);
	vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	va_end(ap);
	return err;
}

const char *udfs_error_msg(int err)
{
	if (err_msg[0])
		return err_msg;
	return strerror(err < 0 ? -err : err);
}

void udfs_error_clear(void) { err_msg[0] = '\0'; }

/* Length of the valid UTF-8 sequence at p that is not a C1 control
 * (U+0080..U+009F), or 0: such bytes are shown escaped. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	unsigned lo = 0x80, hi = 0xbf;

	if (p[0] < 0xc2 || p[0] > 0xf4 || (p[0] == 0xc2 && p[1] < 0xa0))
		return 0;
	/* Second-byte ranges that rule out overlong forms and surrogates. */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

size_t udfs_escape(char *buf, size_t len, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t out = 0;

	while (*p) {
		char esc[5];
		const char *src = (const char *)p;
		size_t n = 1;

		if (*p >= 0x80)
			n = utf8_len(p);
		if (n == 0 || *p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
			src = esc;
			n = 4;
			p++;
		} else {
			p += n;
		}
		for (size_t i = 0; i < n; i++, out++)
			if (out + 1 < len)
				buf[out] = src[i];
	}
	if (len)
		buf[UDFS_MIN(out, len - 1)] = '\0';
	return out;
}

/* "prog: message" on stderr, the message escaped (udfs_escape). */
static void vsay(const char *fmt, va_list ap)
{
	char *msg, *safe;
	size_t n;

	if (vasprintf(&msg, fmt, ap) < 0)
		oom(0);
	n = udfs_escape(NULL, 0, msg) + 1;
	safe = udfs_xmalloc(n);
	udfs_escape(safe, n, msg);
	fprintf(stderr, "%s: %s\n", progname, safe);
	free(safe);
	free(msg);
}

void udfs_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	exit(1);
}

void udfs_usage_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	exit(2);
}

void udfs_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
}

static void *oom(size_t n)
{
	fprintf(stderr, "%s: out of memory (%zu bytes)\n", progname, n);
	abort();
}

/* Buffers from this size up (a tensor's deltas, codes, low-rank values)
 * ask for transparent huge pages. */
#define HUGE_HINT_MIN ((size_t)8 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)

/*
 * Ask for huge pages on the whole 2 MiB pages inside fresh buffer [p, p +
 * n), before its first touch: one fault per 2 MiB instead of 512. Most
 * systems give them only on request (THP "madvise" mode); there the
 * faults of the fresh tensor-sized buffers an add allocates took 35% of a
 * default add's time (a VM, 128 MiB model: 2.7 s, 1.7 s with the hint).
 * A hint: where huge pages are off it changes nothing.
 */
static void hint_huge(void *p, size_t n)
{
	uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	uintptr_t e = ((uintptr_t)p + n) & ~(HUGE_PAGE - 1);

	if (n >= HUGE_HINT_MIN && e > a)
		(void)madvise((void *)a, e - a, MADV_HUGEPAGE);
}

void *udfs_malloc_huge(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p)
		hint_huge(p, n);
	return p;
}

void *udfs_xmalloc(size_t n)
{
	void *p = udfs_malloc_huge(n);

	return p ? p : oom(n);
}

void *udfs_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		return oom(n * size);
	hint_huge(p, n * size);
	return p;
}

void *udfs_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	return q ? q : oom(n);
}

char *udfs_xstrdup(const char *s)
{
	char *p = strdup(s);

	return p ? p : oom(strlen(s));
}

/* The formatted string in a malloc-ed buffer; NULL when out of memory. */
static char *vformat(const char *fmt, va_list ap)
{
	va_list again;
	char *s;
	int n;

	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, again);
	va_end(again);
	if (n < 0 || !(s = malloc((size_t)n + 1)))
		return NULL;
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

char *udfs_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = vformat(fmt, ap);
	va_end(ap);
	return s;
}

char *udfs_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = vformat(fmt, ap);
	va_end(ap);
	return s ? s : oom(0);
}

int udfs_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* the file is shorter than the catalog
					says */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int udfs_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int udfs_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0 && errno != EINVAL)
		ret = -errno;
	close(fd);
	return ret;
}

uint64_t udfs_hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

double udfs_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int udfs_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	/* strtoull would skip blanks and take a sign: only digits lead. */
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

char *udfs_fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	size_t u = 0;

	/* 1023.95 KiB and up show as the next unit, not "1024.0 KiB". */
	while (v >= 1023.95 && u + 1 < UDFS_ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

int udfs_rm_tree(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char *sub;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		sub = udfs_xasprintf("%s/%s", path, e->d_name);
		udfs_rm_tree(sub);
		free(sub);
	}
	closedir(d);
	return rmdir(path) < 0 ? -errno : 0;
}

int udfs_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur == rl.rlim_max)
		return 0;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return 0;
	/* An unlimited hard limit is still capped by fs.nr_open (1048576
	 * by default); ask for that much instead. */
	if (rl.rlim_max <= (rlim_t)1 << 20)
		return -errno;
	rl.rlim_cur = (rlim_t)1 << 20;
	return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

struct scratch {
	void *p[UDFS_SCRATCH_SLOTS];
	size_t cap[UDFS_SCRATCH_SLOTS];
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *arg)
{
	struct scratch *s = arg;

	for (int i = 0; i < UDFS_SCRATCH_SLOTS; i++)
		free(s->p[i]);
	free(s);
}

static void scratch_key_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

void *udfs_scratch(int slot, size_t n)
{
	struct scratch *s;

	pthread_once(&scratch_once, scratch_key_init);
	s = pthread_getspecific(scratch_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		pthread_setspecific(scratch_key, s);
	}
	if (s->cap[slot] < n) {
		void *p = realloc(s->p[slot], n);

		if (!p)
			return NULL;
		s->p[slot] = p;
		s->cap[slot] = n;
	}
	return s->p[slot];
}

/* A random file name under tmp/ or packs/: 16 hex digits. */
char *udfs_random_name(void)
{
	unsigned char r[8];
	FILE *f = fopen("/dev/urandom", "rb");
	uint64_t v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

	if (f) {
		if (fread(r, 1, sizeof(r), f) == sizeof(r))
			for (int i = 0; i < 8; i++)
				v = v << 8 ^ r[i];
		fclose(f);
	}
	return udfs_xasprintf("%016" PRIx64, v);
}

/* rename(2) that never replaces an existing entry. Filesystems without
 * RENAME_NOREPLACE (NFS) get a check first: a narrow race, only between
 * two random 64-bit names. */
int udfs_rename_noreplace(const char *from, const char *to)
{
	struct stat st;

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

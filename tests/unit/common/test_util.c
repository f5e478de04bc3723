// SPDX-License-Identifier: MIT
/*
 * Unit tests for the shared helpers: the per-thread error message (first
 * message wins, cleared on request, never seen by another thread), size
 * parsing and formatting, full-length reads that refuse to run past the
 * end of a file, the per-thread scratch buffers, removal of a directory
 * tree, the stable FNV-1a hash of names, the escaping of names for a
 * terminal (control characters and invalid UTF-8 as \xHH, valid UTF-8
 * kept, truncation like snprintf), and raising the soft limit on open
 * files to the hard one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"

static void test_error(void)
{
	int err;

	udfs_error_clear();
	/* No message: strerror of the errno, with either sign. */
	CHECK_EQ_STR(udfs_error_msg(-ENOENT), strerror(ENOENT));
	CHECK_EQ_STR(udfs_error_msg(ENOENT), strerror(ENOENT));
	err = udfs_error(-EINVAL, "first %d", 1);
	CHECK_EQ_INT(err, -EINVAL);
	CHECK_EQ_INT(udfs_error(-EIO, "second"), -EIO);
	CHECK_EQ_STR(udfs_error_msg(-EIO), "first 1");
	udfs_error_clear();
	CHECK_EQ_STR(udfs_error_msg(-EIO), strerror(EIO));
	udfs_error(-EIO, "third %s", "x");
	CHECK_EQ_STR(udfs_error_msg(-EIO), "third x");
	udfs_error_clear();

	/* A very long message is cut, not overrun. */
	{
		char big[5000];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		udfs_error(-EIO, "%s", big);
		CHECK(strlen(udfs_error_msg(-EIO)) < sizeof(big) - 1);
		CHECK(strlen(udfs_error_msg(-EIO)) > 100);
		udfs_error_clear();
	}
}

struct err_thread {
	pthread_barrier_t *bar;
	const char *mine;
	char seen_before[64]; /* message visible before recording one */
	char seen_after[64];  /* after both threads recorded theirs */
};

static void *err_main(void *arg)
{
	struct err_thread *t = arg;

	pthread_barrier_wait(t->bar);
	snprintf(t->seen_before, sizeof(t->seen_before), "%s",
		 udfs_error_msg(-EPERM));
	udfs_error(-EIO, "%s", t->mine);
	pthread_barrier_wait(t->bar);
	snprintf(t->seen_after, sizeof(t->seen_after), "%s",
		 udfs_error_msg(-EIO));
	pthread_barrier_wait(t->bar);
	return NULL;
}

static void test_error_threads(void)
{
	pthread_barrier_t bar;
	pthread_t th[2];
	struct err_thread t[2] = {
	    {.bar = &bar, .mine = "thread one"},
	    {.bar = &bar, .mine = "thread two"},
	};

	pthread_barrier_init(&bar, NULL, 2);
	udfs_error_clear();
	udfs_error(-EIO, "main thread");
	for (int i = 0; i < 2; i++)
		CHECK_EQ_INT(pthread_create(&th[i], NULL, err_main, &t[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_STR(t[i].seen_before, strerror(EPERM));
		CHECK_EQ_STR(t[i].seen_after, t[i].mine);
	}
	CHECK_EQ_STR(udfs_error_msg(-EIO), "main thread");
	udfs_error_clear();
	pthread_barrier_destroy(&bar);
}

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
	    {"4096", 4096},
	    {"0", 0},
	    {"256M", 256ull << 20},
	    {"256m", 256ull << 20},
	    {"1G", 1ull << 30},
	    {"1K", 1024},
	    {"1KiB", 1024},
	    {"1KB", 1024},
	    {"2MiB", 2ull << 20},
	    {"3T", 3ull << 40},
	    {"16777215T", 16777215ull << 40},
	    {"18446744073709551615", UINT64_MAX},
	};
	static const char *const bad[] = {
	    "",
	    "junk",
	    "M",
	    "12X",
	    "1.5G",
	    "1GG",
	    "1 G",
	    "1Gx",
	    "1iB",
	    "-1",
	    "-1G",
	    " -1",
	    " -1G",
	    "+-1",
	    "\t-5",
	    "18446744073709551616",    /* 2^64 */
	    "99999999999999999999999", /* far past u64 */
	    "16777216T",	       /* 2^64 bytes */
	    "17179869184G",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 12345;
		int err = udfs_parse_size(ok[i].s, &v);

		if (err || v != ok[i].v)
			fprintf(stderr, "parse_size(\"%s\")\n", ok[i].s);
		CHECK_EQ_INT(err, 0);
		CHECK(v == ok[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 12345;
		int err = udfs_parse_size(bad[i], &v);

		if (err >= 0)
			fprintf(stderr, "parse_size(\"%s\") accepted: %llu\n",
				bad[i], (unsigned long long)v);
		CHECK(err < 0);
		CHECK(v == 12345); /* untouched on failure */
	}
	CHECK(udfs_parse_size(NULL, &(uint64_t){0}) < 0);
}

static void test_fmt_bytes(void)
{
	char buf[32];

	CHECK_EQ_STR(udfs_fmt_bytes(0, buf, sizeof(buf)), "0 B");
	CHECK_EQ_STR(udfs_fmt_bytes(1023, buf, sizeof(buf)), "1023 B");
	CHECK_EQ_STR(udfs_fmt_bytes(1024, buf, sizeof(buf)), "1.0 KiB");
	CHECK_EQ_STR(udfs_fmt_bytes(1536, buf, sizeof(buf)), "1.5 KiB");
	CHECK_EQ_STR(udfs_fmt_bytes(256ull << 20, buf, sizeof(buf)),
		     "256.0 MiB");
	CHECK_EQ_STR(udfs_fmt_bytes(3ull << 29, buf, sizeof(buf)), "1.5 GiB");
	CHECK_EQ_STR(udfs_fmt_bytes(5ull << 40, buf, sizeof(buf)), "5.0 TiB");
	CHECK_EQ_STR(udfs_fmt_bytes(2048ull << 40, buf, sizeof(buf)),
		     "2048.0 TiB");
	/* The largest value fits the documented 16 bytes. */
	CHECK(strlen(udfs_fmt_bytes(UINT64_MAX, buf, 16)) < 16);
	CHECK(udfs_fmt_bytes(1, buf, sizeof(buf)) == buf);
}

static void test_pread(const char *dir)
{
	char *path = udfs_xasprintf("%s/f", dir);
	unsigned char data[100], got[100];
	int fd;

	for (int i = 0; i < 100; i++)
		data[i] = (unsigned char)(i * 7);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	if (fd < 0)
		goto out;
	CHECK_EQ_INT(udfs_write_full(fd, data, sizeof(data)), 0);
	CHECK_EQ_INT(udfs_pread_full(fd, got, 100, 0), 0);
	CHECK(memcmp(got, data, 100) == 0);
	CHECK_EQ_INT(udfs_pread_full(fd, got, 10, 90), 0);
	CHECK(memcmp(got, data + 90, 10) == 0);
	CHECK_EQ_INT(udfs_pread_full(fd, got, 0, 100), 0);
	CHECK_EQ_INT(udfs_pread_full(fd, got, 11, 90), -EIO);
	CHECK_EQ_INT(udfs_pread_full(fd, got, 1, 100), -EIO);
	CHECK_EQ_INT(udfs_pread_full(fd, got, 1, 1ull << 40), -EIO);
	close(fd);
	CHECK_EQ_INT(udfs_pread_full(-1, got, 1, 0), -EBADF);
	CHECK_EQ_INT(udfs_write_full(-1, data, 1), -EBADF);
out:
	free(path);
}

static void *scratch_main(void *arg)
{
	void **p = arg;

	p[0] = udfs_scratch(0, 4096);
	if (p[0])
		memset(p[0], 0x11, 4096);
	p[1] = udfs_scratch(0, 100);
	return NULL;
}

static void test_scratch(void)
{
	unsigned char *a, *b, *c;
	void *other[2] = {NULL, NULL};
	pthread_t th;

	a = udfs_scratch(0, 16);
	CHECK(a != NULL);
	memset(a, 0xaa, 16);
	/* Smaller or equal requests keep the buffer and its bytes. */
	CHECK(udfs_scratch(0, 8) == a);
	CHECK(udfs_scratch(0, 16) == a);
	/* Growth keeps the contents (a realloc) and the full new size is
	 * writable. */
	b = udfs_scratch(0, 1 << 20);
	CHECK(b != NULL);
	if (b) {
		CHECK(b[0] == 0xaa && b[15] == 0xaa);
		memset(b, 0x55, 1 << 20);
	}
	/* Slots are independent. */
	c = udfs_scratch(1, 1 << 20);
	CHECK(c != NULL);
	CHECK(c != b);
	if (c)
		memset(c, 0x66, 1 << 20);
	if (b)
		CHECK(b[(1 << 20) - 1] == 0x55);
	for (int s = 0; s < UDFS_SCRATCH_SLOTS; s++)
		CHECK(udfs_scratch(s, 1) != NULL);
	/* Another thread gets its own buffers, freed when it exits. */
	CHECK_EQ_INT(pthread_create(&th, NULL, scratch_main, other), 0);
	pthread_join(th, NULL);
	CHECK(other[0] != NULL);
	CHECK(other[0] == other[1]);
	CHECK(udfs_scratch(0, 1 << 20) == b);
	if (b)
		CHECK(b[12345] == 0x55);
}

static void mkfile(const char *path, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char buf[64] = {0};

	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK_EQ_INT(udfs_write_full(fd, buf, n), 0);
		close(fd);
	}
}

static void test_rm_tree(const char *dir)
{
	char *root = udfs_xasprintf("%s/tree", dir);
	char *p;
	struct stat st;

	CHECK_EQ_INT(mkdir(root, 0755), 0);
	p = udfs_xasprintf("%s/a", root);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	free(p);
	p = udfs_xasprintf("%s/a/b", root);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	free(p);
	p = udfs_xasprintf("%s/a/b/c", root);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	free(p);
	p = udfs_xasprintf("%s/a/b/c/deep", root);
	mkfile(p, 10);
	free(p);
	p = udfs_xasprintf("%s/a/f1", root);
	mkfile(p, 20);
	free(p);
	p = udfs_xasprintf("%s/.hidden", root);
	mkfile(p, 1);
	free(p);
	p = udfs_xasprintf("%s/empty", root);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	free(p);
	/* A symlink to a file outside the tree: removed, target kept. */
	{
		char *target = udfs_xasprintf("%s/outside", dir);

		mkfile(target, 5);
		p = udfs_xasprintf("%s/link", root);
		CHECK_EQ_INT(symlink(target, p), 0);
		free(p);
		CHECK_EQ_INT(udfs_rm_tree(root), 0);
		CHECK(lstat(root, &st) < 0 && errno == ENOENT);
		CHECK_EQ_INT(stat(target, &st), 0);
		/* A single file, and a path that does not exist. */
		CHECK_EQ_INT(udfs_rm_tree(target), 0);
		CHECK(lstat(target, &st) < 0);
		CHECK_EQ_INT(udfs_rm_tree(target), 0);
		free(target);
	}
	free(root);
}

static void test_hash(void)
{
	/* FNV-1a 64 reference values. */
	CHECK(udfs_hash_str("") == 0xcbf29ce484222325ULL);
	CHECK(udfs_hash_str("a") == 0xaf63dc4c8601ec8cULL);
	CHECK(udfs_hash_str("foobar") == 0x85944171f73967e8ULL);
	CHECK(udfs_hash_str("model.layers.0.mlp.up_proj.weight") ==
	      udfs_hash_str("model.layers.0.mlp.up_proj.weight"));
	CHECK(udfs_hash_str("ab") != udfs_hash_str("ba"));
	/* Bytes above 0x7f hash as unsigned. */
	CHECK(udfs_hash_str("\xff") ==
	      ((0xcbf29ce484222325ULL ^ 0xff) * 0x100000001b3ULL));
}

static void test_escape(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"model.layers.0.weight", "model.layers.0.weight"},
	    {"evil\033[31mred\007", "evil\\x1b[31mred\\x07"},
	    {"a\nb\r\tc\177", "a\\x0ab\\x0d\\x09c\\x7f"},
	    {"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", /* é 日 😀 */
	     "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80"},
	    {"c1 \xc2\x9b", "c1 \\xc2\\x9b"}, /* U+009B, CSI */
	    {"bad \x9b \xff \xc3", "bad \\x9b \\xff \\xc3"},
	    {"overlong \xc0\xaf \xe0\x80\xaf", /* '/' in 2 and 3 bytes */
	     "overlong \\xc0\\xaf \\xe0\\x80\\xaf"},
	    {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = udfs_escape(buf, sizeof(buf), cases[i].in);

		CHECK_EQ_STR(buf, cases[i].out);
		CHECK_EQ_INT((int)n, (int)strlen(cases[i].out));
	}
	/* Truncated like snprintf: NUL-terminated, full length returned. */
	CHECK_EQ_INT((int)udfs_escape(buf, 4, "ab\033"), 6);
	CHECK_EQ_STR(buf, "ab\\");
	CHECK_EQ_INT((int)udfs_escape(NULL, 0, "\033"), 4);
}

/* The soft RLIMIT_NOFILE goes up to the hard limit; a second call is a
 * no-op. */
static void test_raise_nofile(void)
{
	struct rlimit rl, low;

	CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &rl), 0);
	low = rl;
	low.rlim_cur = rl.rlim_max < 64 ? rl.rlim_max : 64;
	CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
	CHECK_EQ_INT(udfs_raise_nofile(), 0);
	CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &low), 0);
	CHECK(low.rlim_cur == rl.rlim_max || (rl.rlim_max > (rlim_t)1 << 20 &&
					      low.rlim_cur == (rlim_t)1 << 20));
	CHECK_EQ_INT(udfs_raise_nofile(), 0);
}

int main(void)
{
	char tmpl[] = "/tmp/udfs-test-util.XXXXXX";
	char *dir = mkdtemp(tmpl);

	if (!dir) {
		perror("mkdtemp");
		return 1;
	}
	test_error();
	test_error_threads();
	test_parse_size();
	test_fmt_bytes();
	test_pread(dir);
	test_scratch();
	test_rm_tree(dir);
	test_hash();
	test_escape();
	test_raise_nofile();
	CHECK_EQ_INT(udfs_rm_tree(dir), 0);
	CHECK_DONE();
}

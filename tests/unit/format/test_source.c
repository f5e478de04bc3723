// SPDX-License-Identifier: MIT
/*
 * Unit tests for model sources: a single file, a sharded Hugging Face
 * directory with its index, and every way a directory can be wrong (index
 * and shards disagreeing, names escaping the directory, symlinks leaving
 * it, fifos). Each case builds its files in a fresh temporary directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "format/source.h"
#include "store/store.h"

static char *top; /* the temporary directory of this run */
static int case_no;

static void put(const char *dir, const char *name, const void *p, size_t n)
{
	char *path = udfs_xasprintf("%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK_EQ_INT(udfs_write_full(fd, p, n), 0);
		close(fd);
	}
	free(path);
}

static void put_str(const char *dir, const char *name, const char *s)
{
	put(dir, name, s, strlen(s));
}

/* A safetensors file holding one 4-byte U8 tensor per comma-separated
 * name in names. */
static void put_st(const char *dir, const char *file, const char *names)
{
	char json[4096], *list = udfs_xstrdup(names), *save = NULL;
	unsigned char *img;
	size_t n = 0, k = 0, hl;

	n += (size_t)snprintf(json, sizeof(json),
			      "{\"__metadata__\":{\"format\":\"pt\"}");
	for (char *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save), k++)
		n += (size_t)snprintf(json + n, sizeof(json) - n,
				      ",\"%s\":{\"dtype\":\"U8\",\"shape\":[4],"
				      "\"data_offsets\":[%zu,%zu]}",
				      t, 4 * k, 4 * k + 4);
	n += (size_t)snprintf(json + n, sizeof(json) - n, "}");
	hl = n;
	img = udfs_xcalloc(1, 8 + hl + 4 * k);
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, hl);
	memset(img + 8 + hl, 0x5a, 4 * k);
	put(dir, file, img, 8 + hl + 4 * k);
	free(img);
	free(list);
}

/* A fresh directory for one case. */
static char *newdir(void)
{
	char *d = udfs_xasprintf("%s/c%02d", top, ++case_no);

	CHECK_EQ_INT(mkdir(d, 0755), 0);
	return d;
}

/* Two shards, an index that matches them, config.json. */
static char *good_dir(void)
{
	char *d = newdir();

	put_st(d, "model-00001-of-00002.safetensors", "a,b");
	put_st(d, "model-00002-of-00002.safetensors", "c");
	put_str(d, "config.json", "{\"model_type\":\"llama\"}\n");
	put_str(d, "model.safetensors.index.json",
		"{\"metadata\":{\"total_size\":12},\"weight_map\":{"
		"\"a\":\"model-00001-of-00002.safetensors\","
		"\"b\":\"model-00001-of-00002.safetensors\","
		"\"c\":\"model-00002-of-00002.safetensors\"}}");
	return d;
}

static void expect_fail(const char *path, const char *want)
{
	udfs_source *s = NULL;
	int err;

	udfs_error_clear();
	err = udfs_source_open(path, &s);
	CHECK(err < 0);
	CHECK(s == NULL);
	if (!strstr(udfs_error_msg(err), want)) {
		fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", path,
			udfs_error_msg(err), want);
		CHECK(0);
	}
	if (getenv("UDFS_TEST_VERBOSE"))
		fprintf(stderr, "-> %s\n", udfs_error_msg(err));
	udfs_source_close(s);
}

static void test_single(void)
{
	char *d = newdir(), *p;
	udfs_source *s = NULL;
	const udfs_source_file *f = NULL;
	const udfs_st_tensor *t;

	put_st(d, "m.safetensors", "x,y");
	p = udfs_xasprintf("%s/m.safetensors", d);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_source_open(p, &s), 0);
	if (s) {
		CHECK_EQ_INT(s->n_files, 1);
		CHECK_EQ_STR(s->files[0].path, "m.safetensors");
		CHECK_EQ_STR(s->label, p);
		CHECK_EQ_INT(s->files[0].kind, UDFS_FILE_SAFETENSORS);
		CHECK(s->files[0].map != NULL && s->files[0].st != NULL);
		CHECK_EQ_INT(s->n_tensors, 2);
		t = udfs_source_find(s, "y", &f);
		CHECK(t && f == &s->files[0] && t->begin == 4);
		CHECK(udfs_source_find(s, "z", &f) == NULL && f == NULL);
		CHECK_EQ_INT(s->files[0].map[s->files[0].st->data_offset],
			     0x5a);
	}
	udfs_source_close(s);
	udfs_source_close(NULL);
	free(p);

	/* Not a .safetensors name. */
	put_str(d, "m.bin", "x");
	p = udfs_xasprintf("%s/m.bin", d);
	expect_fail(p, "not a .safetensors file");
	free(p);
	p = udfs_xasprintf("%s/missing.safetensors", d);
	expect_fail(p, "No such file");
	free(p);
	/* A broken header is reported with the path. */
	put_str(d, "bad.safetensors", "1234");
	p = udfs_xasprintf("%s/bad.safetensors", d);
	expect_fail(p, "bad.safetensors: file is 4 bytes");
	free(p);
	free(d);
}

static void test_dir(void)
{
	char *d = good_dir(), *sub, *lnk;
	udfs_source *s = NULL;
	const udfs_source_file *f = NULL;
	const udfs_st_tensor *t;

	/* Dotfiles and subdirectories are kept (a .safetensors there is
	 * verbatim), .git/ and .cache/ skipped; an empty file, and a symlink
	 * that stays inside. */
	put_str(d, ".gitattributes", "*.safetensors filter=lfs\n");
	put_str(d, ".hidden.safetensors", "junk");
	sub = udfs_xasprintf("%s/sub", d);
	CHECK_EQ_INT(mkdir(sub, 0755), 0);
	put_str(sub, "x.safetensors", "junk");
	/* Any name a directory holds is kept as it is (udfs(5)). */
	put_str(sub, "a\001b", "x");
	free(sub);
	sub = udfs_xasprintf("%s/.git", d);
	CHECK_EQ_INT(mkdir(sub, 0755), 0);
	put_str(sub, "HEAD", "ref: refs/heads/main\n");
	free(sub);
	sub = udfs_xasprintf("%s/.cache", d);
	CHECK_EQ_INT(mkdir(sub, 0755), 0);
	put_str(sub, "x", "y");
	put_str(d, "empty.txt", "");
	lnk = udfs_xasprintf("%s/link.json", d);
	CHECK_EQ_INT(symlink("config.json", lnk), 0);
	free(lnk);
	lnk = udfs_xasprintf("%s/sub/up.json", d);
	CHECK_EQ_INT(symlink("../config.json", lnk), 0);
	free(lnk);

	udfs_error_clear();
	CHECK_EQ_INT(udfs_source_open(d, &s), 0);
	if (!s) {
		fprintf(stderr, "%s\n", udfs_error_msg(-EINVAL));
		free(sub);
		free(d);
		return;
	}
	CHECK_EQ_INT(s->n_files, 11);
	CHECK_EQ_STR(s->files[0].path, ".gitattributes");
	CHECK_EQ_STR(s->files[1].path, ".hidden.safetensors");
	CHECK_EQ_STR(s->files[2].path, "config.json");
	CHECK_EQ_STR(s->files[3].path, "empty.txt");
	CHECK_EQ_STR(s->files[4].path, "link.json");
	CHECK_EQ_STR(s->files[5].path, "model-00001-of-00002.safetensors");
	CHECK_EQ_STR(s->files[6].path, "model-00002-of-00002.safetensors");
	CHECK_EQ_STR(s->files[7].path, "model.safetensors.index.json");
	CHECK_EQ_STR(s->files[8].path, "sub/a\001b");
	CHECK_EQ_STR(s->files[9].path, "sub/up.json");
	CHECK_EQ_STR(s->files[10].path, "sub/x.safetensors");
	CHECK_EQ_INT(s->files[1].kind, UDFS_FILE_VERBATIM);
	CHECK_EQ_INT(s->files[2].kind, UDFS_FILE_VERBATIM);
	CHECK_EQ_INT(s->files[5].kind, UDFS_FILE_SAFETENSORS);
	CHECK_EQ_INT(s->files[7].kind, UDFS_FILE_VERBATIM);
	CHECK_EQ_INT(s->files[10].kind, UDFS_FILE_VERBATIM);
	CHECK(s->files[2].st == NULL && s->files[6].st != NULL);
	CHECK(s->files[3].map == NULL && s->files[3].size == 0);
	CHECK_EQ_INT(s->files[4].size, s->files[2].size);
	CHECK_EQ_INT(s->files[9].size, s->files[2].size);
	/* A symlink is read through: its real path is the target's. */
	CHECK(strstr(s->files[4].real, "/config.json") != NULL);
	CHECK_EQ_INT(s->files[4].ino, s->files[2].ino);
	CHECK_EQ_INT(s->mode, 0644);
	CHECK_EQ_INT(s->n_tensors, 3);
	t = udfs_source_find(s, "c", &f);
	CHECK(t && f == &s->files[6]);
	t = udfs_source_find(s, "b", &f);
	CHECK(t && f == &s->files[5] && t->begin == 4);
	CHECK(udfs_source_find(s, "d", NULL) == NULL);
	udfs_source_close(s);
	free(sub);
	free(d);
}

/* A private file makes the whole model private (udfs(5)). */
static void test_mode(void)
{
	char *d = good_dir(), *p = udfs_xasprintf("%s/config.json", d);
	udfs_source *s = NULL;

	CHECK_EQ_INT(chmod(p, 0600), 0);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_source_open(d, &s), 0);
	if (s) {
		CHECK_EQ_INT(s->mode, 0600);
		CHECK_EQ_INT(s->files[0].mode, 0600);
		CHECK_EQ_INT(s->files[1].mode, 0644);
	}
	udfs_source_close(s);
	CHECK_EQ_INT(chmod(p, 0640), 0);
	CHECK_EQ_INT(udfs_source_open(d, &s), 0);
	if (s)
		CHECK_EQ_INT(s->mode, 0640);
	udfs_source_close(s);
	free(p);
	free(d);
}

/* Hugging Face cache: the files of REPO/snapshots/REV are symlinks to
 * ../../blobs/; followed there, refused elsewhere. */
static void test_hf_cache(void)
{
	char *repo = newdir(), *d, *p, *q;
	udfs_source *s = NULL;
	static const char *const parts[] = {"blobs", "snapshots",
					    "snapshots/abc"};

	for (size_t i = 0; i < 3; i++) {
		p = udfs_xasprintf("%s/%s", repo, parts[i]);
		CHECK_EQ_INT(mkdir(p, 0755), 0);
		free(p);
	}
	p = udfs_xasprintf("%s/blobs", repo);
	put_st(p, "1111", "a");
	put_str(p, "2222", "{}");
	free(p);
	d = udfs_xasprintf("%s/snapshots/abc", repo);
	p = udfs_xasprintf("%s/model.safetensors", d);
	CHECK_EQ_INT(symlink("../../blobs/1111", p), 0);
	free(p);
	p = udfs_xasprintf("%s/sub", d);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	q = udfs_xasprintf("%s/config.json", p);
	CHECK_EQ_INT(symlink("../../../blobs/2222", q), 0);
	free(q);
	free(p);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_source_open(d, &s), 0);
	if (s) {
		CHECK_EQ_INT(s->n_files, 2);
		CHECK_EQ_STR(s->files[0].path, "model.safetensors");
		CHECK_EQ_STR(s->files[1].path, "sub/config.json");
		CHECK(strstr(s->files[0].real, "/blobs/1111") != NULL);
		CHECK_EQ_INT(s->n_tensors, 1);
	}
	udfs_source_close(s);
	/* Not a snapshot (no snapshots/ parent): the same links lead out. */
	p = udfs_xasprintf("%s/snapshots", repo);
	q = udfs_xasprintf("%s/snap", repo);
	CHECK_EQ_INT(rename(p, q), 0);
	free(d);
	d = udfs_xasprintf("%s/snap/abc", repo);
	expect_fail(d, "points outside the model directory");
	expect_fail(d, "cp -rL");
	free(q);
	free(p);
	free(d);
	free(repo);
}

static void test_bad_dirs(void)
{
	char *d, *p;

	/* The index names a shard that does not exist. */
	d = good_dir();
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
		"\"b\":\"model-00001-of-00002.safetensors\","
		"\"c\":\"model-00003-of-00002.safetensors\"}}");
	expect_fail(d, "model-00003-of-00002.safetensors is not a "
		       "safetensors file");
	free(d);

	/* The index misses a tensor. */
	d = good_dir();
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
		"\"c\":\"model-00002-of-00002.safetensors\"}}");
	expect_fail(d, "model.safetensors.index.json: tensor \"b\" of "
		       "model-00001-of-00002.safetensors is missing");
	free(d);

	/* The index names a tensor no shard has. */
	d = good_dir();
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
		"\"b\":\"model-00001-of-00002.safetensors\","
		"\"z\":\"model-00001-of-00002.safetensors\","
		"\"c\":\"model-00002-of-00002.safetensors\"}}");
	expect_fail(d, "tensor \"z\" is not in");
	free(d);

	/* The index puts a tensor in the wrong shard. */
	d = good_dir();
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
		"\"b\":\"model-00001-of-00002.safetensors\","
		"\"c\":\"model-00001-of-00002.safetensors\"}}");
	expect_fail(d, "model.safetensors.index.json: tensor \"c\" is in "
		       "model-00002-of-00002.safetensors but the index names "
		       "model-00001-of-00002.safetensors");
	free(d);

	/* A shard name escaping the directory. */
	d = good_dir();
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
	expect_fail(d, "not a plain file name");
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"sub/x.safetensors\"}}");
	expect_fail(d, "not a plain file name");
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"..\"}}");
	expect_fail(d, "not a plain file name");
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":7}}");
	expect_fail(d, "not a string");
	put_str(d, "model.safetensors.index.json", "{\"weight_map\":[]}");
	expect_fail(d, "\"weight_map\" is not an object");
	put_str(d, "model.safetensors.index.json", "{\"metadata\":{}}");
	expect_fail(d, "\"weight_map\" is missing");
	put_str(d, "model.safetensors.index.json", "[]");
	expect_fail(d, "not a JSON object");
	put_str(d, "model.safetensors.index.json", "{\"weight_map\":{");
	expect_fail(d, "model.safetensors.index.json: not valid JSON");
	put_str(d, "model.safetensors.index.json", "");
	expect_fail(d, "not valid JSON");
	put_str(d, "model.safetensors.index.json",
		"{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}");
	expect_fail(d, "duplicate");
	free(d);

	/* One tensor name in two shards (no index). */
	d = newdir();
	put_st(d, "a.safetensors", "w,x");
	put_st(d, "b.safetensors", "y,x");
	expect_fail(d, "tensor \"x\" is in both a.safetensors and "
		       "b.safetensors");
	free(d);

	/* A broken shard is named. */
	d = good_dir();
	put(d, "model-00002-of-00002.safetensors", "\x02\0\0\0\0\0\0\0[]", 10);
	expect_fail(d, "model-00002-of-00002.safetensors: header is not a "
		       "JSON object");
	free(d);

	/* Symlinks leaving the directory, dangling, or to a fifo. */
	d = good_dir();
	p = udfs_xasprintf("%s/evil.json", d);
	CHECK_EQ_INT(symlink("/etc/hostname", p), 0);
	expect_fail(d, "points outside the model directory");
	unlink(p);
	CHECK_EQ_INT(symlink("../c01", p), 0);
	expect_fail(d, "points outside");
	unlink(p);
	CHECK_EQ_INT(symlink("nowhere", p), 0);
	expect_fail(d, "evil.json");
	unlink(p);
	free(p);
	p = udfs_xasprintf("%s/fifo", d);
	CHECK_EQ_INT(mkfifo(p, 0600), 0);
	expect_fail(d, "fifo is not a regular file");
	unlink(p);
	free(p);
	/* A symlink to a directory, even inside, is not followed. */
	p = udfs_xasprintf("%s/sub", d);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	free(p);
	p = udfs_xasprintf("%s/dirlink", d);
	CHECK_EQ_INT(symlink("sub", p), 0);
	expect_fail(d, "symlink dirlink points to a directory");
	unlink(p);
	free(p);
	free(d);

	/* Regular files but no safetensors at all; not a directory. */
	d = newdir();
	put_str(d, "config.json", "{}");
	expect_fail(d, "no .safetensors files");
	free(d);
	expect_fail("/dev/null", "not a regular file or a directory");
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	top = udfs_xasprintf("%s/udfs-test-source-XXXXXX",
			     tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(top)) {
		perror(top);
		return 1;
	}
	test_single();
	test_dir();
	test_bad_dirs();
	test_mode();
	test_hf_cache();
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(top);
	CHECK_DONE();
}

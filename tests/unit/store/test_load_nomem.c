// SPDX-License-Identifier: MIT
/*
 * The mount daemon's store calls when memory runs out. A lookup loads a
 * model (catalog rows, tensor maps, the name index, the pack opened), a
 * readdir lists the models, and the daemon follows new generations and
 * refreshes its lease while it serves: each must answer -ENOMEM and leave
 * the store usable, never abort. With failalloc.h, for every n until a
 * call needs fewer than n allocations, failing the n-th must give -ENOMEM, leak
 * nothing (LeakSanitizer, under `make asan`), and the same call made again must
 * succeed. SQLite's own allocations (a shared library) are not failed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "common/prng.h"
#include "common/util.h"
#include "failalloc.h"
#include "store/store.h"
#include "store_fixture.h"
#include "write/add.h"

/* A safetensors file of two BF16 tensors (rows x 256 and 256), the
 * weights from seed: a few chunks each. */
static void write_model(const char *path, uint64_t seed, unsigned rows)
{
	size_t n1 = (size_t)rows * 256, n2 = 256, data = 2 * (n1 + n2);
	char json[512];
	int hl = snprintf(json, sizeof(json),
			  "{\"__metadata__\":{\"format\":\"pt\"},"
			  "\"a.weight\":{\"dtype\":\"BF16\",\"shape\":[%u,256],"
			  "\"data_offsets\":[0,%zu]},"
			  "\"b.bias\":{\"dtype\":\"BF16\",\"shape\":[256],"
			  "\"data_offsets\":[%zu,%zu]}}      ",
			  rows, 2 * n1, 2 * n1, data);
	unsigned char *img;
	uint64_t r = seed;

	hl -= hl % 8;
	img = udfs_xmalloc(8 + (size_t)hl + data);
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, (size_t)hl);
	for (size_t i = 0; i < n1 + n2; i++) {
		/* Weights near +-0.05, the low bits from seed: a fine-tune
		 * differs from its base in its mantissas only. */
		uint16_t v =
		    (uint16_t)(0x3d4c ^ ((udfs_splitmix64(&r) >> 60) & 0x8007));

		img[8 + (size_t)hl + 2 * i] = (unsigned char)v;
		img[8 + (size_t)hl + 2 * i + 1] = (unsigned char)(v >> 8);
	}
	write_bytes(path, img, 8 + (size_t)hl + data);
	free(img);
}

/* A model directory at top/name: model.safetensors and config.json. */
static char *model_dir(const char *top, const char *name, uint64_t seed)
{
	char *dir = udfs_xasprintf("%s/%s", top, name);
	char *st = udfs_xasprintf("%s/model.safetensors", dir);
	char *cfg = udfs_xasprintf("%s/config.json", dir);

	CHECK_EQ_INT(mkdir(dir, 0755), 0);
	write_model(st, seed, 3000);
	write_bytes(cfg, "{\"model_type\": \"llama\"}\n", 25);
	free(cfg);
	free(st);
	return dir;
}

/* Load name from a fresh daemon-like store, failing allocation n; the
 * error, or 0 (with the model put back). *used: the allocations seen. */
static int load_failing(const char *store, const char *name, long n, long *used)
{
	udfs_store *s = NULL;
	udfs_model *m = NULL;
	int err;

	CHECK_EQ_INT(
	    udfs_store_open(store, UDFS_STORE_RDONLY | UDFS_STORE_LAZY_FDS, &s),
	    0);
	if (!s)
		return -EIO;
	failalloc_arm(n);
	err = udfs_model_load(s, name, &m);
	*used = failalloc_seen;
	failalloc_disarm();
	if (err == -ENOMEM) {
		/* The store is as it was: the same load now succeeds. */
		udfs_error_clear();
		m = NULL;
		CHECK_EQ_INT(udfs_model_load(s, name, &m), 0);
		CHECK(m && m->n_files == 2);
	}
	if (m)
		udfs_model_put(m);
	udfs_store_close(s);
	return err;
}

/* Every allocation of a model's load fails in turn. */
static void check_load(const char *store, const char *name)
{
	long n, used = 0, failed = 0;
	int err = -ENOMEM;

	for (n = 0; err == -ENOMEM && n < 2000; n++) {
		udfs_error_clear();
		err = load_failing(store, name, n, &used);
		if (err == -ENOMEM)
			failed++;
		else
			CHECK_EQ_INT(err, 0);
	}
	CHECK_EQ_INT(err, 0);
	CHECK(used < n); /* the last load needed no more than it got */
	/* The model, its base, their files, tensors, chunk maps, names. */
	CHECK(failed >= 10);
	printf("load %s: %ld allocations, each failed once\n", name, failed);
}

/* The listing: -ENOMEM, then the whole list. */
static void check_list(const char *store)
{
	udfs_store *s = NULL;
	udfs_model_info *list = NULL;
	size_t n = 0;
	int err = -ENOMEM;

	CHECK_EQ_INT(udfs_store_open(store, UDFS_STORE_RDONLY, &s), 0);
	for (long k = 0; s && err == -ENOMEM && k < 100; k++) {
		failalloc_arm(k);
		err = udfs_store_list(s, &list, &n);
		failalloc_disarm();
	}
	CHECK_EQ_INT(err, 0);
	CHECK_EQ_INT(n, 3);
	free(list);
	udfs_store_close(s);
}

/* A following store sees a new generation whatever fails on the way:
 * each failure is -ENOMEM (nothing switched), and the next try switches. */
static void check_follow(const char *store, const char *top)
{
	udfs_store *s = NULL, *w = NULL;
	int64_t gen0 = 0, gen = 0;
	long failed = 0;
	int err = -ENOMEM;
	char *src = model_dir(top, "next", 9);

	CHECK_EQ_INT(
	    udfs_store_open(store, UDFS_STORE_RDONLY | UDFS_STORE_LAZY_FDS, &s),
	    0);
	CHECK_EQ_INT(udfs_store_open(store, 0, &w), 0);
	if (!s || !w)
		goto out;
	CHECK_EQ_INT(udfs_store_follow(s), 0);
	for (long k = 0; err == -ENOMEM && k < 200; k++) {
		char name[32];

		CHECK_EQ_INT(udfs_store_generation(s, &gen0), 0);
		snprintf(name, sizeof(name), "next%ld", k);
		CHECK_EQ_INT(add_model(w, name, src, true, 1), 0);
		failalloc_arm(k);
		err = udfs_store_generation(s, &gen);
		failalloc_disarm();
		if (err == -ENOMEM) {
			failed++;
			CHECK_EQ_INT(gen, gen0);
			udfs_error_clear();
			CHECK_EQ_INT(udfs_store_generation(s, &gen), 0);
		} else {
			CHECK_EQ_INT(err, 0);
		}
		CHECK(gen > gen0);
	}
	CHECK_EQ_INT(err, 0);
	CHECK(failed >= 3); /* the pointer's path, the catalog, its path */
	printf("follow: %ld allocations, each failed once\n", failed);
out:
	udfs_store_close(w);
	udfs_store_close(s);
	free(src);
}

int main(void)
{
	char tmpl[] = "/tmp/udfs-load-nomem.XXXXXX";
	char *top = mkdtemp(tmpl), *store, *base, *ft, *lossy;
	udfs_store *s = NULL;

	CHECK(top != NULL);
	if (!top)
		CHECK_DONE();
	store = udfs_xasprintf("%s/store", top);
	base = model_dir(top, "base", 1);
	ft = model_dir(top, "ft", 2);
	lossy = model_dir(top, "lossy-src", 3);
	CHECK_EQ_INT(udfs_store_init(store), 0);
	CHECK_EQ_INT(udfs_store_open(store, 0, &s), 0);
	if (s) {
		CHECK_EQ_INT(
		    udfs_compress_add_base(s, "base", base, false, true), 0);
		CHECK_EQ_INT(add_model(s, "ft", ft, true, 1), 0);
		CHECK_EQ_INT(add_model(s, "lossy", lossy, false, 1), 0);
		udfs_store_close(s);
	}
	check_load(store, "base");
	check_load(store, "ft");
	check_load(store, "lossy");
	check_list(store);
	check_follow(store, top);
	remove_tree(top);
	free(lossy);
	free(ft);
	free(base);
	free(store);
	CHECK_DONE();
}

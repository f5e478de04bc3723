// SPDX-License-Identifier: MIT
/*
 * Unit tests for the catalog: opening (create, reopen, read-only, a file
 * of another format version or not SQLite at all), the generation counter
 * that every add and rm bumps, dependents of a base, model ids, storage
 * paths, the unique-name constraint, and model name rules. A small store
 * is built in a temporary directory through the public API; the test
 * writes foreign catalogs with SQLite itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "store/catalog.h"
#include "store/store.h"
#include "store_fixture.h"
#include "write/add.h"

static char *top; /* the temporary directory of this run */

/* A safetensors file of one U8 tensor "t" holding n bytes of fill. */
static char *write_st(const char *name, size_t n, unsigned char fill)
{
	char *path = udfs_xasprintf("%s/%s", top, name);
	char json[256];
	size_t hl = (size_t)snprintf(json, sizeof(json),
				     "{\"t\":{\"dtype\":\"U8\",\"shape\":[%zu],"
				     "\"data_offsets\":[0,%zu]}}",
				     n, n);
	unsigned char *img = udfs_xmalloc(8 + hl + n);

	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, hl);
	for (size_t i = 0; i < n; i++)
		img[8 + hl + i] = (unsigned char)(fill + (i % 3 == 0));
	write_bytes(path, img, 8 + hl + n);
	free(img);
	return path;
}

/* A SQLite file with the given user_version and one table. */
static char *foreign_db(const char *name, int version)
{
	char *path = udfs_xasprintf("%s/%s", top, name);
	char sql[128];
	sqlite3 *db = NULL;

	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql), "CREATE TABLE t(x); PRAGMA user_version=%d;",
		 version);
	CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	return path;
}

static void test_open(void)
{
	udfs_catalog *c = NULL;
	char *path = udfs_xasprintf("%s/new.db", top);
	char *v5 = foreign_db("v5.db", 5), *v0 = foreign_db("v0.db", 0);
	char *junk = udfs_xasprintf("%s/junk.db", top);
	int64_t gen = -1;
	size_t n = 99;
	udfs_model_info *list = NULL;

	/* Missing without create. */
	CHECK(udfs_catalog_open(path, false, false, &c) < 0);
	CHECK(c == NULL);
	udfs_error_clear();
	CHECK(udfs_catalog_open(path, true, false, &c) < 0);
	udfs_error_clear();
	/* Create, then reopen read-write and read-only. */
	CHECK_EQ_INT(udfs_catalog_open(path, false, true, &c), 0);
	CHECK_EQ_INT(udfs_catalog_generation(c, &gen), 0);
	CHECK_EQ_INT(gen, 0);
	udfs_catalog_close(c);
	c = NULL;
	CHECK_EQ_INT(udfs_catalog_open(path, false, false, &c), 0);
	udfs_catalog_close(c);
	c = NULL;
	CHECK_EQ_INT(udfs_catalog_open(path, true, false, &c), 0);
	CHECK_EQ_INT(udfs_catalog_list(c, &list, &n), 0);
	CHECK_EQ_INT(n, 0);
	free(list);
	udfs_catalog_close(c);
	c = NULL;
	/* create on an existing catalog keeps it. */
	CHECK_EQ_INT(udfs_catalog_open(path, false, true, &c), 0);
	udfs_catalog_close(c);
	c = NULL;

	/* Another format version, any way it is opened. */
	CHECK_EQ_INT(udfs_catalog_open(v5, false, false, &c), -EPROTO);
	CHECK(c == NULL);
	CHECK(strstr(udfs_error_msg(-EPROTO), "version 5") != NULL);
	CHECK(strstr(udfs_error_msg(-EPROTO), "upgrade") != NULL);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_catalog_open(v5, true, false, &c), -EPROTO);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_catalog_open(v5, false, true, &c), -EPROTO);
	udfs_error_clear();
	/* A SQLite file that is not a catalog (version 0) is refused when
	 * not creating. */
	CHECK_EQ_INT(udfs_catalog_open(v0, false, false, &c), -EPROTO);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_catalog_open(v0, true, false, &c), -EPROTO);
	udfs_error_clear();
	/* Not SQLite at all. */
	write_bytes(junk, "this is not a database, not at all, no......", 44);
	CHECK(udfs_catalog_open(junk, false, false, &c) < 0);
	CHECK(c == NULL);
	udfs_error_clear();
	CHECK(udfs_catalog_open(junk, true, false, &c) < 0);
	udfs_error_clear();
	udfs_catalog_close(NULL);

	/* A store whose catalog has another version. */
	{
		char *st = udfs_xasprintf("%s/vstore", top);
		char *db = udfs_xasprintf("%s/catalog.db", st);
		udfs_store *s = NULL;
		sqlite3 *h = NULL;

		CHECK_EQ_INT(udfs_store_init(st), 0);
		CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
		CHECK_EQ_INT(
		    sqlite3_exec(h, "PRAGMA user_version=5", NULL, NULL, NULL),
		    SQLITE_OK);
		sqlite3_close(h);
		CHECK_EQ_INT(udfs_store_open(st, 0, &s), -EPROTO);
		udfs_error_clear();
		CHECK_EQ_INT(udfs_store_open(st, UDFS_STORE_RDONLY, &s),
			     -EPROTO);
		CHECK(s == NULL);
		udfs_error_clear();
		free(db);
		free(st);
	}
	free(junk);
	free(v0);
	free(v5);
	free(path);
}

static int add(udfs_store *s, const char *name, const char *src)
{
	return add_model(s, name, src, true, 1);
}

static int64_t generation(udfs_store *s)
{
	int64_t g = -1, h = -2;

	CHECK_EQ_INT(udfs_store_generation(s, &g), 0);
	CHECK_EQ_INT(udfs_catalog_generation(udfs_store_catalog(s), &h), 0);
	CHECK(g == h);
	return g;
}

/* The catalog a store serves now (it changes with each generation). */
#define CAT udfs_store_catalog(s)

static void test_store_catalog(void)
{
	char *dir = udfs_xasprintf("%s/store", top);
	char *b = write_st("b.safetensors", 1000, 1);
	char *d1 = write_st("d1.safetensors", 1000, 2);
	char *d2 = write_st("d2.safetensors", 1000, 3);
	udfs_store *s = NULL, *ro = NULL;
	int64_t g0, g1, g2, g3, g4, base_id = 0, d1_id = 0, id = 0;
	char **paths = NULL;
	size_t n = 0;
	int deps = -1;

	CHECK_EQ_INT(udfs_store_init(dir), 0);
	CHECK_EQ_INT(udfs_store_open(dir, 0, &s), 0);
	if (!s)
		goto out;
	g0 = generation(s);
	CHECK_EQ_INT(udfs_compress_add_base(s, "base", b, false, true), 0);
	g1 = generation(s);
	CHECK(g1 > g0);
	CHECK_EQ_INT(add(s, "d1", d1), 0);
	g2 = generation(s);
	CHECK(g2 > g1);
	CHECK_EQ_INT(add(s, "d2", d2), 0);
	g3 = generation(s);
	CHECK(g3 > g2);
	/* A failed add changes nothing. */
	CHECK(add(s, "d2", d2) < 0);
	CHECK(generation(s) == g3);

	/* Ids, and -ENOENT without a message for a missing name. */
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "base", &base_id), 0);
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "d1", &d1_id), 0);
	CHECK(base_id > 0 && d1_id > 0 && base_id != d1_id);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "nope", &id), -ENOENT);
	CHECK_EQ_STR(udfs_error_msg(-ENOENT), strerror(ENOENT));
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "", &id), -ENOENT);
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "base' OR '1'='1", &id),
		     -ENOENT);

	/* Dependents. */
	CHECK_EQ_INT(udfs_catalog_dependents(CAT, base_id, &deps), 0);
	CHECK_EQ_INT(deps, 2);
	CHECK_EQ_INT(udfs_catalog_dependents(CAT, d1_id, &deps), 0);
	CHECK_EQ_INT(deps, 0);
	CHECK_EQ_INT(udfs_catalog_dependents(CAT, 999999, &deps), 0);
	CHECK_EQ_INT(deps, 0);

	/* Storage paths: one per model, each inside the store. */
	CHECK_EQ_INT(udfs_catalog_storage_paths(CAT, &paths, &n), 0);
	CHECK_EQ_INT(n, 3);
	for (size_t i = 0; i < n; i++) {
		CHECK(udfs_storage_path_ok(paths[i]));
		free(paths[i]);
	}
	free(paths);
	{
		uint64_t meta = 0;

		CHECK_EQ_INT(udfs_catalog_model_meta_bytes(CAT, d1_id, &meta),
			     0);
		CHECK(meta > 0);
	}

	/* The unique name constraint, inside a rolled-back transaction. */
	{
		udfs_model m = {
		    .name = (char *)"base",
		    .kind = UDFS_MODEL_BASE,
		    .method = (char *)"base",
		    .params = (char *)"{}",
		};

		CHECK_EQ_INT(udfs_store_begin(s), 0);
		CHECK_EQ_INT(udfs_catalog_insert_model(CAT, &m, "bases/x"),
			     -EEXIST);
		udfs_store_rollback(s);
		udfs_error_clear();
		CHECK(generation(s) == g3);
	}

	/* A read-only store sees the same catalog. */
	CHECK_EQ_INT(udfs_store_open(dir, UDFS_STORE_RDONLY, &ro), 0);
	if (ro) {
		udfs_model_info *list = NULL;

		CHECK(generation(ro) == g3);
		CHECK_EQ_INT(udfs_store_list(ro, &list, &n), 0);
		CHECK_EQ_INT(n, 3);
		if (n == 3) {
			CHECK_EQ_STR(list[0].name, "base");
			CHECK_EQ_STR(list[1].name, "d1");
			CHECK_EQ_STR(list[1].base, "base");
			CHECK_EQ_STR(list[2].name, "d2");
		}
		free(list);
	}

	/* A read-only store cannot remove or collect anything. */
	if (ro) {
		uint64_t freed = 0;
		size_t files = 0;
		int64_t g = 0;

		char *stray = udfs_xasprintf("%s/tmp/stray", dir);
		struct stat st;

		CHECK(udfs_store_rm(ro, "d2") < 0);
		udfs_error_clear();
		/* gc must hold the writer lock (BEGIN IMMEDIATE) to judge
		 * what is garbage; a read-only connection cannot, so it
		 * must refuse rather than delete without the lock. */
		write_bytes(stray, "x", 1);
		CHECK(udfs_store_gc(ro, false, NULL, NULL, &freed, &files) < 0);
		udfs_error_clear();
		CHECK_EQ_INT(files, 0);
		CHECK_EQ_INT(stat(stray, &st), 0);
		unlink(stray);
		free(stray);
		CHECK_EQ_INT(udfs_catalog_model_id(CAT, "d2", &g), 0);
		CHECK(generation(s) == g3);
	}

	/* rm bumps the generation, and the reader sees it. */
	CHECK_EQ_INT(udfs_store_rm(s, "d1"), 0);
	g4 = generation(s);
	CHECK(g4 > g3);
	if (ro)
		CHECK(generation(ro) == g4);
	CHECK_EQ_INT(udfs_catalog_dependents(CAT, base_id, &deps), 0);
	CHECK_EQ_INT(deps, 1);
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "d1", &id), -ENOENT);
	/* A new model never reuses a removed id. */
	CHECK_EQ_INT(add(s, "d1", d1), 0);
	CHECK_EQ_INT(udfs_catalog_model_id(CAT, "d1", &id), 0);
	CHECK(id != d1_id);
	CHECK(generation(s) > g4);
	udfs_store_close(ro);
out:
	udfs_store_close(s);
	free(d2);
	free(d1);
	free(b);
	free(dir);
}

static void test_names(void)
{
	static const char *const ok[] = {
	    "llama-3.1_8B", "a",  "A b",   "x.y", "model@v2",
	    "a-",	    "_x", "~home", "a.",  "1",
	};
	static const char *const bad[] = {
	    "",	  ".x", "-x",	"a/b",	 "a\\b",	"a\nb", "/x",
	    "..", ".",	"a\tb", "a\x7f", "caf\xc3\xa9", "x/",
	};
	char long_name[202];

	for (size_t i = 0; i < UDFS_ARRAY_SIZE(ok); i++) {
		int err = udfs_name_check(ok[i]);

		if (err)
			fprintf(stderr, "name \"%s\" refused\n", ok[i]);
		CHECK_EQ_INT(err, 0);
	}
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(bad); i++) {
		udfs_error_clear();
		CHECK_EQ_INT(udfs_name_check(bad[i]), -EINVAL);
		/* The message says what is wrong with the name. */
		CHECK(strstr(udfs_error_msg(-EINVAL), "model name") != NULL);
	}
	udfs_error_clear();
	memset(long_name, 'n', 201);
	long_name[200] = '\0';
	CHECK_EQ_INT(udfs_name_check(long_name), 0);
	long_name[200] = 'n';
	long_name[201] = '\0';
	CHECK_EQ_INT(udfs_name_check(long_name), -EINVAL);
	udfs_error_clear();
}

int main(void)
{
	char tmpl[] = "/tmp/udfs-test-catalog.XXXXXX";

	top = mkdtemp(tmpl);
	if (!top) {
		perror("mkdtemp");
		return 1;
	}
	test_open();
	test_store_catalog();
	test_names();
	if (!getenv("UDFS_TEST_KEEP"))
		udfs_rm_tree(top);
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * A store written in catalog format 3 (a tensors row per tensor, a shared
 * header found through the first tensor's base file) still reads the same
 * models, field for field, as format 4 wrote them (a tensor map per file,
 * a header_file reference); its first writer upgrades it in place, and
 * the models it adds then take fewer catalog bytes. The format 3 rows
 * are written here as a format 3 writer wrote them, from the models a
 * format 4 store loaded.
 */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "store/catalog.h"
#include "store/store.h"
#include "store_fixture.h"

static char *top;

/* A model directory: model.safetensors (F32 "w" [512,1024], two chunks,
 * and "n" [8]) scaled by k, and a config.json. */
static char *write_model(const char *name, float k)
{
	static const char json[] =
	    "{\"n\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
	    "\"w\":{\"dtype\":\"F32\",\"shape\":[512,1024],\"data_offsets\":"
	    "[32,2097184]}}";
	size_t hl = strlen(json), n = 8 + 512 * 1024, len = 8 + hl + 4 * n;
	char *dir = udfs_xasprintf("%s/%s", top, name), *p;
	unsigned char *img = udfs_xmalloc(len);
	uint64_t x = 11;

	mkdir(dir, 0755);
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, hl);
	for (size_t i = 0; i < n; i++) {
		float v = (float)((x = x * 6364136223846793005ULL + 1) >> 40) /
			  (float)(1 << 24);

		v = (v - 0.5f) * (1.0f + k * (float)(i % 7) / 64.0f);
		memcpy(img + 8 + hl + 4 * i, &v, 4);
	}
	p = udfs_xasprintf("%s/model.safetensors", dir);
	write_bytes(p, img, len);
	free(p);
	p = udfs_xasprintf("%s/config.json", dir);
	write_bytes(p, "{\"model_type\":\"llama\"}\n", 23);
	free(p);
	free(img);
	return dir;
}

static void bind_shape(sqlite3_stmt *st, int col, const udfs_tensor *t)
{
	char s[256];
	size_t len = 0;

	s[len++] = '[';
	for (int i = 0; i < t->ndim; i++)
		len += (size_t)snprintf(s + len, sizeof(s) - len, "%s%" PRIu64,
					i ? "," : "", t->shape[i]);
	snprintf(s + len, sizeof(s) - len, "]");
	sqlite3_bind_text(st, col, s, -1, SQLITE_TRANSIENT);
}

static void bind_chunks(sqlite3_stmt *st, int col, const udfs_tensor *t)
{
	unsigned char *blob = udfs_xcalloc(t->n_chunks + 1, 20);

	for (uint32_t i = 0; i < t->n_chunks; i++)
		for (int b = 0; b < 8; b++) {
			blob[20 * i + b] =
			    (unsigned char)(t->chunks[i].offset >> (8 * b));
			if (b < 4)
				blob[20 * i + 8 + b] =
				    (unsigned char)(t->chunks[i].length >>
						    (8 * b));
			blob[20 * i + 12 + b] =
			    (unsigned char)(t->chunks[i].checksum >> (8 * b));
		}
	if (t->n_chunks)
		sqlite3_bind_blob(st, col, blob, (int)(20 * t->n_chunks),
				  SQLITE_TRANSIENT);
	free(blob);
}

/* The tensors row of t as format 3 wrote it. */
static void insert_row(sqlite3 *h, const udfs_file *f, int idx,
		       const udfs_tensor *t)
{
	sqlite3_stmt *st = NULL;

	CHECK_EQ_INT(
	    sqlite3_prepare_v2(
		h,
		"INSERT INTO tensors(file_id, idx, name, dtype, shape, begin, end, encoding, base_file_id, base_begin, mask, vkind, bits, lo, step, gain, rate, mseed, stored_bytes, chunks) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
		-1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)f->ino);
	sqlite3_bind_int(st, 2, idx);
	sqlite3_bind_text(st, 3, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, udfs_dtype_name(t->dtype), -1, SQLITE_STATIC);
	bind_shape(st, 5, t);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)t->begin);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)t->end);
	sqlite3_bind_text(st, 8, udfs_encoding_name(t->enc), -1, SQLITE_STATIC);
	if (t->base_file_id) {
		sqlite3_bind_int64(st, 9, t->base_file_id);
		sqlite3_bind_int64(st, 10, (sqlite3_int64)t->base_begin);
	}
	if (udfs_encoding_is_lossy(t->enc)) {
		sqlite3_bind_int(st, 11, t->lp.mask);
		sqlite3_bind_int(st, 12, t->lp.values);
		sqlite3_bind_int(st, 13, t->lp.bits);
		sqlite3_bind_double(st, 14, t->lp.lo);
		sqlite3_bind_double(st, 15, t->lp.step);
		sqlite3_bind_double(st, 16, t->lp.gain);
		sqlite3_bind_double(st, 17, t->lp.rate);
		sqlite3_bind_int64(st, 18, (sqlite3_int64)t->lp.seed);
	}
	sqlite3_bind_int64(st, 19, (sqlite3_int64)t->stored_bytes);
	bind_chunks(st, 20, t);
	CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/* Rewrite the store's catalog.db as format 3 held the models ms. */
static void downgrade(const char *dir, udfs_model *const *ms, size_t n)
{
	char *db = udfs_xasprintf("%s/catalog.db", dir);
	char *cmd = udfs_xasprintf("rm -rf %s/snapshots %s/leases %s/lock "
				   "%s/catalog.current",
				   dir, dir, dir, dir);
	sqlite3 *h = NULL;

	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(h, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	for (size_t m = 0; m < n; m++)
		for (size_t i = 0; i < ms[m]->n_files; i++)
			for (size_t j = 0; j < ms[m]->files[i].n_tensors; j++)
				insert_row(h, &ms[m]->files[i], (int)j,
					   &ms[m]->files[i].tensors[j]);
	CHECK_EQ_INT(sqlite3_exec(h,
				  "ALTER TABLE files DROP COLUMN tensor_map;"
				  "ALTER TABLE files DROP COLUMN header_file;"
				  "PRAGMA user_version=3; COMMIT",
				  NULL, NULL, NULL),
		     SQLITE_OK);
	sqlite3_close(h);
	CHECK_EQ_INT(system(cmd), 0);
	free(cmd);
	free(db);
}

static bool same_tensor(const udfs_tensor *a, const udfs_tensor *b)
{
	bool ok = strcmp(a->name, b->name) == 0 && a->dtype == b->dtype &&
		  a->ndim == b->ndim && a->nelems == b->nelems &&
		  a->begin == b->begin && a->end == b->end &&
		  a->enc == b->enc && a->base_file_id == b->base_file_id &&
		  a->base_begin == b->base_begin &&
		  a->stored_bytes == b->stored_bytes &&
		  a->n_chunks == b->n_chunks &&
		  memcmp(&a->lp, &b->lp, sizeof(a->lp)) == 0;

	for (int i = 0; ok && i < a->ndim; i++)
		ok = a->shape[i] == b->shape[i];
	for (uint32_t i = 0; ok && i < a->n_chunks; i++)
		ok = a->chunks[i].offset == b->chunks[i].offset &&
		     a->chunks[i].length == b->chunks[i].length &&
		     a->chunks[i].checksum == b->chunks[i].checksum;
	return ok;
}

/* a and b hold the same files, headers and tensors. */
static void check_same_model(const udfs_model *a, const udfs_model *b)
{
	CHECK_EQ_INT(a->n_files, b->n_files);
	for (size_t i = 0; i < a->n_files && a->n_files == b->n_files; i++) {
		const udfs_file *f = &a->files[i], *g = &b->files[i];

		CHECK_EQ_STR(f->path, g->path);
		CHECK_EQ_INT(f->data_offset, g->data_offset);
		CHECK(f->data_offset == 0 ||
		      memcmp(f->header, g->header, f->data_offset) == 0);
		CHECK_EQ_INT(f->n_tensors, g->n_tensors);
		for (size_t j = 0;
		     j < f->n_tensors && f->n_tensors == g->n_tensors; j++)
			CHECK(same_tensor(&f->tensors[j], &g->tensors[j]));
	}
}

static void free_rows(udfs_model *m)
{
	udfs_files_free(m->files, m->n_files);
	free(m->name);
	free(m->method);
	free(m->params);
	free(m);
}

/* Model name as the catalog at path loads it. */
static udfs_model *load_direct(const char *path, const char *name)
{
	udfs_catalog *c = NULL;
	udfs_model *m = NULL;
	char *storage = NULL;
	int64_t id = 0, base_id = 0;

	CHECK_EQ_INT(udfs_catalog_open(path, true, false, &c), 0);
	if (c)
		CHECK_EQ_INT(udfs_catalog_model_id(c, name, &id), 0);
	if (c)
		CHECK_EQ_INT(
		    udfs_catalog_load_model(c, id, &m, &storage, &base_id), 0);
	free(storage);
	udfs_catalog_close(c);
	return m;
}

static int64_t version_of(const char *db)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	CHECK_EQ_INT(
	    sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL),
	    SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

int main(void)
{
	static const char *const names[] = {"base", "ll", "lo"};
	char tmpl[] = "/tmp/udfs-v3-XXXXXX";
	char *dir, *db, *b, *f;
	udfs_model *v4[3] = {0}, *v3 = NULL;
	udfs_store *s = NULL;
	uint64_t meta_old = 0, meta_new = 0;
	int64_t id = 0;

	top = mkdtemp(tmpl);
	CHECK(top != NULL);
	if (!top)
		CHECK_DONE();
	dir = udfs_xasprintf("%s/store", top);
	db = udfs_xasprintf("%s/catalog.db", dir);
	b = write_model("b", 0);
	f = write_model("f", 1);
	CHECK_EQ_INT(udfs_store_init(dir), 0);
	CHECK_EQ_INT(udfs_store_open(dir, 0, &s), 0);
	if (!s)
		goto out;
	CHECK_EQ_INT(udfs_compress_add_base(s, "base", b, false, true), 0);
	CHECK_EQ_INT(add_model(s, "ll", f, true, 1), 0);
	CHECK_EQ_INT(add_model(s, "lo", f, false, 1), 0);
	for (int i = 0; i < 3; i++)
		v4[i] = load_direct(db, names[i]);
	udfs_store_close(s);
	s = NULL;
	CHECK(v4[0] && v4[1] && v4[2]);
	if (!v4[0] || !v4[1] || !v4[2])
		goto out;
	/* Format 4 shares ll's header and config.json with the base's. */
	CHECK_EQ_INT(v4[1]->files[0].tensors[0].enc, UDFS_ENC_SAME);

	downgrade(dir, v4, 3);
	CHECK_EQ_INT(version_of(db), 3);
	/* Read as format 3 (as a reader that may not write reads it). */
	for (int i = 0; i < 3; i++) {
		udfs_model *m = load_direct(db, names[i]);

		if (m)
			check_same_model(v4[i], m);
		if (m)
			free_rows(m);
	}
	CHECK_EQ_INT(version_of(db), 3);
	/* A writer upgrades it in place and writes maps from then on. */
	CHECK_EQ_INT(udfs_store_open(dir, 0, &s), 0);
	if (!s)
		goto out;
	CHECK_EQ_INT(add_model(s, "ll2", f, true, 1), 0);
	CHECK_EQ_INT(version_of(db), UDFS_CATALOG_VERSION);
	v3 = load_direct(db, "ll");
	if (v3)
		check_same_model(v4[1], v3);
	{
		udfs_model *m = load_direct(db, "ll2");

		/* Same source, same chunks (each model's pack starts alike). */
		if (m)
			check_same_model(v4[1], m);
		if (m)
			free_rows(m);
	}
	CHECK_EQ_INT(udfs_catalog_model_id(udfs_store_catalog(s), "ll", &id),
		     0);
	CHECK_EQ_INT(
	    udfs_catalog_model_meta_bytes(udfs_store_catalog(s), id, &meta_old),
	    0);
	CHECK_EQ_INT(udfs_catalog_model_id(udfs_store_catalog(s), "ll2", &id),
		     0);
	CHECK_EQ_INT(
	    udfs_catalog_model_meta_bytes(udfs_store_catalog(s), id, &meta_new),
	    0);
	CHECK(meta_new < meta_old);
	{
		udfs_model *m = NULL;

		/* Through the store: rows and maps both link to the base. */
		CHECK_EQ_INT(udfs_model_load(s, "ll", &m), 0);
		udfs_model_put(m);
		CHECK_EQ_INT(udfs_model_load(s, "ll2", &m), 0);
		udfs_model_put(m);
	}
out:
	udfs_store_close(s);
	for (int i = 0; i < 3; i++)
		if (v4[i])
			free_rows(v4[i]);
	if (v3)
		free_rows(v3);
	remove_tree(top);
	free(f);
	free(b);
	free(db);
	free(dir);
	CHECK_DONE();
}

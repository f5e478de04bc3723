// SPDX-License-Identifier: MIT
/*
 * The store's SQLite catalog. One row per model, file and tensor; the chunk
 * map of a tensor is one BLOB of packed little-endian records (offset u64,
 * length u32, checksum u64) rather than one row per chunk: a 7B model has
 * ~14,000 chunks and loading them as one blob per tensor is what keeps a
 * mount's first lookup of a model fast.
 *
 * Workload: a handful of writers (udfs-compress, udfs rm, udfs gc) and
 * many readers (mounts on several nodes, admin verbs). Writers serialize
 * on the store's lock (cluster.h) and write the live catalog in rollback
 * journal mode, every write of one model in one transaction; readers only
 * ever open immutable snapshots of it (udfs(5)).
 */
#include "store/catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/util.h"
#include "format/tmap.h"

#define CHUNK_REC 20 /* bytes per packed chunk record */
#define BUSY_MS 30000

struct udfs_catalog {
	sqlite3 *db;
	char *path;
	int version;  /* PRAGMA user_version, as opened or upgraded */
	bool has_map; /* files has the tensor_map column (format 4) */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);CREATE TABLE IF NOT EXISTS models( id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, kind INTEGER NOT NULL, base_id INTEGER REFERENCES models(id), method TEXT NOT NULL, params TEXT NOT NULL, seed INTEGER NOT NULL, created INTEGER NOT NULL, source_bytes INTEGER NOT NULL, stored_bytes INTEGER NOT NULL, sparsity REAL NOT NULL, storage TEXT NOT NULL);CREATE TABLE IF NOT EXISTS files( id INTEGER PRIMARY KEY AUTOINCREMENT, model_id INTEGER NOT NULL REFERENCES models(id), path TEXT NOT NULL, kind INTEGER NOT NULL, size INTEGER NOT NULL, data_offset INTEGER NOT NULL, header BLOB, sha256 TEXT NOT NULL, header_file INTEGER, tensor_map BLOB, UNIQUE(model_id, path));CREATE TABLE IF NOT EXISTS tensors( file_id INTEGER NOT NULL REFERENCES files(id), idx INTEGER NOT NULL, name TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, begin INTEGER NOT NULL, end INTEGER NOT NULL, encoding TEXT NOT NULL, base_file_id INTEGER, base_begin INTEGER, mask INTEGER, vkind INTEGER, bits INTEGER, lo REAL, step REAL, gain REAL, rate REAL, mseed INTEGER, stored_bytes INTEGER NOT NULL, chunks BLOB, PRIMARY KEY(file_id, idx));INSERT OR IGNORE INTO meta VALUES('generation', 0);";

static int fail(udfs_catalog *c, int rc, const char *what)
{
	int err;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		err = -EBUSY;
		break;
	case SQLITE_READONLY:
		err = -EROFS;
		break;
	case SQLITE_FULL:
		err = -ENOSPC;
		break;
	case SQLITE_NOMEM:
		err = -ENOMEM;
		break;
	case SQLITE_CANTOPEN:
		err = -ENOENT;
		break;
	case SQLITE_CONSTRAINT:
		err = -EEXIST;
		break;
	default:
		err = -EIO;
	}
	return udfs_error(err, "catalog %s: %s: %s", c->path, what,
			  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
}

static int prep(udfs_catalog *c, sqlite3_stmt **st, const char *sql)
{
	int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);

	return rc == SQLITE_OK ? 0 : fail(c, rc, "prepare");
}

static int exec(udfs_catalog *c, const char *sql)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : fail(c, rc, sql);
}

/* Step a statement that returns no rows. */
static int step_done(udfs_catalog *c, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	return rc == SQLITE_DONE ? 0 : fail(c, rc, what);
}

static int open_immutable(udfs_catalog *c, const char *path)
{
	size_t n = strlen(path);
	char *uri = malloc(3 * n + 32), *q = uri;
	int rc;

	if (!uri)
		return SQLITE_NOMEM;
	/* A URI path must escape what would start a query or fragment. */
	q += sprintf(q, "file:");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)path[i];

		if (ch == '?' || ch == '#' || ch == '%')
			q += sprintf(q, "%%%02X", ch);
		else
			*q++ = (char)ch;
	}
	strcpy(q, "?immutable=1");
	rc = sqlite3_open_v2(uri, &c->db,
			     SQLITE_OPEN_READONLY | SQLITE_OPEN_URI |
				 SQLITE_OPEN_FULLMUTEX,
			     NULL);
	free(uri);
	return rc;
}

/* PRAGMA user_version of the open catalog into *version. */
static int read_version(udfs_catalog *c, int *version)
{
	sqlite3_stmt *st;
	int rc, err;

	err = prep(c, &st, "PRAGMA user_version");
	if (err)
		return err;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*version = sqlite3_column_int(st, 0);
	err = rc == SQLITE_ROW ? 0 : fail(c, rc, "read format version");
	sqlite3_finalize(st);
	return err;
}

/* Whether table files has the column tensor_map (format 4). */
static int has_tensor_map(udfs_catalog *c, bool *has)
{
	sqlite3_stmt *st;
	int err = prep(c, &st,
		       "SELECT count(*) FROM pragma_table_info('files') WHERE "
		       "name = 'tensor_map'");

	if (err)
		return err;
	err = sqlite3_step(st) == SQLITE_ROW ? 0
					     : fail(c, SQLITE_ERROR, "schema");
	*has = sqlite3_column_int(st, 0) > 0;
	sqlite3_finalize(st);
	return err;
}

/* Formats 1 to 3 to 4: files get their tensor map and header reference
 * columns; the tensors rows already there stay and are still read. */
static int add_tensor_map(udfs_catalog *c)
{
	bool has = false;
	int err = exec(c, "BEGIN IMMEDIATE");

	if (!err)
		err = has_tensor_map(c, &has);
	if (!err && !has)
		err =
		    exec(c, "ALTER TABLE files ADD COLUMN header_file INTEGER;"
			    "ALTER TABLE files ADD COLUMN tensor_map BLOB");
	if (!err)
		err = exec(c, "PRAGMA user_version=4; COMMIT");
	else
		udfs_catalog_rollback(c);
	return err;
}

/*
 * Make the writer's catalog current: rollback journal instead of WAL
 * (WAL's memory-mapped -shm index is not shared between the clients of a
 * network filesystem, and writers serialize on the store's lock anyway),
 * and formats 1 to 3 become 4 in place (2 means that writers publish
 * snapshots, 3 that a delta's header may be its base's, 4 that a file's
 * tensors may be one tensor map; each makes an older udfs refuse what it
 * would misread).
 */
static int prepare_writer(udfs_catalog *c, bool create)
{
	int err = exec(c, "PRAGMA journal_mode=DELETE");

	if (!err && create && c->version == 0)
		err = exec(c, "BEGIN IMMEDIATE");
	if (!err && create && c->version == 0) {
		err = exec(c, schema);
		if (!err)
			err = exec(c, "PRAGMA user_version=4; COMMIT");
		else
			udfs_catalog_rollback(c);
		c->version = UDFS_CATALOG_VERSION;
	}
	if (!err && c->version < UDFS_CATALOG_VERSION) {
		err = add_tensor_map(c);
		c->version = UDFS_CATALOG_VERSION;
	}
	return err ? err : exec(c, "PRAGMA foreign_keys=ON");
}

int udfs_catalog_open(const char *path, bool rdonly, bool create,
		      udfs_catalog **out)
{
	udfs_catalog *c = calloc(1, sizeof(*c));
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX;
	int rc, err, version = 0;

	/* Readers open catalogs in the mount daemon, which answers ENOMEM
	 * and lives when memory runs out. */
	if (c)
		c->path = strdup(path);
	if (!c || !c->path) {
		udfs_catalog_close(c);
		return udfs_error(-ENOMEM, "out of memory");
	}
	/* Readers open snapshots, which never change: immutable needs no
	 * lock and no -shm file, so it works on a read-only export too. */
	if (rdonly)
		rc = open_immutable(c, path);
	else
		rc = sqlite3_open_v2(path, &c->db,
				     flags | (create ? SQLITE_OPEN_CREATE : 0),
				     NULL);
	if (rc != SQLITE_OK) {
		err = fail(c, rc, "open");
		goto out;
	}
	sqlite3_busy_timeout(c->db, BUSY_MS);
	err = read_version(c, &version);
	if (err)
		goto out;
	if (version > UDFS_CATALOG_VERSION || (version < 1 && !create)) {
		err = udfs_error(
		    -EPROTO,
		    "%s: catalog format version %d, this udfs reads version %d%s",
		    path, version, UDFS_CATALOG_VERSION,
		    version > UDFS_CATALOG_VERSION ? ": upgrade udfs" : "");
		goto out;
	}
	c->version = version;
	if (!rdonly)
		err = prepare_writer(c, create);
	if (!err)
		err = has_tensor_map(c, &c->has_map);
out:
	if (err) {
		udfs_catalog_close(c);
		return err;
	}
	*out = c;
	return 0;
}

int udfs_catalog_snapshot(udfs_catalog *c, const char *path)
{
	sqlite3_stmt *st;
	int err = prep(c, &st, "VACUUM INTO ?");

	if (err)
		return err;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	err = step_done(c, st, "copy");
	sqlite3_finalize(st);
	return err;
}

int udfs_catalog_file_stamp(const char *path, uint32_t *stamp)
{
	unsigned char hdr[28];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err;

	if (fd < 0)
		return udfs_error(-errno, "%s: %s", path, strerror(errno));
	/* Bytes 24..27 of a database file: its change counter, bumped by
	 * every commit in rollback-journal mode. */
	err = udfs_pread_full(fd, hdr, sizeof(hdr), 0);
	close(fd);
	if (err)
		return udfs_error(err, "%s: %s", path, strerror(-err));
	*stamp = (uint32_t)hdr[24] << 24 | (uint32_t)hdr[25] << 16 |
		 (uint32_t)hdr[26] << 8 | hdr[27];
	return 0;
}

int udfs_catalog_has_model(udfs_catalog *c, int64_t id, bool *has)
{
	sqlite3_stmt *st;
	int rc, err;

	err = prep(c, &st, "SELECT 1 FROM models WHERE id = ?");
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	*has = rc == SQLITE_ROW;
	err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
						    : fail(c, rc, "find model");
	sqlite3_finalize(st);
	return err;
}

void udfs_catalog_close(udfs_catalog *c)
{
	if (!c)
		return;
	sqlite3_close(c->db);
	free(c->path);
	free(c);
}

int udfs_catalog_begin(udfs_catalog *c)
{
	/* On a read-only connection BEGIN IMMEDIATE succeeds without taking
	 * the writer lock, so a writer must never run on one. */
	if (sqlite3_db_readonly(c->db, "main"))
		return udfs_error(-EROFS, "catalog %s: opened read-only",
				  c->path);
	return exec(c, "BEGIN IMMEDIATE");
}

int udfs_catalog_commit(udfs_catalog *c)
{
	/* Every committed write is a change mounted daemons must notice. */
	int err = exec(
	    c, "UPDATE meta SET value = value + 1 WHERE key = 'generation'");

	return err ? err : exec(c, "COMMIT");
}

void udfs_catalog_rollback(udfs_catalog *c)
{
	sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

int udfs_catalog_model_id(udfs_catalog *c, const char *name, int64_t *id)
{
	sqlite3_stmt *st;
	int rc, err;

	err = prep(c, &st, "SELECT id FROM models WHERE name = ?");
	if (err)
		return err;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		err = 0;
	} else if (rc == SQLITE_DONE) {
		err = -ENOENT;
	} else {
		err = fail(c, rc, "find model");
	}
	sqlite3_finalize(st);
	return err;
}

int udfs_catalog_insert_model(udfs_catalog *c, udfs_model *m,
			      const char *storage)
{
	sqlite3_stmt *st;
	int err;

	err = prep(
	    c, &st,
	    "INSERT INTO models(name, kind, base_id, method, params, seed, created, source_bytes, stored_bytes, sparsity, storage) VALUES(?,?,?,?,?,?,?,?,?,?,?)");
	if (err)
		return err;
	sqlite3_bind_text(st, 1, m->name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, m->kind);
	if (m->base)
		sqlite3_bind_int64(st, 3, m->base->id);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, m->method, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, m->params ? m->params : "{}", -1,
			  SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, m->seed);
	sqlite3_bind_int64(st, 7, m->created);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)m->source_bytes);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)m->stored_bytes);
	sqlite3_bind_double(st, 10, m->sparsity);
	sqlite3_bind_text(st, 11, storage, -1, SQLITE_STATIC);
	err = step_done(c, st, "insert model");
	if (!err)
		m->id = sqlite3_last_insert_rowid(c->db);
	sqlite3_finalize(st);
	return err;
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The base file whose header f may share (udfs(5), files): the file of
 * base holding the base tensor of f's first tensor that has one; NULL if
 * none. f's tensors hold their base_file_id. */
static const udfs_file *header_base(const udfs_model *base, const udfs_file *f)
{
	int64_t id = 0;

	for (size_t i = 0; base && i < f->n_tensors && !id; i++)
		id = f->tensors[i].base_file_id;
	for (size_t i = 0; id && i < base->n_files; i++)
		if (base->files[i].ino == (uint64_t)id)
			return &base->files[i];
	return NULL;
}

int udfs_catalog_insert_file(udfs_catalog *c, int64_t model_id, udfs_file *f)
{
	const udfs_file *hb = header_base(f->model ? f->model->base : NULL, f);
	bool shared = udfs_file_has_header(hb, f->header, f->data_offset);
	sqlite3_stmt *st = NULL;
	unsigned char *map;
	size_t map_len;
	int err;

	err = prep(
	    c, &st,
	    "INSERT INTO files(model_id, path, kind, size, data_offset, header, sha256, header_file, tensor_map) VALUES(?,?,?,?,?,?,?,?,?)");
	if (err)
		return err;
	map = udfs_tmap_encode(f, &map_len);
	sqlite3_bind_int64(st, 1, model_id);
	sqlite3_bind_text(st, 2, f->path, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, f->kind);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)f->size);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)f->data_offset);
	if (f->data_offset && !shared)
		sqlite3_bind_blob64(st, 6, f->header, f->data_offset,
				    SQLITE_STATIC);
	sqlite3_bind_text(st, 7, f->sha256, -1, SQLITE_STATIC);
	if (shared)
		sqlite3_bind_int64(st, 8, (sqlite3_int64)hb->ino);
	sqlite3_bind_blob64(st, 9, map, map_len, SQLITE_STATIC);
	err = step_done(c, st, "insert file");
	if (!err)
		f->ino = (uint64_t)sqlite3_last_insert_rowid(c->db);
	free(map);
	sqlite3_finalize(st);
	return err;
}

int udfs_catalog_set_stored(udfs_catalog *c, int64_t model_id,
			    uint64_t stored_bytes)
{
	sqlite3_stmt *st;
	int err = prep(c, &st, "UPDATE models SET stored_bytes=? WHERE id=?");

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)stored_bytes);
	sqlite3_bind_int64(st, 2, model_id);
	err = step_done(c, st, "update model");
	sqlite3_finalize(st);
	return err;
}

/*
 * Loading runs in the mount daemon (a lookup loads the model), which must
 * answer ENOMEM and live when memory runs out: nothing from here to the
 * end of udfs_catalog_list allocates with the aborting udfs_x* calls.
 */

/* A copy of text column i ("" for NULL) in *out: 0 or -ENOMEM. */
static int col_str(sqlite3_stmt *st, int i, char **out)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	*out = strdup(s ? (const char *)s : "");
	return *out ? 0 : udfs_error(-ENOMEM, "out of memory");
}

/* Parse "[2,3]" into t->shape; the catalog is trusted no more than a file:
 * a malformed value is -EIO. -ENOMEM when out of memory. */
static int parse_shape(const char *s, udfs_tensor *t)
{
	const char *p = s;
	int n = 0;

	if (*p++ != '[')
		return -EIO;
	for (const char *q = p; *q; q++)
		n += *q == ',';
	t->shape = calloc((size_t)n + 1, sizeof(uint64_t));
	if (!t->shape)
		return udfs_error(-ENOMEM, "out of memory");
	t->ndim = 0;
	t->nelems = 1;
	if (*p == ']')
		return p[1] ? -EIO : 0;
	for (;;) {
		char *end;
		unsigned long long v = strtoull(p, &end, 10);

		if (end == p || t->ndim > n)
			return -EIO;
		t->shape[t->ndim++] = v;
		if (v && t->nelems > UINT64_MAX / v)
			return -EIO;
		t->nelems *= v;
		p = end;
		if (*p == ']')
			return p[1] ? -EIO : 0;
		if (*p++ != ',')
			return -EIO;
	}
}

static int load_tensor(udfs_catalog *c, sqlite3_stmt *st, udfs_file *f,
		       udfs_tensor *t)
{
	const unsigned char *blob;
	int blob_len, err;

	err = col_str(st, 0, &t->name);
	if (err)
		return err;
	t->dtype = udfs_dtype_parse((const char *)sqlite3_column_text(st, 1));
	t->begin = (uint64_t)sqlite3_column_int64(st, 3);
	t->end = (uint64_t)sqlite3_column_int64(st, 4);
	t->enc = udfs_encoding_parse((const char *)sqlite3_column_text(st, 5));
	t->file = f;
	err = t->dtype < 0 || t->enc < 0 || t->end < t->begin ||
		      t->end > f->size - f->data_offset
		  ? -EIO
		  : parse_shape((const char *)sqlite3_column_text(st, 2), t);
	if (err == -ENOMEM)
		return err;
	if (err)
		return udfs_error(
		    -EIO,
		    "catalog %s: file %s: tensor \"%s\" has a malformed row",
		    c->path, f->path, t->name);
	t->base_file_id = sqlite3_column_int64(st, 6);
	t->base_begin = (uint64_t)sqlite3_column_int64(st, 7);
	t->lp.mask = (uint8_t)sqlite3_column_int(st, 8);
	t->lp.values = (uint8_t)sqlite3_column_int(st, 9);
	t->lp.bits = (uint8_t)sqlite3_column_int(st, 10);
	t->lp.lo = (float)sqlite3_column_double(st, 11);
	t->lp.step = (float)sqlite3_column_double(st, 12);
	t->lp.gain = (float)sqlite3_column_double(st, 13);
	t->lp.rate = sqlite3_column_double(st, 14);
	t->lp.seed = (uint64_t)sqlite3_column_int64(st, 15);
	t->stored_bytes = (uint64_t)sqlite3_column_int64(st, 16);
	blob = sqlite3_column_blob(st, 17);
	blob_len = sqlite3_column_bytes(st, 17);
	if (blob_len % CHUNK_REC)
		return udfs_error(
		    -EIO, "catalog %s: tensor \"%s\": chunk map of %d bytes",
		    c->path, t->name, blob_len);
	t->n_chunks = (uint32_t)(blob_len / CHUNK_REC);
	if (t->n_chunks) {
		uint64_t want = (t->end - t->begin + UDFS_CHUNK_BYTES - 1) /
				UDFS_CHUNK_BYTES;

		if (want != t->n_chunks)
			return udfs_error(
			    -EIO,
			    "catalog %s: tensor \"%s\": %u chunks for %" PRIu64
			    " bytes",
			    c->path, t->name, t->n_chunks, t->end - t->begin);
		t->chunks = calloc(t->n_chunks, sizeof(*t->chunks));
		if (!t->chunks)
			return udfs_error(-ENOMEM, "out of memory");
		for (uint32_t i = 0; i < t->n_chunks; i++) {
			const unsigned char *r = blob + (size_t)i * CHUNK_REC;

			t->chunks[i].offset = get_le(r, 8);
			t->chunks[i].length = (uint32_t)get_le(r + 8, 4);
			t->chunks[i].checksum = get_le(r + 12, 8);
			if (t->chunks[i].length > UDFS_CHUNK_MAX_STORED ||
			    t->chunks[i].offset > INT64_MAX)
				return udfs_error(
				    -EIO,
				    "catalog %s: tensor \"%s\": chunk %u claims %u bytes",
				    c->path, t->name, i, t->chunks[i].length);
		}
	}
	return 0;
}

/* File f (its model already set) from the current row of fs. */
static int file_row(udfs_catalog *c, sqlite3_stmt *fs, udfs_file *f)
{
	const void *hdr = sqlite3_column_blob(fs, 5);
	int err;

	f->fd = -1;
	f->ino = (uint64_t)sqlite3_column_int64(fs, 0);
	err = col_str(fs, 1, &f->path);
	if (err)
		return err;
	f->kind = sqlite3_column_int(fs, 2);
	f->size = (uint64_t)sqlite3_column_int64(fs, 3);
	f->data_offset = (uint64_t)sqlite3_column_int64(fs, 4);
	snprintf(f->sha256, sizeof(f->sha256), "%s",
		 (const char *)sqlite3_column_text(fs, 6));
	if (f->data_offset > f->size ||
	    (size_t)sqlite3_column_bytes(fs, 5) != f->data_offset)
		return udfs_error(
		    -EIO, "catalog %s: file %s has a malformed header row",
		    c->path, f->path);
	if (f->data_offset) {
		f->header = malloc(f->data_offset);
		if (!f->header)
			return udfs_error(-ENOMEM, "out of memory");
		memcpy(f->header, hdr, f->data_offset);
	}
	return 0;
}

/* The tensors of file f (cnt counts them, ts selects them). The array is
 * sized once: tensors are pointed at. */
static int load_tensors(udfs_catalog *c, sqlite3_stmt *cnt, sqlite3_stmt *ts,
			udfs_file *f)
{
	int64_t fid = (int64_t)f->ino;
	size_t n;
	int rc, err;

	sqlite3_reset(cnt);
	sqlite3_bind_int64(cnt, 1, fid);
	if (sqlite3_step(cnt) != SQLITE_ROW)
		return fail(c, SQLITE_ERROR, "count tensors");
	n = (size_t)sqlite3_column_int64(cnt, 0);
	f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
	if (!f->tensors)
		return udfs_error(-ENOMEM, "out of memory");
	sqlite3_reset(ts);
	sqlite3_bind_int64(ts, 1, fid);
	while ((rc = sqlite3_step(ts)) == SQLITE_ROW && f->n_tensors < n) {
		err = load_tensor(c, ts, f, &f->tensors[f->n_tensors++]);
		if (err)
			return err;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return fail(c, rc, "load tensors");
	return 0;
}

/* The header of file row f: its own, or when NULL (a delta's header that
 * is its base file's) that of its header_file, or in format 3 rows that
 * of the base file of its first tensor that has one (udfs(5), files);
 * file_row checks its length. */
#define HEADER_OF_F_V3                                                         \
	"coalesce(f.header, (SELECT b.header FROM tensors t JOIN files b "     \
	"ON b.id = t.base_file_id WHERE t.file_id = f.id ORDER BY t.idx "      \
	"LIMIT 1))"
#define HEADER_OF_F                                                            \
	"coalesce(f.header, (SELECT h.header FROM files h "                    \
	"WHERE h.id = f.header_file), " HEADER_OF_F_V3 ")"

/* The files of model m, a row each: the tensor map is NULL where the
 * tensors have rows of their own (format 3 and before). */
static int prep_files(udfs_catalog *c, sqlite3_stmt **fs)
{
	return prep(
	    c, fs,
	    c->has_map
		? "SELECT f.id, f.path, f.kind, f.size, f.data_offset, " HEADER_OF_F
		  ", f.sha256, f.tensor_map FROM files f WHERE f.model_id = ? ORDER BY f.path"
		: "SELECT f.id, f.path, f.kind, f.size, f.data_offset, " HEADER_OF_F_V3
		  ", f.sha256, NULL FROM files f WHERE f.model_id = ? ORDER BY f.path");
}

/* The tensors of file row f (the current row of fs): from its tensor
 * map, or from the tensors table (cnt counts them, ts selects them). */
static int file_tensors(udfs_catalog *c, sqlite3_stmt *fs, sqlite3_stmt *cnt,
			sqlite3_stmt *ts, udfs_file *f)
{
	const void *map = sqlite3_column_blob(fs, 7);
	char *label;
	int err;

	if (sqlite3_column_type(fs, 7) == SQLITE_NULL)
		return load_tensors(c, cnt, ts, f);
	label = udfs_asprintf("catalog %s: file %s", c->path, f->path);
	if (!label)
		return udfs_error(-ENOMEM, "out of memory");
	err = udfs_tmap_decode(f, map, (size_t)sqlite3_column_bytes(fs, 7),
			       label);
	free(label);
	return err;
}

static int load_files(udfs_catalog *c, udfs_model *m)
{
	sqlite3_stmt *fs = NULL, *ts = NULL, *cnt = NULL, *nf = NULL;
	size_t cap = 0;
	int rc, err;

	err = prep_files(c, &fs);
	if (!err)
		err = prep(
		    c, &ts,
		    "SELECT name, dtype, shape, begin, end, encoding, base_file_id, base_begin, mask, vkind, bits, lo, step, gain, rate, mseed, stored_bytes, chunks FROM tensors WHERE file_id = ? ORDER BY begin, idx");
	if (!err)
		err = prep(c, &cnt,
			   "SELECT count(*) FROM tensors WHERE file_id = ?");
	if (err)
		goto out;
	/* Tensors point at their file, so the files array is sized once and
	 * never moves (a realloc here once left dangling tensor->file). */
	err = prep(c, &nf, "SELECT count(*) FROM files WHERE model_id = ?");
	if (err)
		goto out;
	sqlite3_bind_int64(nf, 1, m->id);
	if (sqlite3_step(nf) != SQLITE_ROW) {
		err = fail(c, SQLITE_ERROR, "count files");
		goto out;
	}
	cap = (size_t)sqlite3_column_int64(nf, 0);
	m->files = calloc(cap + 1, sizeof(*m->files));
	if (!m->files) {
		err = udfs_error(-ENOMEM, "out of memory");
		goto out;
	}
	sqlite3_bind_int64(fs, 1, m->id);
	while ((rc = sqlite3_step(fs)) == SQLITE_ROW && m->n_files < cap) {
		udfs_file *f = &m->files[m->n_files++];

		f->model = m;
		err = file_row(c, fs, f);
		if (!err)
			err = file_tensors(c, fs, cnt, ts, f);
		if (err)
			goto out;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		err = fail(c, rc, "load files");
out:
	sqlite3_finalize(nf);
	sqlite3_finalize(cnt);
	sqlite3_finalize(ts);
	sqlite3_finalize(fs);
	return err;
}

int udfs_catalog_load_model(udfs_catalog *c, int64_t id, udfs_model **out,
			    char **storage, int64_t *base_id)
{
	sqlite3_stmt *st = NULL;
	udfs_model *m = NULL;
	int rc, err;

	*out = NULL;
	*storage = NULL;
	err = prep(
	    c, &st,
	    "SELECT name, kind, base_id, method, params, seed, created, source_bytes, stored_bytes, sparsity, storage FROM models WHERE id = ?");
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		err = rc == SQLITE_DONE ? udfs_error(-ENOENT,
						     "model %" PRId64
						     " is not in the catalog",
						     id)
					: fail(c, rc, "load model");
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		err = udfs_error(-ENOMEM, "out of memory");
		goto out;
	}
	m->id = id;
	m->pack_fd = -1;
	m->refs = 1;
	m->kind = sqlite3_column_int(st, 1);
	*base_id = sqlite3_column_int64(st, 2);
	m->seed = sqlite3_column_int64(st, 5);
	m->created = sqlite3_column_int64(st, 6);
	m->source_bytes = (uint64_t)sqlite3_column_int64(st, 7);
	m->stored_bytes = (uint64_t)sqlite3_column_int64(st, 8);
	m->sparsity = sqlite3_column_double(st, 9);
	err = col_str(st, 0, &m->name);
	if (!err)
		err = col_str(st, 3, &m->method);
	if (!err)
		err = col_str(st, 4, &m->params);
	if (!err)
		err = col_str(st, 10, storage);
	if (!err)
		err = load_files(c, m);
out:
	sqlite3_finalize(st);
	*out = m;
	return err;
}

int udfs_catalog_list(udfs_catalog *c, udfs_model_info **list, size_t *n)
{
	sqlite3_stmt *st;
	udfs_model_info *v = NULL;
	size_t len = 0, cap = 0;
	int rc, err;

	err = prep(
	    c, &st,
	    "SELECT m.id, m.name, coalesce(b.name, ''), m.kind, m.method, m.source_bytes, m.stored_bytes, m.created, (SELECT count(*) FROM files f WHERE f.model_id = m.id) FROM models m LEFT JOIN models b ON b.id = m.base_id ORDER BY m.name");
	if (err)
		return err;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		udfs_model_info *i;

		if (len == cap) {
			udfs_model_info *w;

			cap = cap ? 2 * cap : 16;
			w = realloc(v, cap * sizeof(*v));
			if (!w) {
				sqlite3_finalize(st);
				free(v);
				return udfs_error(-ENOMEM, "out of memory");
			}
			v = w;
		}
		i = &v[len++];
		memset(i, 0, sizeof(*i));
		i->id = sqlite3_column_int64(st, 0);
		snprintf(i->name, sizeof(i->name), "%s",
			 (const char *)sqlite3_column_text(st, 1));
		snprintf(i->base, sizeof(i->base), "%s",
			 (const char *)sqlite3_column_text(st, 2));
		i->kind = sqlite3_column_int(st, 3);
		snprintf(i->method, sizeof(i->method), "%s",
			 (const char *)sqlite3_column_text(st, 4));
		i->source_bytes = (uint64_t)sqlite3_column_int64(st, 5);
		i->stored_bytes = (uint64_t)sqlite3_column_int64(st, 6);
		i->created = sqlite3_column_int64(st, 7);
		i->n_files = (size_t)sqlite3_column_int64(st, 8);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(v);
		return fail(c, rc, "list models");
	}
	*list = v;
	*n = len;
	return 0;
}

int udfs_catalog_dependents(udfs_catalog *c, int64_t id, int *n)
{
	sqlite3_stmt *st;
	int err = prep(c, &st, "SELECT count(*) FROM models WHERE base_id=?");

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		*n = sqlite3_column_int(st, 0);
	else
		err = fail(c, SQLITE_ERROR, "count dependents");
	sqlite3_finalize(st);
	return err;
}

int udfs_catalog_delete_model(udfs_catalog *c, int64_t id, char **storage)
{
	static const char *const del[] = {
	    "DELETE FROM tensors WHERE file_id IN (SELECT id FROM files WHERE model_id = ?1)",
	    "DELETE FROM files WHERE model_id = ?1",
	    "DELETE FROM models WHERE id = ?1",
	};
	sqlite3_stmt *st;
	int err;

	err = prep(c, &st, "SELECT storage FROM models WHERE id = ?");
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return udfs_error(-ENOENT, "model %" PRId64 " not found", id);
	}
	err = col_str(st, 0, storage);
	sqlite3_finalize(st);
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(del) && !err; i++) {
		err = prep(c, &st, del[i]);
		if (err)
			break;
		sqlite3_bind_int64(st, 1, id);
		err = step_done(c, st, "delete model");
		sqlite3_finalize(st);
	}
	if (err) {
		free(*storage);
		*storage = NULL;
	}
	return err;
}

int udfs_catalog_storage_paths(udfs_catalog *c, char ***paths, size_t *n)
{
	sqlite3_stmt *st;
	char **v = NULL;
	size_t len = 0;
	int rc, err;

	err = prep(c, &st, "SELECT storage FROM models");
	if (err)
		return err;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = udfs_xrealloc(v, (len + 2) * sizeof(*v));
		v[len + 1] = NULL;
		if (col_str(st, 0, &v[len]))
			break;
		len++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		for (size_t i = 0; i < len; i++)
			free(v[i]);
		free(v);
		return rc == SQLITE_ROW ? -ENOMEM : fail(c, rc, "list storage");
	}
	*paths = v;
	*n = len;
	return 0;
}

int udfs_catalog_generation(udfs_catalog *c, int64_t *gen)
{
	sqlite3_stmt *st;
	int rc, err;

	err = prep(c, &st, "SELECT value FROM meta WHERE key='generation'");
	if (err)
		return err;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*gen = sqlite3_column_int64(st, 0);
	else
		err = fail(c, rc, "read generation");
	sqlite3_finalize(st);
	return err;
}

int udfs_catalog_model_meta_bytes(udfs_catalog *c, int64_t id, uint64_t *bytes)
{
	sqlite3_stmt *st;
	int err;

	/* Rows are counted by their payload plus ~64 bytes of record and
	 * index overhead each: what a model really adds to catalog.db. A
	 * writer's catalog is format 4 (prepare_writer). */
	err = prep(
	    c, &st,
	    "SELECT coalesce(sum(length(f.header)), 0) + coalesce(sum(length(f.tensor_map)), 0) + 64 * count(*), (SELECT coalesce(sum(length(t.chunks) + length(t.name)  + 64), 0) FROM tensors t JOIN files g ON g.id = t.file_id  WHERE g.model_id = ?1) FROM files f WHERE f.model_id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		*bytes = (uint64_t)sqlite3_column_int64(st, 0) +
			 (uint64_t)sqlite3_column_int64(st, 1) + 128;
	else
		err = fail(c, SQLITE_ERROR, "count catalog bytes");
	sqlite3_finalize(st);
	return err;
}

/* SPDX-License-Identifier: MIT */
/*
 * The SQLite catalog of a store: models, their files, tensors and chunk
 * maps. This module is the only one that includes <sqlite3.h>; SQLite
 * errors become -EIO (or -EBUSY, -EROFS, -ENOSPC) here, with SQLite's own
 * message recorded once. All SQL uses bound parameters.
 *
 * Writers group every row of one model in a single transaction
 * (udfs_catalog_begin .. udfs_catalog_commit), so a crash leaves either
 * the old catalog or the new one. Each add and rm bumps a generation
 * counter; the store then publishes a snapshot of that generation, which
 * is what readers open (store.c, cluster.h).
 */
#ifndef UDFS_CATALOG_H
#define UDFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Format version in PRAGMA user_version. Versions 1 (no published
 * snapshots), 2 (no shared headers) and 3 (no tensor maps: a row per
 * tensor) are upgraded in place by the first writer and still read;
 * udfs(5). */
#define UDFS_CATALOG_VERSION 4

typedef struct udfs_catalog udfs_catalog;

/*
 * Open (or with create, create) the catalog at path. rdonly opens it
 * immutable (a published snapshot, which never changes; also a format 1
 * catalog.db read once). A writer's open switches the catalog to a
 * rollback journal and upgrades format 1 to 2; the caller holds the
 * store's writer lock. A newer format is -EPROTO with a message. Caller
 * closes it.
 */
int udfs_catalog_open(const char *path, bool rdonly, bool create,
		      udfs_catalog **out);
void udfs_catalog_close(udfs_catalog *c);

/* BEGIN IMMEDIATE (waits for other writers up to the busy timeout);
 * -EROFS on a read-only catalog. */
int udfs_catalog_begin(udfs_catalog *c);
/* Bump the change counter and COMMIT: every write is a change. */
int udfs_catalog_commit(udfs_catalog *c);
void udfs_catalog_rollback(udfs_catalog *c);

/* Id of the model named name; -ENOENT (no message) when absent. */
int udfs_catalog_model_id(udfs_catalog *c, const char *name, int64_t *id);

/*
 * Insert a model row from m's scalar fields (name, kind, base->id, method,
 * params, seed, created, source/stored bytes, sparsity) and its storage
 * path (base directory or pack file, relative to the store). Sets m->id.
 */
int udfs_catalog_insert_model(udfs_catalog *c, udfs_model *m,
			      const char *storage);
/* Insert f (with all its tensors and chunk maps) under model_id; sets the
 * file's ino to the new row id. */
int udfs_catalog_insert_file(udfs_catalog *c, int64_t model_id, udfs_file *f);
/* Record the final stored byte count of a model. */
int udfs_catalog_set_stored(udfs_catalog *c, int64_t model_id,
			    uint64_t stored_bytes);

/*
 * Load model id with every file, tensor and chunk map into a new
 * udfs_model (refs 1, base NULL, no descriptors open, tensor base_file
 * pointers unresolved: store.c links them through base_file_id).
 * *storage gets the model's storage path and *base_id its base's id
 * (0 for a base). Caller frees *storage; the model is freed by store.c.
 */
int udfs_catalog_load_model(udfs_catalog *c, int64_t id, udfs_model **out,
			    char **storage, int64_t *base_id);

int udfs_catalog_list(udfs_catalog *c, udfs_model_info **list, size_t *n);

/* Number of models whose base is id. */
int udfs_catalog_dependents(udfs_catalog *c, int64_t id, int *n);

/* Delete model id and all its rows; *storage receives its storage path. */
int udfs_catalog_delete_model(udfs_catalog *c, int64_t id, char **storage);

/* Every storage path the catalog references (NULL-terminated, caller
 * frees each and the array). */
int udfs_catalog_storage_paths(udfs_catalog *c, char ***paths, size_t *n);

int udfs_catalog_generation(udfs_catalog *c, int64_t *gen);

/* Write a compact, complete copy of the committed catalog to path (which
 * must not exist), outside any transaction: a snapshot to publish. */
int udfs_catalog_snapshot(udfs_catalog *c, const char *path);

/* The change counter of the catalog file at path (read from its header,
 * without SQLite): differs after any commit to it, by anyone. */
int udfs_catalog_file_stamp(const char *path, uint32_t *stamp);

/* *has: is model id in the catalog? */
int udfs_catalog_has_model(udfs_catalog *c, int64_t id, bool *has);

/* Bytes of catalog rows that describe model id (header, chunk maps,
 * tensor rows): part of a model's stored bytes. */
int udfs_catalog_model_meta_bytes(udfs_catalog *c, int64_t id, uint64_t *bytes);

#endif

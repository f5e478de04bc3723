/* SPDX-License-Identifier: MIT */
/*
 * A udfs store opened for reading or writing, and its models loaded into
 * memory for serving: every file, tensor and chunk of a model as plain
 * arrays (the types of format/model.h), so that the read path never
 * touches SQLite.
 *
 * Layout on disk (udfs(5)):
 *   STORE/catalog.db    SQLite catalog (catalog.h)
 *   STORE/bases/<id>/   base model files, verbatim
 *   STORE/packs/<id>.pack  immutable chunk files of delta models
 *   STORE/tmp/          packs being written
 *
 * A loaded model is reference counted and holds its own descriptors (pack,
 * base files), so it keeps reading correctly after `udfs rm` removed it
 * from the catalog and unlinked its pack. A store opened with
 * UDFS_STORE_LAZY_FDS (the mount, which may load thousands of models)
 * holds a model's descriptors only while it is pinned (udfs_model_pin) and
 * keeps a bounded number of idle ones open for reuse.
 */
#ifndef UDFS_STORE_H
#define UDFS_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/model.h"

typedef struct udfs_store udfs_store;
typedef struct udfs_catalog udfs_catalog;

enum {
	UDFS_STORE_RDONLY = 1,	 /* open the catalog read-only (mount, ls) */
	UDFS_STORE_LAZY_FDS = 2, /* descriptors only while pinned (mount) */
};

/*
 * Open the store at dir. Errors: -ENOENT (not a store), -EPROTO (catalog
 * of another format version), -errno. Caller closes with
 * udfs_store_close(); loaded models must be put back first.
 */
int udfs_store_open(const char *dir, unsigned flags, udfs_store **out);
void udfs_store_close(udfs_store *s);

/* Create a new empty store at dir (which may exist if empty). */
int udfs_store_init(const char *dir);

const char *udfs_store_dir(const udfs_store *s);
udfs_catalog *udfs_store_catalog(udfs_store *s);

/* All models, sorted by name. Caller frees *list with free(). */
int udfs_store_list(udfs_store *s, udfs_model_info **list, size_t *n);

/*
 * Load a model (and its base) by name. Errors: -ENOENT with a message when
 * no such model. The caller releases it with udfs_model_put(). Concurrent
 * loads of one name share one object while it is alive.
 */
int udfs_model_load(udfs_store *s, const char *name, udfs_model **out);
void udfs_model_get(udfs_model *m);
void udfs_model_put(udfs_model *m);

/*
 * Make sure the descriptors of m (and of its base) are open and stay open
 * until the matching udfs_model_unpin(). Reads of m's files need a pin in
 * a UDFS_STORE_LAZY_FDS store; in other stores a loaded model is pinned
 * from load to its last put. The caller holds a reference on m. Errors:
 * -EIO with a message when a stored file is gone or was replaced.
 */
int udfs_model_pin(udfs_model *m);
/* Drop a pin. Idle descriptors stay open, up to a bound for the store. */
void udfs_model_unpin(udfs_model *m);

/* Models loaded now, those whose descriptors are open, and how many
 * descriptors they hold. */
void udfs_store_fd_stats(udfs_store *s, uint64_t *loaded, uint64_t *open_models,
			 uint64_t *open_fds);

/* File of a loaded model by path, or NULL (binary search). */
const udfs_file *udfs_model_file(const udfs_model *m, const char *path);

/* Tensor of a loaded model by name across its files, or NULL. */
const udfs_tensor *udfs_model_tensor(const udfs_model *m, const char *name);

/* True when a catalog storage path names an entry directly under packs/
 * or bases/ (what a store can hold); anything else is refused. */
bool udfs_storage_path_ok(const char *rel);

/* Change counter of the catalog: differs after any add or rm by anyone. */
int udfs_store_generation(udfs_store *s, int64_t *gen);

/* Bytes the store occupies on disk (catalog, bases, packs). */
int udfs_store_usage(udfs_store *s, uint64_t *bytes);

#endif

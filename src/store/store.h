/* SPDX-License-Identifier: MIT */
/*
 * A udfs store opened for reading or writing, and its models loaded into
 * memory for serving: every file, tensor and chunk of a model as plain
 * arrays (the types of format/model.h), so that the read path never
 * touches SQLite.
 *
 * Layout on disk (man udfs(5)):
 *   STORE/catalog.db    SQLite catalog (catalog.h), written by writers
 *   STORE/snapshots/    its published generations, read by readers
 *   STORE/catalog.current, STORE/lock, STORE/leases/  (cluster.h)
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
/* The live catalog inside udfs_store_begin .. commit, else the snapshot
 * served (borrowed; valid until the next udfs_store_generation). */
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

/*
 * The generation served: re-reads the store's pointer and, when a writer
 * published a newer generation, serves that snapshot from now on (models
 * already loaded stay valid). Differs after any add or rm by anyone.
 */
int udfs_store_generation(udfs_store *s, int64_t *gen);

/* True when the store is a format 1 store this process could not upgrade:
 * its catalog is served as it was at open, and changes are not followed. */
bool udfs_store_frozen(const udfs_store *s);

/*
 * Keep a lease for this process in STORE/leases naming the generations it
 * serves, refreshed by a thread until udfs_store_close (so gc on any node
 * keeps what this process may still read). Mounts call it after they
 * daemonize. -errno with a message when the lease cannot be written (a
 * read-only export): then only the grace period protects this process.
 */
int udfs_store_follow(udfs_store *s);
/* Can this process follow the store and keep a lease? 0, or -errno with a
 * message that says what will not work (for a mount to show at start). */
int udfs_store_follow_check(udfs_store *s);

/*
 * Writers: take the store's writer lock (waiting for another writer with
 * a message), open the live catalog and begin a transaction on it;
 * udfs_store_catalog() returns it until commit or rollback. Commit
 * publishes the new generation's snapshot and releases the lock.
 */
int udfs_store_begin(udfs_store *s);
int udfs_store_commit(udfs_store *s);
void udfs_store_rollback(udfs_store *s);

/*
 * In a writer transaction (gc): remove the snapshots no reader may still
 * need (none when dry_run) and return the generations of those that stay
 * (sorted; the current one included) and the filesystem's clock (*now,
 * cluster.h). Caller frees *gens.
 */
int udfs_store_gc_view(udfs_store *s, bool dry_run, int64_t **gens, size_t *n,
		       double *now);

/* Bytes the store occupies on disk (catalog, bases, packs). */
int udfs_store_usage(udfs_store *s, uint64_t *bytes);

#endif

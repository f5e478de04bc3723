/* SPDX-License-Identifier: MIT */
/*
 * The store's upkeep: remove a model, collect garbage (admin.c). Both take
 * the same protocol as every writer: the catalog changes in one
 * transaction, files go only when nothing references them.
 */
#ifndef UDFS_ADMIN_H
#define UDFS_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/*
 * Remove a model's catalog rows; a base still used by deltas is -EBUSY.
 * Its pack or base directory is deleted at once only when no reader may
 * still use it (udfs_store_gc's rule), else by a later gc.
 */
int udfs_store_rm(udfs_store *s, const char *name);

/* Called by udfs_store_gc() for each entry it removes (or would remove):
 * rel is relative to the store ("packs/12.pack"), borrowed for the call. */
typedef void (*udfs_gc_fn)(const char *rel, uint64_t bytes, void *ctx);

/*
 * Remove files nothing references: removed models and interrupted adds,
 * calling each (if not NULL) for every one. A pack or base goes only when
 * neither the live catalog nor a snapshot a reader may still use
 * (current, leased, or superseded less than the grace period ago) names
 * it; a tmp/ entry only when unlocked and older than the grace period
 * (udfs(5)). With dry_run nothing is removed: only each is called.
 * *freed receives the bytes (to be) removed, *files their number.
 */
int udfs_store_gc(udfs_store *s, bool dry_run, udfs_gc_fn each, void *ctx,
		  uint64_t *freed, size_t *files);

#endif

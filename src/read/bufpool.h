/* SPDX-License-Identifier: MIT */
/*
 * The buffers of the chunk cache (cache.c): one per decoded chunk, at most
 * UDFS_CHUNK_BYTES. Buffers of more than half a chunk are slots: halves of
 * 2 MiB blocks mapped on a 2 MiB boundary, asked for as transparent huge
 * pages and populated whole when mapped, and kept for the next chunk once
 * freed. Smaller ones (a tensor's last chunk, a small tensor) are mappings
 * of their own, a few kept for a buffer of the same length.
 *
 * What a buffer holds counts against the cache's capacity as
 * udfs_bufpool_cost() says, so the slots ever mapped stay within what the
 * cache once charged: the daemon's memory stays within the capacity plus
 * what cache.h allows over it.
 */
#ifndef UDFS_BUFPOOL_H
#define UDFS_BUFPOOL_H

#include <stddef.h>

typedef struct udfs_bufpool udfs_bufpool;

/* An empty pool. Caller frees with udfs_bufpool_free(). NULL: no memory. */
udfs_bufpool *udfs_bufpool_new(void);

/* Unmap every buffer, those in use too. Accepts NULL. */
void udfs_bufpool_free(udfs_bufpool *bp);

/* A writable buffer of len bytes (len <= UDFS_CHUNK_BYTES), its pages
 * mapped; its contents are undefined. NULL: no memory (never aborts).
 * Give it back with udfs_bufpool_put() with the same len. Thread-safe. */
unsigned char *udfs_bufpool_get(udfs_bufpool *bp, size_t len);

/* Give back p, from udfs_bufpool_get(bp, len). Accepts NULL. */
void udfs_bufpool_put(udfs_bufpool *bp, unsigned char *p, size_t len);

/* Bytes of memory that a buffer of len bytes holds: what the cache charges
 * for it. */
size_t udfs_bufpool_cost(size_t len);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The reconstructed-chunk cache of the mount daemon: decoded chunks keyed
 * by (tensor, chunk index), bounded in bytes, LRU eviction, reference
 * counted entries (an entry being copied out or sent by a reader is never
 * freed under it), single-flight decoding (concurrent readers of one chunk
 * decode it once) on a bounded decode pool, which also decodes ahead of
 * sequential streams.
 *
 * Readers never decode when there is a pool: they queue the chunks they
 * need and wait, so the chunks of one read decode in parallel and decoding
 * memory is per pool thread, whatever the number of readers. A reader
 * whose chunks do not fit waits until c->bytes is back at the capacity, so
 * entries held by readers and in flight exceed the capacity by at most one
 * read's chunks. No lock is held while decoding. An entry holds a reference on
 * its tensor's model (ops->hold), so the tensor pointer stays valid while the
 * entry is cached; a removed model's entries simply age out.
 *
 * The cache never sees FUSE; udfs_cache_provider() plugs it into
 * udfs_file_read() (recon.h).
 */
#ifndef UDFS_CACHE_H
#define UDFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "read/recon.h"
#include "store/store.h"

typedef struct udfs_cache udfs_cache;

/*
 * How the cache decodes and pins chunks. A NULL ops (or a NULL member)
 * selects the real implementation: udfs_chunk_out_len, udfs_chunk_decode
 * with t->file->model pinned, and udfs_model_get/put on t->file->model.
 * Tests plug in fakes.
 */
typedef struct udfs_cache_ops {
	size_t (*out_len)(const udfs_tensor *t, uint32_t ci);
	int (*decode)(const udfs_tensor *t, uint32_t ci, void *out);
	void (*hold)(const udfs_tensor *t);    /* keep t valid ... */
	void (*release)(const udfs_tensor *t); /* ... until this call */
} udfs_cache_ops;

typedef struct udfs_cache_stats {
	uint64_t hits;		/* served from a ready entry */
	uint64_t misses;	/* decoded for a reader */
	uint64_t waits;		/* waited for another thread's decode */
	uint64_t decodes;	/* successful decodes, any thread */
	uint64_t bytes_decoded; /* output bytes of those (shared entries) */
	uint64_t errors;	/* failed decodes */
	uint64_t evictions;
	uint64_t ahead_queued;	/* decode-ahead jobs accepted */
	uint64_t ahead_dropped; /* ... refused: queue full */
	/* ... cancelled: a reader took the chunk while the job waited */
	uint64_t ahead_cancelled;
	uint64_t bytes; /* charged now (ready + in flight) */
	uint64_t capacity;
	uint64_t entries;
} udfs_cache_stats;

/*
 * New cache of capacity bytes with a decode pool of ahead_threads threads
 * (0: none). Starts threads, so call it after daemonizing. ops is copied.
 * Caller frees with udfs_cache_free(). Errors: -ENOMEM, -errno.
 */
int udfs_cache_new(uint64_t capacity, unsigned ahead_threads,
		   const udfs_cache_ops *ops, udfs_cache **out);

/*
 * Stop the decode pool (pending decode-ahead jobs are dropped), free every
 * entry and release its model. No reader may hold an entry. Accepts NULL.
 */
void udfs_cache_free(udfs_cache *c);

/* One chunk a read needs: t and ci in, data and handle out. */
typedef struct udfs_chunk_req {
	const udfs_tensor *t;
	uint32_t ci;
	const void *data; /* its udfs_chunk_out_len(t, ci) decoded bytes */
	void *handle;	  /* for udfs_cache_put() */
	bool fresh;	  /* private: a new entry of this call */
} udfs_chunk_req;

/*
 * The decoded bytes of the n chunks of r (distinct chunks): from the
 * cache, or decoded by the pool (in parallel; with no pool, by this
 * thread), waiting first while the cache is full of entries in use. Each
 * r[i].data stays valid until udfs_cache_put(c, r[i].handle). The caller
 * keeps the tensors valid for the duration of the call. All or nothing:
 * on error no entry is held. Errors: those of the decoder (-EIO for a
 * damaged chunk, message recorded on this thread), -ENOMEM.
 */
int udfs_cache_get_many(udfs_cache *c, udfs_chunk_req *r, size_t n);

/* udfs_cache_get_many() of the one chunk ci of t. */
int udfs_cache_get(udfs_cache *c, const udfs_tensor *t, uint32_t ci,
		   const void **data, void **handle);
/* Give back an entry obtained with udfs_cache_get(). */
void udfs_cache_put(udfs_cache *c, void *handle);
/* The same, after a reply delivered served bytes of it. An entry whose
 * bytes have all been delivered (the kernel's page cache holds them) is
 * consumed: new entries take its place before the cache grows, so that a
 * model read once after the mount does not fill the cache with fresh
 * buffers. Reading it again makes it an ordinary entry. */
void udfs_cache_put_served(udfs_cache *c, void *handle, size_t served);

/* Fill p so that udfs_file_read() takes its chunks from c. */
void udfs_cache_provider(udfs_cache *c, udfs_chunk_provider *p);

/*
 * Ask the decode-ahead pool to decode chunk ci of t into the cache. Never
 * blocks on a decode. Returns 0 when queued, -EEXIST when the chunk is
 * cached or being decoded, -EAGAIN when the queue is full or there is no
 * pool. The job holds a model reference until it ran.
 */
int udfs_cache_prefetch(udfs_cache *c, const udfs_tensor *t, uint32_t ci);

/* udfs_cache_prefetch() of every chunk holding bytes of f in [from, to). */
void udfs_cache_prefetch_range(udfs_cache *c, const udfs_file *f, uint64_t from,
			       uint64_t to);

/* A snapshot of the counters. */
void udfs_cache_get_stats(udfs_cache *c, udfs_cache_stats *st);

#endif

// SPDX-License-Identifier: MIT
/*
 * The chunk cache's buffers (bufpool.h), built for a cache that fills with
 * 1 MiB chunks while a model is read for the first time after the mount,
 * then frees one chunk for each new one.
 *
 * Why slots of huge pages: while the cache filled, every chunk had a fresh
 * 1 MiB mapping of 4 KiB pages, and writing into fresh pages is slow even
 * when they are mapped in advance (MAP_POPULATE): on this project's VMs,
 * pread into 128 fresh populated 1 MiB mappings ran at 0.5-0.7 GB/s, and
 * at 11-12 GB/s into the same buffers a second time or into fresh huge
 * pages populated with MADV_POPULATE_WRITE (bench/SPEED.md, session 24).
 * The first read of a lossless model after the mount spent most of its
 * time in the decoder's first writes. Huge pages also spare the decoder
 * 255 of every 256 TLB entries of a buffer on any machine.
 *
 * Invariants, under bp->lock: every slot is in use or on bp->free; the
 * blocks ever mapped are in bp->blocks (unmapped only by
 * udfs_bufpool_free), and bp->free has room for both slots of each, so
 * putting a slot back never allocates.
 */
#include "read/bufpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "format/model.h"

#define SLOT ((size_t)UDFS_CHUNK_BYTES)
#define BLOCK (2 * SLOT) /* one huge page on x86-64 and arm64 */
#define SMALL_SPARES 8	 /* small buffers kept for reuse */

struct udfs_bufpool {
	pthread_mutex_t lock;
	unsigned char **blocks; /* every block mapped, BLOCK bytes each */
	size_t n_blocks;
	unsigned char **free; /* free slots: room for 2 * n_blocks */
	size_t n_free;
	struct {
		unsigned char *p;
		size_t len;
	} small[SMALL_SPARES]; /* freed small buffers */
	unsigned n_small;
};

size_t udfs_bufpool_cost(size_t len) { return len > SLOT / 2 ? SLOT : len; }

udfs_bufpool *udfs_bufpool_new(void)
{
	udfs_bufpool *bp = calloc(1, sizeof(*bp));

	if (bp)
		pthread_mutex_init(&bp->lock, NULL);
	return bp;
}

void udfs_bufpool_free(udfs_bufpool *bp)
{
	if (!bp)
		return;
	for (size_t i = 0; i < bp->n_blocks; i++)
		munmap(bp->blocks[i], BLOCK);
	for (unsigned i = 0; i < bp->n_small; i++)
		munmap(bp->small[i].p, bp->small[i].len);
	free(bp->blocks);
	free(bp->free);
	pthread_mutex_destroy(&bp->lock);
	free(bp);
}

/* A fresh block: BLOCK bytes on a BLOCK boundary (mapped twice the size,
 * the ends cut off), huge pages asked for before the first touch, every
 * page mapped now. NULL: no memory. */
static unsigned char *map_block(void)
{
	unsigned char *m, *b;
	uintptr_t at;

	m = mmap(NULL, 2 * BLOCK, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	at = ((uintptr_t)m + BLOCK - 1) & ~(uintptr_t)(BLOCK - 1);
	b = (unsigned char *)at;
	if (b > m)
		munmap(m, (size_t)(b - m));
	munmap(b + BLOCK, (size_t)(m + 2 * BLOCK - (b + BLOCK)));
	/* Hints: without huge pages (THP off, another page size) the block
	 * is 4 KiB pages, populated all the same. */
	(void)madvise(b, BLOCK, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
	if (madvise(b, BLOCK, MADV_POPULATE_WRITE) == 0)
		return b;
	if (errno != EINVAL) { /* ENOMEM, or EFAULT for no memory at all */
		munmap(b, BLOCK);
		return NULL;
	}
#endif
	/* A kernel before 5.14: fault the pages in now all the same. */
	for (size_t i = 0; i < BLOCK; i += 4096)
		b[i] = 0;
	return b;
}

/* Add the fresh block b: one slot of it for the caller, the other free.
 * Under bp->lock. false: no memory for the lists. */
static bool add_block(udfs_bufpool *bp, unsigned char *b)
{
	unsigned char **blocks, **fr;

	blocks = realloc(bp->blocks, (bp->n_blocks + 1) * sizeof(*blocks));
	if (!blocks)
		return false;
	bp->blocks = blocks;
	fr = realloc(bp->free, 2 * (bp->n_blocks + 1) * sizeof(*fr));
	if (!fr)
		return false;
	bp->free = fr;
	bp->blocks[bp->n_blocks++] = b;
	bp->free[bp->n_free++] = b + SLOT;
	return true;
}

static unsigned char *get_small(udfs_bufpool *bp, size_t len)
{
	unsigned char *p = NULL;
	void *m;

	pthread_mutex_lock(&bp->lock);
	for (unsigned i = 0; i < bp->n_small; i++) {
		if (bp->small[i].len == len) {
			p = bp->small[i].p;
			bp->small[i] = bp->small[--bp->n_small];
			break;
		}
	}
	pthread_mutex_unlock(&bp->lock);
	if (p)
		return p;
	m = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return m == MAP_FAILED ? NULL : m;
}

unsigned char *udfs_bufpool_get(udfs_bufpool *bp, size_t len)
{
	unsigned char *p = NULL;
	bool added;

	if (udfs_bufpool_cost(len) != SLOT)
		return get_small(bp, len);
	pthread_mutex_lock(&bp->lock);
	if (bp->n_free)
		p = bp->free[--bp->n_free];
	pthread_mutex_unlock(&bp->lock);
	if (p)
		return p;
	/* Outside the lock: populating a block takes a while, and the
	 * other decode threads fill the cache too. */
	p = map_block();
	if (!p)
		return NULL;
	pthread_mutex_lock(&bp->lock);
	added = add_block(bp, p);
	pthread_mutex_unlock(&bp->lock);
	if (!added) {
		munmap(p, BLOCK);
		return NULL;
	}
	return p;
}

void udfs_bufpool_put(udfs_bufpool *bp, unsigned char *p, size_t len)
{
	if (!p)
		return;
	pthread_mutex_lock(&bp->lock);
	if (udfs_bufpool_cost(len) == SLOT) {
		bp->free[bp->n_free++] = p;
		p = NULL;
	} else if (bp->n_small < SMALL_SPARES && len) {
		bp->small[bp->n_small].p = p;
		bp->small[bp->n_small].len = len;
		bp->n_small++;
		p = NULL;
	}
	pthread_mutex_unlock(&bp->lock);
	if (p)
		munmap(p, len ? len : 1);
}

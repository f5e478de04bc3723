/* SPDX-License-Identifier: MIT */
/*
 * An intrusive chained hash table keyed by 64-bit numbers: a struct
 * udfs_hnode inside each element. Several elements may share a key (the
 * caller's key may be a hash of a longer one); lookups visit the nodes of
 * one key and the caller tells them apart. The caller locks. Used for the
 * chunk cache (read/cache.c) and the daemon's inode table (fuse/ops.c).
 */
#ifndef UDFS_HTABLE_H
#define UDFS_HTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/prng.h"

struct udfs_hnode {
	struct udfs_hnode *next; /* chain of one bucket */
	uint64_t key;
};

struct udfs_htable {
	struct udfs_hnode **b;
	size_t mask; /* buckets - 1, buckets a power of two */
};

/* At least nbuckets buckets (a power of two is used). 0 or -ENOMEM. */
int udfs_htable_init(struct udfs_htable *h, size_t nbuckets);
/* Free the buckets (not the elements). Accepts a zeroed table. */
void udfs_htable_destroy(struct udfs_htable *h);
/* Remove and return any node, NULL when the table is empty: for freeing
 * every element. */
struct udfs_hnode *udfs_htable_pop(struct udfs_htable *h);

static inline struct udfs_hnode **
udfs_htable_bucket(const struct udfs_htable *h, uint64_t key)
{
	return &h->b[udfs_mix64(key) & h->mask];
}

static inline void udfs_htable_add(struct udfs_htable *h, struct udfs_hnode *n,
				   uint64_t key)
{
	struct udfs_hnode **b = udfs_htable_bucket(h, key);

	n->key = key;
	n->next = *b;
	*b = n;
}

/* Remove n, which is in h. */
static inline void udfs_htable_del(struct udfs_htable *h, struct udfs_hnode *n)
{
	struct udfs_hnode **pp = udfs_htable_bucket(h, n->key);

	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	n->next = NULL;
}

/* The first node with key, or NULL; then udfs_htable_next() for more. */
static inline struct udfs_hnode *udfs_htable_next(struct udfs_hnode *n,
						  uint64_t key)
{
	while (n && n->key != key)
		n = n->next;
	return n;
}

static inline struct udfs_hnode *udfs_htable_first(const struct udfs_htable *h,
						   uint64_t key)
{
	return udfs_htable_next(*udfs_htable_bucket(h, key), key);
}

#endif

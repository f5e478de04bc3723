/* SPDX-License-Identifier: MIT */
/*
 * An intrusive, circular, doubly linked list: a struct udfs_list inside
 * each element, and one as the head (an empty list points at itself).
 * Insertion and removal are O(1) and never allocate; the caller locks.
 * Used for the cache's LRU order and the daemon's open handles.
 */
#ifndef UDFS_LIST_H
#define UDFS_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct udfs_list {
	struct udfs_list *prev, *next;
};

/* The element of type that holds member at ptr. */
#define udfs_container_of(ptr, type, member)                                   \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void udfs_list_init(struct udfs_list *h)
{
	h->prev = h->next = h;
}

static inline bool udfs_list_empty(const struct udfs_list *h)
{
	return h->next == h;
}

/* Insert n at the front of h. */
static inline void udfs_list_push(struct udfs_list *h, struct udfs_list *n)
{
	n->prev = h;
	n->next = h->next;
	h->next->prev = n;
	h->next = n;
}

/* Take n out of its list; n is then an empty list of its own. */
static inline void udfs_list_del(struct udfs_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	udfs_list_init(n);
}

#endif

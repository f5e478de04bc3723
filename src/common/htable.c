// SPDX-License-Identifier: MIT
/* The out-of-line parts of the intrusive hash table (htable.h). */
#include "common/htable.h"

#include <errno.h>
#include <stdlib.h>

int udfs_htable_init(struct udfs_htable *h, size_t nbuckets)
{
	size_t n = 1;

	while (n < nbuckets)
		n <<= 1;
	h->b = calloc(n, sizeof(*h->b));
	h->mask = n - 1;
	return h->b ? 0 : -ENOMEM;
}

void udfs_htable_destroy(struct udfs_htable *h)
{
	free(h->b);
	h->b = NULL;
	h->mask = 0;
}

struct udfs_hnode *udfs_htable_pop(struct udfs_htable *h)
{
	for (size_t i = 0; h->b && i <= h->mask; i++) {
		struct udfs_hnode *n = h->b[i];

		if (n) {
			h->b[i] = n->next;
			n->next = NULL;
			return n;
		}
	}
	return NULL;
}

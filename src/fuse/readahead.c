// SPDX-License-Identifier: MIT
/*
 * Decode-ahead for sequential readers. The kernel splits one sequential
 * stream into many read requests (readahead windows, several threads, out
 * of order by a little), so detection is per inode, not per handle: a read
 * that starts within a window of where the previous one ended extends the
 * streak; after two such reads the chunks of the next AHEAD_BYTES past the
 * end of the read are handed to the cache's decode-ahead pool, each at
 * most once per stream. Random readers never trigger it.
 */
#include "fuse/fuse_i.h"

#include "common/util.h"

#define AHEAD_BYTES (3u * UDFS_CHUNK_BYTES) /* decode 2-4 chunks ahead */
#define SLACK (4u * UDFS_CHUNK_BYTES)	    /* reordering tolerated */

void udfs_fs_readahead(struct udfs_fs *fs, struct udfs_node *n, uint64_t off,
		       size_t size)
{
	uint64_t end = off + size, from = 0, to = 0;

	if (!fs->cache || n->kind != UDFS_NODE_FILE)
		return;
	pthread_mutex_lock(&n->ra_lock);
	if (off + SLACK >= n->ra_next && off <= n->ra_next + SLACK) {
		n->ra_streak++;
	} else {
		n->ra_streak = 0;
		n->ra_issued = 0;
	}
	n->ra_next = UDFS_MAX(n->ra_streak ? n->ra_next : 0, end);
	if (n->ra_streak >= 2) {
		from = UDFS_MAX(end, n->ra_issued);
		to = end + AHEAD_BYTES;
		if (from < to)
			n->ra_issued = to;
	}
	pthread_mutex_unlock(&n->ra_lock);
	if (from < to)
		udfs_cache_prefetch_range(fs->cache, n->file, from, to);
}

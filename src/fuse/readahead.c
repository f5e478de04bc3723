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

/* Ask the cache for the chunks overlapping file bytes [from, to). */
static void prefetch_range(struct udfs_fs *fs, const udfs_file *f,
			   uint64_t from, uint64_t to)
{
	uint64_t pos = UDFS_MAX(from, f->data_offset);

	to = UDFS_MIN(to, f->size);
	while (pos < to) {
		uint64_t rel = pos - f->data_offset, next;
		const udfs_tensor *t = udfs_file_tensor_at(f, rel);
		uint32_t ci;

		if (!t || t->end <= rel)
			break;
		if (!t->chunks || !t->n_chunks) { /* read straight from base */
			next = t->end;
		} else {
			ci = (uint32_t)((rel - t->begin) / UDFS_CHUNK_BYTES);
			if (ci >= t->n_chunks)
				break;
			udfs_cache_prefetch(fs->cache, t, ci);
			next = UDFS_MIN(t->begin + ((uint64_t)ci + 1) *
						       UDFS_CHUNK_BYTES,
					t->end);
		}
		pos = f->data_offset + next;
	}
}

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
		prefetch_range(fs, n->file, from, to);
}

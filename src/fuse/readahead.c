// SPDX-License-Identifier: MIT
/*
 * Decode-ahead for sequential readers. The kernel splits one sequential
 * stream into many read requests (readahead windows, several threads, out
 * of order by a little), so detection is per inode, not per handle; and a
 * file may be read by several streams at once (threads reading parts of
 * it, processes loading the same model), so an inode follows up to
 * UDFS_RA_STREAMS of them. A read that starts within a window of where a
 * stream's previous read ended extends that stream's streak; any other
 * read starts a stream in place of the least recently used one. After two
 * sequential reads the chunks of the next ahead_bytes() past the end of
 * the read are handed to the cache's decode-ahead pool, each at most once
 * per stream. Random readers never trigger it. With one stream per inode,
 * four threads reading four parts of a file reset each other's streak on
 * every read: each of their requests then waited for its chunks to be
 * decoded (a wake-up per chunk) instead of finding them ready.
 */
#include "fuse/fuse_i.h"

#include "common/util.h"

#define SLACK (4u * UDFS_CHUNK_BYTES) /* reordering tolerated */

/*
 * How far past a stream's last read its chunks are decoded: 8 chunks,
 * but at most a sixteenth of the cache (at least 3 chunks), so that the
 * streams of many readers do not evict each other's chunks before they
 * are read. Past 3 chunks the depth pays where the store is not in the
 * page cache: the pool's preads of the base and the packs wait on the
 * disk, and more of them in flight keep it busy (bench/SPEED.md,
 * session 30: a cold load of the lossless model 0.69 -> 0.55 s; 16
 * chunks was no better than 8).
 */
static uint64_t ahead_bytes(const struct udfs_fs *fs)
{
	uint64_t chunks = fs->cache_bytes / 16 / UDFS_CHUNK_BYTES;

	return UDFS_MIN(UDFS_MAX(chunks, 3), 8) * UDFS_CHUNK_BYTES;
}

/* The stream of n that a read at off continues, or the one to replace. */
static struct udfs_ra_stream *ra_stream(struct udfs_node *n, uint64_t off,
					bool *found)
{
	struct udfs_ra_stream *lru = &n->ra[0];

	for (unsigned i = 0; i < UDFS_RA_STREAMS; i++) {
		struct udfs_ra_stream *s = &n->ra[i];

		if (s->used && off + SLACK >= s->next &&
		    off <= s->next + SLACK) {
			*found = true;
			return s;
		}
		if (s->used < lru->used)
			lru = s;
	}
	*found = false;
	return lru;
}

void udfs_fs_readahead(struct udfs_fs *fs, struct udfs_node *n, uint64_t off,
		       size_t size)
{
	uint64_t end = off + size, from = 0, to = 0;
	struct udfs_ra_stream *s;
	bool found;

	if (!fs->cache || n->kind != UDFS_NODE_FILE)
		return;
	pthread_mutex_lock(&n->ra_lock);
	s = ra_stream(n, off, &found);
	if (found) {
		s->streak++;
		s->next = UDFS_MAX(s->next, end);
	} else {
		*s = (struct udfs_ra_stream){.next = end};
	}
	/* 0 means unused: the clock skips it when it wraps. */
	s->used = ++n->ra_clock ? n->ra_clock : ++n->ra_clock;
	if (s->streak >= 2) {
		from = UDFS_MAX(end, s->issued);
		to = end + ahead_bytes(fs);
		if (from < to)
			s->issued = to;
	}
	pthread_mutex_unlock(&n->ra_lock);
	if (from < to)
		udfs_cache_prefetch_range(fs->cache, n->file, from, to);
}

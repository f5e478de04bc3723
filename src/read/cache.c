// SPDX-License-Identifier: MIT
/*
 * The reconstructed-chunk cache (cache.h), built for the mount daemon's
 * workload: a few to a few dozen threads reading 128 KiB - 1 MiB ranges of
 * multi-GB files, mostly sequentially, where decoding one chunk (about
 * 1 MiB of output) costs around a millisecond and must happen once.
 *
 * Invariants, all under c->lock:
 * - every entry in the hash table is also on the LRU list, and c->bytes is
 *   the sum of the lengths of the entries in the table (ready or loading);
 * - an entry is freed only when it is out of the table and its reference
 *   count is zero; a loading entry always has a reference (its decoder's);
 * - eviction takes ready entries with no reader from the LRU tail until
 *   c->bytes <= capacity. Entries in use may push c->bytes above capacity
 *   by at most one chunk per concurrent reader.
 * Decoding, freeing buffers and releasing models happen outside the lock.
 * Buffers are mmap-ed so that evicted memory goes back to the system at
 * once (but for SPARE_MAX spares kept for reuse): the daemon stays below
 * capacity plus a small constant.
 */
#include "read/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/htable.h"
#include "common/list.h"
#include "common/util.h"
#include "read/recon.h"

#define WAIT_SECONDS 10 /* for another thread's decode, then decode */
#define AHEAD_QUEUE 64	/* pending decode-ahead jobs */
#define SPARE_MAX 8	/* freed buffers kept for reuse */

enum { LOADING, READY, FAILED };

struct entry {
	const udfs_tensor *t;
	uint32_t ci;
	int state;
	int refs; /* readers + the decoder while loading */
	bool in_table;
	size_t len;
	unsigned char *data;	 /* len bytes once READY */
	struct udfs_hnode hn;	 /* in c->table, keyed by (t, ci) */
	struct udfs_list lru;	 /* c->lru, most recent first */
	struct entry *free_next; /* a free list, once out of the table */
};

struct job {
	const udfs_tensor *t;
	uint32_t ci;
};

struct udfs_cache {
	pthread_mutex_t lock;
	pthread_cond_t ready; /* broadcast when a decode finishes */
	udfs_cache_ops ops;
	uint64_t capacity;
	struct udfs_htable table;
	struct udfs_list lru;
	udfs_cache_stats st;

	/* Buffers of freed entries, reused to spare the page faults and
	 * page clearing of fresh mappings (about a tenth of a decode). */
	pthread_mutex_t spare_lock;
	struct {
		unsigned char *p;
		size_t len;
	} spare[SPARE_MAX];
	unsigned nspare;

	/* Decode-ahead pool. */
	pthread_cond_t work;
	struct job queue[AHEAD_QUEUE]; /* ring */
	unsigned qhead, qlen;
	bool stop;
	unsigned nthreads;
	pthread_t *threads;
};

static size_t default_out_len(const udfs_tensor *t, uint32_t ci)
{
	return udfs_chunk_out_len(t, ci);
}

/* Pinned while it reads: a decode-ahead job may run after the last file
 * handle of the model closed, when its pack may be closed (store.h). */
static int default_decode(const udfs_tensor *t, uint32_t ci, void *out)
{
	udfs_model *m = t->file->model;
	int err = udfs_model_pin(m);

	if (err)
		return err;
	err = udfs_chunk_decode(t, ci, out);
	udfs_model_unpin(m);
	return err;
}

static void default_hold(const udfs_tensor *t)
{
	udfs_model_get(t->file->model);
}

static void default_release(const udfs_tensor *t)
{
	udfs_model_put(t->file->model);
}

/* The table key of chunk ci of t: a hash, entries tell keys apart. */
static uint64_t key_of(const udfs_tensor *t, uint32_t ci)
{
	return (uint64_t)(uintptr_t)t ^ udfs_mix64(ci);
}

static struct entry *find(udfs_cache *c, const udfs_tensor *t, uint32_t ci)
{
	uint64_t key = key_of(t, ci);

	for (struct udfs_hnode *n = udfs_htable_first(&c->table, key); n;
	     n = udfs_htable_next(n->next, key)) {
		struct entry *e = udfs_container_of(n, struct entry, hn);

		if (e->t == t && e->ci == ci)
			return e;
	}
	return NULL;
}

static void table_insert(udfs_cache *c, struct entry *e)
{
	udfs_htable_add(&c->table, &e->hn, key_of(e->t, e->ci));
	e->in_table = true;
	udfs_list_push(&c->lru, &e->lru);
	c->st.bytes += e->len;
	c->st.entries++;
}

/* Take e out of the table and the LRU list; it stays allocated. */
static void table_remove(udfs_cache *c, struct entry *e)
{
	udfs_htable_del(&c->table, &e->hn);
	e->in_table = false;
	udfs_list_del(&e->lru);
	c->st.bytes -= e->len;
	c->st.entries--;
}

/* Move unused ready entries from the LRU tail onto *freelist. */
static void evict(udfs_cache *c, struct entry **freelist)
{
	struct udfs_list *l = c->lru.prev, *prev;

	for (; l != &c->lru && c->st.bytes > c->capacity; l = prev) {
		struct entry *e = udfs_container_of(l, struct entry, lru);

		prev = l->prev;
		if (e->refs == 0 && e->state == READY) {
			table_remove(c, e);
			e->free_next = *freelist;
			*freelist = e;
			c->st.evictions++;
		}
	}
}

static unsigned char *buf_alloc(udfs_cache *c, size_t len)
{
	unsigned char *p = NULL;
	void *m;

	pthread_mutex_lock(&c->spare_lock);
	for (unsigned i = 0; i < c->nspare; i++) {
		if (c->spare[i].len == len) {
			p = c->spare[i].p;
			c->spare[i] = c->spare[--c->nspare];
			break;
		}
	}
	pthread_mutex_unlock(&c->spare_lock);
	if (p)
		return p;
	m = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return m == MAP_FAILED ? NULL : m;
}

static void buf_free(udfs_cache *c, unsigned char *p, size_t len)
{
	if (!p)
		return;
	pthread_mutex_lock(&c->spare_lock);
	if (c->nspare < SPARE_MAX && len) {
		c->spare[c->nspare].p = p;
		c->spare[c->nspare].len = len;
		c->nspare++;
		p = NULL;
	}
	pthread_mutex_unlock(&c->spare_lock);
	if (p)
		munmap(p, len ? len : 1);
}

static void entry_free(udfs_cache *c, struct entry *e)
{
	buf_free(c, e->data, e->len);
	c->ops.release(e->t);
	free(e);
}

static void free_list(udfs_cache *c, struct entry *e)
{
	struct entry *next;

	for (; e; e = next) {
		next = e->free_next;
		entry_free(c, e);
	}
}

static struct entry *entry_new(udfs_cache *c, const udfs_tensor *t, uint32_t ci)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->t = t;
	e->ci = ci;
	e->len = c->ops.out_len(t, ci);
	e->state = LOADING;
	e->refs = 1;
	udfs_list_init(&e->lru);
	return e;
}

/*
 * Decode into an entry of our own that never enters the table: the path
 * taken after a bounded wait expired or another thread's decode failed.
 */
static int get_private(udfs_cache *c, const udfs_tensor *t, uint32_t ci,
		       const void **data, void **handle)
{
	struct entry *e = entry_new(c, t, ci);
	int err;

	if (!e)
		return -ENOMEM;
	c->ops.hold(t);
	e->data = buf_alloc(c, e->len);
	if (!e->data) {
		err = -ENOMEM;
		goto fail;
	}
	err = c->ops.decode(t, ci, e->data);
	if (err < 0)
		goto fail;
	e->state = READY;
	*data = e->data;
	*handle = e;
	return 0;
fail:
	entry_free(c, e);
	return err;
}

/* Entry e, found under c->lock, which this drops: wait for its decode if
 * it is loading, then use it; if it failed or the wait timed out, decode
 * on our own. */
static int get_found(udfs_cache *c, struct entry *e, const void **data,
		     void **handle)
{
	struct entry *freelist = NULL;
	const udfs_tensor *t = e->t;
	uint32_t ci = e->ci;
	struct timespec deadline;
	int err = 0;

	e->refs++;
	if (e->state == LOADING) {
		c->st.waits++;
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += WAIT_SECONDS;
		while (e->state == LOADING && !err)
			err = pthread_cond_timedwait(&c->ready, &c->lock,
						     &deadline);
	} else {
		c->st.hits++;
	}
	if (e->state == READY) {
		udfs_list_del(&e->lru);
		udfs_list_push(&c->lru, &e->lru);
		pthread_mutex_unlock(&c->lock);
		*data = e->data;
		*handle = e;
		return 0;
	}
	/* Timed out, or the decoder failed: decode on our own. */
	if (--e->refs == 0 && !e->in_table)
		freelist = e;
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
	return get_private(c, t, ci, data, handle);
}

/* Decode the new loading entry e (in the table, one reference: ours)
 * outside the lock, then publish it, or take it out on failure. */
static int decode_entry(udfs_cache *c, struct entry *e)
{
	struct entry *freelist = NULL;
	unsigned char *buf;
	int err;

	/* Outside the lock (it may take the store's); a loading entry
	 * cannot be freed by anyone but us. */
	c->ops.hold(e->t);
	buf = buf_alloc(c, e->len);
	err = buf ? c->ops.decode(e->t, e->ci, buf) : -ENOMEM;

	pthread_mutex_lock(&c->lock);
	if (err < 0) {
		buf_free(c, buf, e->len);
		e->state = FAILED;
		c->st.errors++;
		table_remove(c, e);
		if (--e->refs == 0)
			freelist = e;
	} else {
		e->data = buf;
		e->state = READY;
		c->st.decodes++;
		c->st.bytes_decoded += e->len;
	}
	pthread_cond_broadcast(&c->ready);
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
	return err < 0 ? err : 0;
}

static int cache_get(udfs_cache *c, const udfs_tensor *t, uint32_t ci,
		     const void **data, void **handle, bool ahead)
{
	struct entry *e, *freelist = NULL;
	int err;

	pthread_mutex_lock(&c->lock);
	e = find(c, t, ci);
	if (e && ahead) { /* cached or being decoded: nothing to do ahead */
		pthread_mutex_unlock(&c->lock);
		return -EEXIST;
	}
	if (e)
		return get_found(c, e, data, handle);
	e = entry_new(c, t, ci);
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	if (!ahead) /* a decode-ahead job is not a reader's miss */
		c->st.misses++;
	table_insert(c, e);
	evict(c, &freelist);
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
	err = decode_entry(c, e);
	if (err < 0)
		return err;
	*data = e->data;
	*handle = e;
	return 0;
}

int udfs_cache_get(udfs_cache *c, const udfs_tensor *t, uint32_t ci,
		   const void **data, void **handle)
{
	return cache_get(c, t, ci, data, handle, false);
}

void udfs_cache_put(udfs_cache *c, void *handle)
{
	struct entry *e = handle, *freelist = NULL;

	if (!e)
		return;
	pthread_mutex_lock(&c->lock);
	if (--e->refs == 0) {
		if (!e->in_table)
			freelist = e;
		else if (c->st.bytes > c->capacity)
			evict(c, &freelist);
	}
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
}

static int provider_get(void *ctx, const udfs_tensor *t, uint32_t ci,
			const void **data, void **handle)
{
	return udfs_cache_get(ctx, t, ci, data, handle);
}

static void provider_put(void *ctx, void *handle)
{
	udfs_cache_put(ctx, handle);
}

void udfs_cache_provider(udfs_cache *c, udfs_chunk_provider *p)
{
	p->get = provider_get;
	p->put = provider_put;
	p->ctx = c;
}

int udfs_cache_prefetch(udfs_cache *c, const udfs_tensor *t, uint32_t ci)
{
	unsigned i;
	int err = 0;

	if (!c->nthreads)
		return -EAGAIN;
	/* The job's reference, taken outside our lock (it may take the
	 * store's) and given back below when the job is not queued. */
	c->ops.hold(t);
	pthread_mutex_lock(&c->lock);
	if (c->stop || c->qlen == AHEAD_QUEUE) {
		c->st.ahead_dropped++;
		err = -EAGAIN;
		goto out;
	}
	if (find(c, t, ci)) {
		err = -EEXIST;
		goto out;
	}
	for (i = 0; i < c->qlen; i++) {
		struct job *j = &c->queue[(c->qhead + i) % AHEAD_QUEUE];

		if (j->t == t && j->ci == ci) {
			err = -EEXIST;
			goto out;
		}
	}
	c->queue[(c->qhead + c->qlen) % AHEAD_QUEUE] = (struct job){t, ci};
	c->qlen++;
	c->st.ahead_queued++;
	pthread_cond_signal(&c->work);
out:
	pthread_mutex_unlock(&c->lock);
	if (err)
		c->ops.release(t);
	return err;
}

static void prefetch_one(void *ctx, const udfs_tensor *t, uint32_t ci)
{
	udfs_cache_prefetch(ctx, t, ci);
}

void udfs_cache_prefetch_range(udfs_cache *c, const udfs_file *f, uint64_t from,
			       uint64_t to)
{
	udfs_file_each_chunk(f, from, to, prefetch_one, c);
}

static void *ahead_worker(void *arg)
{
	udfs_cache *c = arg;
	const void *data;
	void *handle;
	struct job j;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		while (!c->stop && c->qlen == 0)
			pthread_cond_wait(&c->work, &c->lock);
		if (c->stop) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		j = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % AHEAD_QUEUE;
		c->qlen--;
		pthread_mutex_unlock(&c->lock);

		/* A failure is left for the reader, who will report it. */
		udfs_error_clear();
		if (cache_get(c, j.t, j.ci, &data, &handle, true) == 0)
			udfs_cache_put(c, handle);
		c->ops.release(j.t);
	}
	return NULL;
}

void udfs_cache_get_stats(udfs_cache *c, udfs_cache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	pthread_mutex_unlock(&c->lock);
}

int udfs_cache_new(uint64_t capacity, unsigned ahead_threads,
		   const udfs_cache_ops *ops, udfs_cache **out)
{
	udfs_cache *c;
	uint64_t want = capacity / UDFS_CHUNK_BYTES * 2;
	unsigned i;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (ops)
		c->ops = *ops;
	if (!c->ops.out_len)
		c->ops.out_len = default_out_len;
	if (!c->ops.decode)
		c->ops.decode = default_decode;
	if (!c->ops.hold)
		c->ops.hold = default_hold;
	if (!c->ops.release)
		c->ops.release = default_release;
	c->capacity = capacity;
	c->st.capacity = capacity;
	udfs_list_init(&c->lru);
	if (udfs_htable_init(&c->table,
			     UDFS_MIN(UDFS_MAX(want, 256), 1u << 20))) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->spare_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->ready, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_cond_init(&c->work, NULL);

	if (ahead_threads) {
		c->threads = calloc(ahead_threads, sizeof(*c->threads));
		if (!c->threads) {
			udfs_cache_free(c);
			return -ENOMEM;
		}
	}
	for (i = 0; i < ahead_threads; i++) {
		err = pthread_create(&c->threads[i], NULL, ahead_worker, c);
		if (err) {
			udfs_cache_free(c);
			return udfs_error(-err,
					  "cache: cannot start thread: %s",
					  strerror(err));
		}
		c->nthreads++;
	}
	*out = c;
	return 0;
}

void udfs_cache_free(udfs_cache *c)
{
	struct entry *e;
	unsigned i;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->work);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->nthreads; i++)
		pthread_join(c->threads[i], NULL);
	for (; c->qlen; c->qlen--) {
		c->ops.release(c->queue[c->qhead].t);
		c->qhead = (c->qhead + 1) % AHEAD_QUEUE;
	}
	while (!udfs_list_empty(&c->lru)) {
		e = udfs_container_of(c->lru.next, struct entry, lru);
		udfs_list_del(&e->lru);
		entry_free(c, e);
	}
	for (; c->nspare; c->nspare--)
		munmap(c->spare[c->nspare - 1].p, c->spare[c->nspare - 1].len);
	pthread_mutex_destroy(&c->spare_lock);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->ready);
	pthread_mutex_destroy(&c->lock);
	free(c->threads);
	udfs_htable_destroy(&c->table);
	free(c);
}

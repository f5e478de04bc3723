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
 *   c->bytes <= capacity; before that, a new entry takes the place of
 *   consumed ones (all their bytes delivered), which wait at the tail.
 *   A reader's chunks are admitted only while c->bytes <= capacity (else
 *   it waits, holding nothing), so entries in use push c->bytes above
 *   capacity by at most one read's chunks; decode-ahead entries are made
 *   only when they fit.
 * With a pool, readers queue their missing chunks on c->demand and wait:
 * only pool threads decode, so decoding scratch is per pool thread.
 * Decoding, freeing buffers and releasing models happen outside the lock.
 * Buffers come from a bufpool (bufpool.h), which keeps freed ones for the
 * next chunk; an entry is charged what its buffer holds
 * (udfs_bufpool_cost), so the daemon stays below the capacity plus one
 * read's chunks and a small constant.
 */
#include "read/cache.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/htable.h"
#include "common/list.h"
#include "common/util.h"
#include "read/bufpool.h"
#include "read/recon.h"

#define AHEAD_QUEUE 64 /* pending decode-ahead jobs */

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
	struct entry *job_next;	 /* c->demand, while queued for the pool */
	size_t served;		 /* bytes replies have delivered */
	bool consumed;		 /* served >= len: recycled first */
	int err;		 /* FAILED: the decoder's error ... */
	char msg[256];		 /* ... and its message, for the readers */
	pthread_cond_t done;	 /* broadcast when it leaves LOADING; last:
				    entry_new() clears what comes before */
};

struct job {
	const udfs_tensor *t;
	uint32_t ci;
	/* a reader took the chunk first: the job only gives back its
	 * reference (cancel_ahead) */
	bool cancelled;
};

struct udfs_cache {
	pthread_mutex_t lock;
	udfs_cache_ops ops;
	uint64_t capacity;
	struct udfs_htable table;
	struct udfs_list lru;
	udfs_cache_stats st;

	udfs_bufpool *bufs; /* the entries' buffers */
	/* Freed entry structs, reused: no allocation per chunk once the
	 * cache has held its most entries. free_lock may be taken under
	 * lock, never the other way. */
	pthread_mutex_t free_lock;
	struct entry *free_entries;

	/* Readers waiting for c->bytes to drop to the capacity. */
	pthread_cond_t space;
	unsigned space_waiters;

	/* The decode pool: readers' chunks (c->demand, first) and
	 * decode-ahead jobs (the ring). */
	pthread_cond_t work;
	struct entry *demand, **demand_tail;
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
	c->st.bytes += udfs_bufpool_cost(e->len);
	c->st.entries++;
}

/* Take e out of the table and the LRU list; it stays allocated. */
static void table_remove(udfs_cache *c, struct entry *e)
{
	udfs_htable_del(&c->table, &e->hn);
	e->in_table = false;
	udfs_list_del(&e->lru);
	c->st.bytes -= udfs_bufpool_cost(e->len);
	c->st.entries--;
}

/* Take e, when unused and ready, out of the table onto *freelist;
 * whether it was. */
static bool evict_one(udfs_cache *c, struct entry *e, struct entry **freelist)
{
	if (e->refs || e->state != READY)
		return false;
	table_remove(c, e);
	e->free_next = *freelist;
	*freelist = e;
	c->st.evictions++;
	return true;
}

/*
 * Make room for need more bytes, onto *freelist. First consumed entries
 * (every byte delivered once: the kernel's page cache holds them now),
 * which wait at the LRU tail, give need bytes, so that a model streamed
 * once reuses their buffers instead of filling the cache: the first read
 * after a mount spent a fifth of the daemon's time clearing fresh pages
 * (bench/SPEED.md, session 28). Then unused ready entries from the tail
 * until need more bytes fit in the capacity.
 */
static void evict(udfs_cache *c, uint64_t need, struct entry **freelist)
{
	struct udfs_list *l, *prev;
	uint64_t freed = 0;

	for (l = c->lru.prev; l != &c->lru && freed < need; l = prev) {
		struct entry *e = udfs_container_of(l, struct entry, lru);

		prev = l->prev;
		if (!e->consumed)
			break;
		if (evict_one(c, e, freelist))
			freed += udfs_bufpool_cost(e->len);
	}
	for (l = c->lru.prev; l != &c->lru && c->st.bytes + need > c->capacity;
	     l = prev) {
		prev = l->prev;
		evict_one(c, udfs_container_of(l, struct entry, lru), freelist);
	}
}

/* Keep e's struct for entry_new(); its buffer and model are let go of
 * by the caller. */
static void entry_recycle(udfs_cache *c, struct entry *e)
{
	pthread_mutex_lock(&c->free_lock);
	e->free_next = c->free_entries;
	c->free_entries = e;
	pthread_mutex_unlock(&c->free_lock);
}

static void entry_free(udfs_cache *c, struct entry *e)
{
	udfs_bufpool_put(c->bufs, e->data, e->len);
	c->ops.release(e->t);
	entry_recycle(c, e);
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
	struct entry *e;

	pthread_mutex_lock(&c->free_lock);
	e = c->free_entries;
	if (e)
		c->free_entries = e->free_next;
	pthread_mutex_unlock(&c->free_lock);
	if (e)
		memset(e, 0, offsetof(struct entry, done));
	else if (!(e = calloc(1, sizeof(*e))))
		return NULL;
	else
		pthread_cond_init(&e->done, NULL); /* once per struct */
	e->t = t;
	e->ci = ci;
	e->len = c->ops.out_len(t, ci);
	e->state = LOADING;
	e->refs = 1;
	udfs_list_init(&e->lru);
	return e;
}

/* Decode the new loading entry e (in the table, one reference: the
 * decoder's) outside the lock, then publish it, or take it out on failure
 * with the error kept for the readers waiting on it. The decoder's
 * reference stays on success. */
static int decode_entry(udfs_cache *c, struct entry *e)
{
	struct entry *freelist = NULL;
	unsigned char *buf;
	int err;

	/* Outside the lock (it may take the store's); a loading entry
	 * cannot be freed by anyone but us. */
	c->ops.hold(e->t);
	udfs_error_clear();
	buf = udfs_bufpool_get(c->bufs, e->len);
	err = buf ? c->ops.decode(e->t, e->ci, buf)
		  : udfs_error(-ENOMEM, "cache: out of memory");

	pthread_mutex_lock(&c->lock);
	if (err < 0) {
		udfs_bufpool_put(c->bufs, buf, e->len);
		e->err = err;
		snprintf(e->msg, sizeof(e->msg), "%s", udfs_error_msg(err));
		e->state = FAILED;
		c->st.errors++;
		table_remove(c, e);
		if (--e->refs == 0)
			freelist = e;
		if (c->space_waiters)
			pthread_cond_broadcast(&c->space);
	} else {
		e->data = buf;
		e->state = READY;
		c->st.decodes++;
		c->st.bytes_decoded += e->len;
	}
	/* Only this entry's readers wake, not every waiting reader. */
	pthread_cond_broadcast(&e->done);
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
	return err < 0 ? err : 0;
}

/* Drop one reference on e; an entry out of the table goes onto
 * *freelist (or is freed by the caller later: NULL only while another
 * reference is known to remain). Under c->lock. */
static void release_locked(udfs_cache *c, struct entry *e,
			   struct entry **freelist)
{
	if (--e->refs)
		return;
	if (!e->in_table) {
		if (freelist) {
			e->free_next = *freelist;
			*freelist = e;
		}
		return;
	}
	if (freelist && c->st.bytes > c->capacity)
		evict(c, 0, freelist);
	if (c->space_waiters)
		pthread_cond_broadcast(&c->space);
}

/* Bytes of the chunks of r not in the table. Under c->lock. */
static uint64_t missing_bytes(udfs_cache *c, const udfs_chunk_req *r, size_t n)
{
	uint64_t need = 0;

	for (size_t i = 0; i < n; i++)
		if (!find(c, r[i].t, r[i].ci))
			need +=
			    udfs_bufpool_cost(c->ops.out_len(r[i].t, r[i].ci));
	return need;
}

/*
 * Take c->lock and wait until the missing chunks of r fit: after evicting
 * unused entries, c->bytes + need <= capacity, or at least c->bytes <=
 * capacity (one request may overshoot by its own chunks). Waiters hold no
 * entry, and the entries that are held belong to admitted requests that
 * need nothing more, so the wait ends. Returns with c->lock held.
 */
static void admit(udfs_cache *c, const udfs_chunk_req *r, size_t n)
{
	struct entry *freelist;
	uint64_t need;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		freelist = NULL;
		need = missing_bytes(c, r, n);
		evict(c, need, &freelist);
		if (freelist) { /* free outside the lock */
			pthread_mutex_unlock(&c->lock);
			free_list(c, freelist);
			pthread_mutex_lock(&c->lock);
		}
		if (c->st.bytes <= c->capacity)
			return;
		c->space_waiters++;
		pthread_cond_wait(&c->space, &c->lock);
		c->space_waiters--;
	}
}

/* Undo take_entries() for r[0 .. n): fresh entries never started (no
 * model reference yet) leave the table. Under c->lock. */
static void abandon(udfs_cache *c, udfs_chunk_req *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct entry *e = r[i].handle;

		if (r[i].fresh) {
			table_remove(c, e);
			entry_recycle(c, e);
		} else {
			release_locked(c, e, NULL);
		}
	}
}

/* The queued decode-ahead job of chunk ci of t, or NULL: there is at most
 * one (udfs_cache_prefetch). Under c->lock. */
static struct job *queued_job(udfs_cache *c, const udfs_tensor *t, uint32_t ci)
{
	for (unsigned i = 0; i < c->qlen; i++) {
		struct job *j = &c->queue[(c->qhead + i) % AHEAD_QUEUE];

		if (j->t == t && j->ci == ci)
			return j;
	}
	return NULL;
}

/*
 * Cancel the queued decode-ahead job of chunk ci of t, if any: a reader
 * has taken the chunk, so the job would find it in the table, or, when it
 * runs late (a slow or busy pool), after the reader has consumed it and
 * its buffer has gone to the next chunk: it would then decode the chunk
 * again for nobody, and the copy would stay in the cache, never read.
 * Under c->lock.
 */
static void cancel_ahead(udfs_cache *c, const udfs_tensor *t, uint32_t ci)
{
	struct job *j = queued_job(c, t, ci);

	if (j && !j->cancelled) {
		j->cancelled = true;
		c->st.ahead_cancelled++;
	}
}

/* A reference on the entry of each chunk of r, new loading ones made for
 * those missing (r[i].fresh). Under c->lock. -ENOMEM with none taken. */
static int take_entries(udfs_cache *c, udfs_chunk_req *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct entry *e = find(c, r[i].t, r[i].ci);

		r[i].fresh = false;
		if (e) {
			e->refs++;
			if (e->state == LOADING)
				c->st.waits++;
			else
				c->st.hits++;
		} else if ((e = entry_new(c, r[i].t, r[i].ci))) {
			/* Only a miss can have a live job queued: a job is
			 * queued for a chunk not in the table, and whoever
			 * put it there since was a reader that cancelled it
			 * (or the job itself, dequeued). */
			cancel_ahead(c, r[i].t, r[i].ci);
			e->refs++; /* the reader's; the decoder has one */
			c->st.misses++;
			table_insert(c, e);
			r[i].fresh = true;
		} else {
			abandon(c, r, i);
			return udfs_error(-ENOMEM, "cache: out of memory");
		}
		r[i].handle = e;
	}
	return 0;
}

/* Hand the fresh entries of r to the pool, or with no pool decode them
 * on this thread. */
static void start_decodes(udfs_cache *c, udfs_chunk_req *r, size_t n)
{
	bool queued = false;

	for (size_t i = 0; i < n; i++) {
		struct entry *e = r[i].handle;

		if (!r[i].fresh)
			continue;
		if (!c->nthreads) {
			pthread_mutex_unlock(&c->lock);
			if (decode_entry(c, e) == 0)
				udfs_cache_put(c, e); /* the decoder's */
			pthread_mutex_lock(&c->lock);
			continue;
		}
		e->job_next = NULL;
		*c->demand_tail = e;
		c->demand_tail = &e->job_next;
		queued = true;
	}
	if (queued)
		pthread_cond_broadcast(&c->work);
}

/* Wait until no entry of r is loading; the first failure's error (its
 * message recorded on this thread), else 0. Under c->lock. */
static int wait_entries(udfs_cache *c, udfs_chunk_req *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct entry *e = r[i].handle;

		while (e->state == LOADING)
			pthread_cond_wait(&e->done, &c->lock);
	}
	for (size_t i = 0; i < n; i++) {
		struct entry *e = r[i].handle;

		if (e->state == FAILED)
			return udfs_error(e->err, "%s", e->msg);
		if (e->consumed) { /* read again: worth keeping after all */
			e->consumed = false;
			e->served = 0;
		}
		udfs_list_del(&e->lru);
		udfs_list_push(&c->lru, &e->lru);
		r[i].data = e->data;
	}
	return 0;
}

int udfs_cache_get_many(udfs_cache *c, udfs_chunk_req *r, size_t n)
{
	struct entry *freelist = NULL;
	int err;

	admit(c, r, n);
	err = take_entries(c, r, n);
	if (!err) {
		start_decodes(c, r, n);
		err = wait_entries(c, r, n);
		if (err)
			for (size_t i = 0; i < n; i++)
				release_locked(c, r[i].handle, &freelist);
	}
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
	return err;
}

int udfs_cache_get(udfs_cache *c, const udfs_tensor *t, uint32_t ci,
		   const void **data, void **handle)
{
	udfs_chunk_req r = {.t = t, .ci = ci};
	int err = udfs_cache_get_many(c, &r, 1);

	if (err)
		return err;
	*data = r.data;
	*handle = r.handle;
	return 0;
}

void udfs_cache_put(udfs_cache *c, void *handle)
{
	udfs_cache_put_served(c, handle, 0);
}

void udfs_cache_put_served(udfs_cache *c, void *handle, size_t served)
{
	struct entry *freelist = NULL, *e = handle;

	if (!e)
		return;
	pthread_mutex_lock(&c->lock);
	e->served += served;
	if (served && !e->consumed && e->in_table && e->state == READY &&
	    e->served >= e->len) {
		e->consumed = true;
		udfs_list_del(&e->lru);
		udfs_list_push(c->lru.prev, &e->lru); /* the tail */
	}
	release_locked(c, e, &freelist);
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
}

/* A decode-ahead job: decode chunk ci of t into the cache when it is
 * neither there nor in flight and fits without evicting what readers
 * use. */
static void ahead_decode(udfs_cache *c, const udfs_tensor *t, uint32_t ci)
{
	struct entry *e, *freelist = NULL;
	size_t cost = udfs_bufpool_cost(c->ops.out_len(t, ci));

	pthread_mutex_lock(&c->lock);
	e = find(c, t, ci);
	if (!e) {
		evict(c, cost, &freelist);
		if (c->st.bytes + cost <= c->capacity)
			e = entry_new(c, t, ci);
		if (e)
			table_insert(c, e);
	} else {
		e = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free_list(c, freelist);
	if (e && decode_entry(c, e) == 0)
		udfs_cache_put(c, e);
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
	/* a cancelled job still counts: its chunk was just read */
	if (find(c, t, ci) || queued_job(c, t, ci)) {
		err = -EEXIST;
		goto out;
	}
	c->queue[(c->qhead + c->qlen) % AHEAD_QUEUE] =
	    (struct job){.t = t, .ci = ci};
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

/* A thread of the decode pool: readers' chunks first, in the order they
 * came, then decode-ahead jobs. Decoding happens only here (when there is
 * a pool), so decoding scratch memory is per pool thread. */
static void *pool_worker(void *arg)
{
	udfs_cache *c = arg;
	struct entry *e;
	struct job j;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		while (!c->stop && !c->demand && c->qlen == 0)
			pthread_cond_wait(&c->work, &c->lock);
		if (c->stop) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		e = c->demand;
		if (e) {
			c->demand = e->job_next;
			if (!c->demand)
				c->demand_tail = &c->demand;
			pthread_mutex_unlock(&c->lock);
			/* A failure is kept in e for its readers. */
			if (decode_entry(c, e) == 0)
				udfs_cache_put(c, e);
			continue;
		}
		j = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % AHEAD_QUEUE;
		c->qlen--;
		pthread_mutex_unlock(&c->lock);
		/* A failure is left for the reader, who will report it. */
		if (!j.cancelled)
			ahead_decode(c, j.t, j.ci);
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

/* Start n pool threads with every signal blocked: a signal meant to end
 * the daemon (SIGTERM, SIGHUP) must reach a thread that acts on it, not
 * a pool thread waiting for work. 0 or a positive errno. */
static int start_pool(udfs_cache *c, unsigned n)
{
	sigset_t all, old;
	int err = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (; c->nthreads < n && !err; c->nthreads += !err)
		err = pthread_create(&c->threads[c->nthreads], NULL,
				     pool_worker, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

int udfs_cache_new(uint64_t capacity, unsigned ahead_threads,
		   const udfs_cache_ops *ops, udfs_cache **out)
{
	udfs_cache *c;
	uint64_t want = capacity / UDFS_CHUNK_BYTES * 2;
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
	c->bufs = udfs_bufpool_new();
	if (!c->bufs ||
	    udfs_htable_init(&c->table,
			     UDFS_MIN(UDFS_MAX(want, 256), 1u << 20))) {
		udfs_bufpool_free(c->bufs);
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->free_lock, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->space, NULL);
	c->demand_tail = &c->demand;

	if (ahead_threads) {
		c->threads = calloc(ahead_threads, sizeof(*c->threads));
		if (!c->threads) {
			udfs_cache_free(c);
			return -ENOMEM;
		}
	}
	err = start_pool(c, ahead_threads);
	if (err) {
		udfs_cache_free(c);
		return udfs_error(-err, "cache: cannot start thread: %s",
				  strerror(err));
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
	udfs_bufpool_free(c->bufs);
	while ((e = c->free_entries)) {
		c->free_entries = e->free_next;
		pthread_cond_destroy(&e->done);
		free(e);
	}
	pthread_mutex_destroy(&c->free_lock);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->space);
	pthread_mutex_destroy(&c->lock);
	free(c->threads);
	udfs_htable_destroy(&c->table);
	free(c);
}

// SPDX-License-Identifier: MIT
/*
 * udfs_parallel_for: a fork-join loop over an index range, run on threads
 * made by the first loop that needs them and kept for the next ones. An
 * add runs a few loops per tensor (about 280 for a 512 MiB model, most of
 * a few milliseconds), and a new thread per loop cost about 90 us on this
 * project's VMs, with a fresh stack and fresh per-thread buffers
 * (udfs_scratch) each time.
 *
 * One loop at a time owns the kept threads (pool.busy); a loop started
 * meanwhile (inside an item of another, or on another thread) makes
 * threads of its own and joins them, as every loop once did.
 */
#include "common/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "common/util.h"

struct loop {
	int (*fn)(void *ctx, size_t i);
	void *ctx;
	size_t n;
	atomic_size_t next;
	atomic_int err;
	char msg[1024]; /* message of the first error, from its thread */
};

static void *worker(void *arg)
{
	struct loop *l = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&l->next, 1);
		int err;

		if (i >= l->n || atomic_load(&l->err))
			break;
		err = l->fn(l->ctx, i);
		if (err) {
			int zero = 0;

			/* Error messages are per thread: carry the first
			 * one back to the caller's thread. */
			if (atomic_compare_exchange_strong(&l->err, &zero, err))
				snprintf(l->msg, sizeof(l->msg), "%s",
					 udfs_error_msg(err));
		}
	}
	return NULL;
}

#define MAX_THREADS 64

/* The kept threads. A round offers the loop to `want` of them: each that
 * takes a seat runs worker() and leaves it. Once the caller's own worker()
 * returns, every item has been taken: it closes the seats still free (a
 * thread that wakes late finds none) and waits until the taken ones are
 * left, so no thread is still in a loop whose caller has returned. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t go;   /* a new round */
	pthread_cond_t done; /* a seat left */
	pthread_t tid[MAX_THREADS];
	unsigned n;	   /* threads made */
	bool busy;	   /* a loop owns the threads */
	struct loop *loop; /* of the current round */
	uint64_t round;
	unsigned want, seated, running;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
	  .go = PTHREAD_COND_INITIALIZER,
	  .done = PTHREAD_COND_INITIALIZER};

static void *pool_thread(void *arg)
{
	uint64_t seen = (uint64_t)(uintptr_t)arg;

	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct loop *l;

		while (pool.round == seen || pool.seated == pool.want) {
			seen = pool.round;
			pthread_cond_wait(&pool.go, &pool.lock);
		}
		seen = pool.round;
		l = pool.loop;
		pool.seated++;
		pool.running++;
		pthread_mutex_unlock(&pool.lock);
		worker(l);
		pthread_mutex_lock(&pool.lock);
		pool.running--;
		pthread_cond_broadcast(&pool.done);
	}
	return NULL;
}

/* Run l on the kept threads and the caller; false when they are busy. */
static bool run_kept(struct loop *l, int jobs)
{
	unsigned want = (unsigned)jobs - 1;

	pthread_mutex_lock(&pool.lock);
	if (pool.busy) {
		pthread_mutex_unlock(&pool.lock);
		return false;
	}
	pool.busy = true;
	/* Made before the round starts, knowing the round before: one
	 * made after would wait for the next round. */
	while (pool.n < want &&
	       pthread_create(&pool.tid[pool.n], NULL, pool_thread,
			      (void *)(uintptr_t)pool.round) == 0)
		pool.n++;
	pool.loop = l;
	pool.want = want < pool.n ? want : pool.n;
	pool.seated = pool.running = 0;
	pool.round++;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.lock);

	worker(l);

	pthread_mutex_lock(&pool.lock);
	pool.want = pool.seated;
	while (pool.running)
		pthread_cond_wait(&pool.done, &pool.lock);
	pool.busy = false;
	pthread_mutex_unlock(&pool.lock);
	return true;
}

/* Run l on threads of its own and the caller. */
static void run_own(struct loop *l, int jobs)
{
	pthread_t tid[MAX_THREADS];
	int started = 0;

	for (int i = 1; i < jobs; i++)
		if (pthread_create(&tid[started], NULL, worker, l) == 0)
			started++;
	worker(l);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
}

int udfs_parallel_for(int jobs, size_t n, int (*fn)(void *ctx, size_t i),
		      void *ctx)
{
	struct loop l = {.fn = fn, .ctx = ctx, .n = n};

	atomic_init(&l.next, 0);
	atomic_init(&l.err, 0);
	if (jobs > MAX_THREADS)
		jobs = MAX_THREADS;
	if ((size_t)jobs > n)
		jobs = (int)n;
	/* The calling thread works too. */
	if (jobs <= 1)
		worker(&l);
	else if (!run_kept(&l, jobs))
		run_own(&l, jobs);
	if (atomic_load(&l.err))
		return udfs_error(atomic_load(&l.err), "%s", l.msg);
	return 0;
}

int udfs_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

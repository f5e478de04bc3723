// SPDX-License-Identifier: MIT
/*
 * udfs_parallel_for: a fork-join loop over an index range. Creating a few
 * threads per call costs microseconds, against milliseconds of zstd work
 * per item, so there is no persistent pool to manage.
 */
#include "common/pool.h"

#include <pthread.h>
#include <stdatomic.h>
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

int udfs_parallel_for(int jobs, size_t n, int (*fn)(void *ctx, size_t i),
		      void *ctx)
{
	struct loop l = {.fn = fn, .ctx = ctx, .n = n};
	pthread_t tid[64];
	int started = 0;

	atomic_init(&l.next, 0);
	atomic_init(&l.err, 0);
	if (jobs > 64)
		jobs = 64;
	if ((size_t)jobs > n)
		jobs = (int)n;
	/* The calling thread works too. */
	for (int i = 1; i < jobs; i++)
		if (pthread_create(&tid[started], NULL, worker, &l) == 0)
			started++;
	worker(&l);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (atomic_load(&l.err))
		return udfs_error(atomic_load(&l.err), "%s", l.msg);
	return 0;
}

int udfs_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

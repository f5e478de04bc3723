// SPDX-License-Identifier: MIT
/*
 * Unit tests of udfs_parallel_for (pool.h): every index runs exactly once
 * at any job count, over thousands of loops on the kept threads; the
 * first error comes back with its message; a loop inside an item and
 * loops started from two threads at once run on threads of their own and
 * are as correct.
 */
#include "common/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "check.h"
#include "common/util.h"

#define N 1000

static atomic_int hits[N];

static int count(void *ctx, size_t i)
{
	(void)ctx;
	atomic_fetch_add(&hits[i], 1);
	return 0;
}

static int all_once(size_t n)
{
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		bad += atomic_load(&hits[i]) != 1;
		atomic_store(&hits[i], 0);
	}
	return bad;
}

static void test_once(void)
{
	static const int jobs[] = {1, 2, 3, 4, 8, 64, 100};

	for (size_t k = 0; k < sizeof(jobs) / sizeof(jobs[0]); k++) {
		CHECK_EQ_INT(udfs_parallel_for(jobs[k], N, count, NULL), 0);
		CHECK_EQ_INT(all_once(N), 0);
	}
	CHECK_EQ_INT(udfs_parallel_for(4, 0, count, NULL), 0);
}

/* Small loops back to back: every round hands its seats out afresh. */
static void test_rounds(void)
{
	int bad = 0;

	for (int r = 0; r < 5000; r++) {
		size_t n = 1 + (size_t)r % 7;

		bad += udfs_parallel_for(1 + r % 4, n, count, NULL) != 0;
		bad += all_once(n);
	}
	CHECK_EQ_INT(bad, 0);
}

static int fail_at_17(void *ctx, size_t i)
{
	(void)ctx;
	if (i == 17)
		return udfs_error(-EIO, "item %zu failed", i);
	return 0;
}

static void test_error(void)
{
	udfs_error_clear();
	CHECK_EQ_INT(udfs_parallel_for(4, 100, fail_at_17, NULL), -EIO);
	CHECK_EQ_STR(udfs_error_msg(-EIO), "item 17 failed");
	udfs_error_clear();
	/* The threads are free again. */
	CHECK_EQ_INT(udfs_parallel_for(4, N, count, NULL), 0);
	CHECK_EQ_INT(all_once(N), 0);
}

static atomic_int inner_hits[64][64];

static int inner(void *ctx, size_t i)
{
	atomic_fetch_add(&inner_hits[*(size_t *)ctx][i], 1);
	return 0;
}

static int outer(void *ctx, size_t i)
{
	(void)ctx;
	return udfs_parallel_for(3, 64, inner, &i);
}

static void test_nested(void)
{
	int bad = 0;

	CHECK_EQ_INT(udfs_parallel_for(4, 64, outer, NULL), 0);
	for (size_t i = 0; i < 64; i++)
		for (size_t k = 0; k < 64; k++)
			bad += atomic_load(&inner_hits[i][k]) != 1;
	CHECK_EQ_INT(bad, 0);
}

struct racer {
	atomic_int hits[64];
	int bad;
};

static int count_racer(void *ctx, size_t i)
{
	struct racer *r = ctx;

	atomic_fetch_add(&r->hits[i], 1);
	return 0;
}

static void *race(void *arg)
{
	struct racer *r = arg;

	for (int k = 0; k < 2000; k++) {
		r->bad += udfs_parallel_for(3, 64, count_racer, r) != 0;
		for (size_t i = 0; i < 64; i++) {
			r->bad += atomic_load(&r->hits[i]) != 1;
			atomic_store(&r->hits[i], 0);
		}
	}
	return NULL;
}

static void test_two_callers(void)
{
	static struct racer r[2];
	pthread_t th[2];

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, race, &r[i]);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(r[i].bad, 0);
	}
}

int main(void)
{
	test_once();
	test_rounds();
	test_error();
	test_nested();
	test_two_callers();
	CHECK_DONE();
}

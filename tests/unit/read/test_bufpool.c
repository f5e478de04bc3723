// SPDX-License-Identifier: MIT
/*
 * Unit tests of the chunk cache's buffers (bufpool.h): what each length
 * costs, slots laid out in 2 MiB blocks and reused once put back, small
 * buffers reused by length, buffers that never overlap under 8 threads,
 * and NULL (not an abort, nothing leaked) when an allocation fails.
 */
#include "read/bufpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "failalloc.h"
#include "format/model.h"

#define SLOT ((size_t)UDFS_CHUNK_BYTES)
#define NT 8
#define ROUNDS 200

static void test_cost(void)
{
	CHECK_EQ_INT(udfs_bufpool_cost(SLOT), SLOT);
	CHECK_EQ_INT(udfs_bufpool_cost(SLOT / 2 + 1), SLOT);
	CHECK_EQ_INT(udfs_bufpool_cost(SLOT / 2), SLOT / 2);
	CHECK_EQ_INT(udfs_bufpool_cost(1), 1);
	CHECK_EQ_INT(udfs_bufpool_cost(0), 0);
}

/* Two slots of one block, on slot boundaries, writable end to end; a
 * slot put back is the next one handed out. */
static void test_slots(void)
{
	udfs_bufpool *bp = udfs_bufpool_new();
	unsigned char *a, *b, *c;

	CHECK(bp != NULL);
	a = udfs_bufpool_get(bp, SLOT);
	b = udfs_bufpool_get(bp, SLOT / 2 + 1);
	CHECK(a != NULL && b != NULL && a != b);
	CHECK_EQ_INT((uintptr_t)a % SLOT, 0);
	CHECK_EQ_INT((uintptr_t)b % SLOT, 0);
	/* The second slot of the first block. */
	CHECK_EQ_INT((uintptr_t)a / (2 * SLOT), (uintptr_t)b / (2 * SLOT));
	memset(a, 0xa5, SLOT);
	memset(b, 0x5a, SLOT);
	CHECK_EQ_INT(a[SLOT - 1], 0xa5);
	udfs_bufpool_put(bp, a, SLOT);
	c = udfs_bufpool_get(bp, SLOT);
	CHECK(c == a);
	udfs_bufpool_put(bp, c, SLOT);
	udfs_bufpool_put(bp, b, SLOT / 2 + 1);
	udfs_bufpool_put(bp, NULL, SLOT);
	udfs_bufpool_free(bp);
	udfs_bufpool_free(NULL);
}

/* Small buffers are reused for the same length only. */
static void test_small(void)
{
	udfs_bufpool *bp = udfs_bufpool_new();
	unsigned char *a = udfs_bufpool_get(bp, 4000), *b;

	CHECK(a != NULL);
	memset(a, 1, 4000);
	udfs_bufpool_put(bp, a, 4000);
	b = udfs_bufpool_get(bp, 5000);
	CHECK(b != NULL && b != a);
	udfs_bufpool_put(bp, b, 5000);
	b = udfs_bufpool_get(bp, 4000);
	CHECK(b == a);
	udfs_bufpool_put(bp, b, 4000);
	/* Held by the pool, unmapped by udfs_bufpool_free (ASan: no leak). */
	b = udfs_bufpool_get(bp, SLOT);
	CHECK(b != NULL);
	udfs_bufpool_free(bp);
}

struct worker {
	udfs_bufpool *bp;
	unsigned id;
	int bad;
};

/* Each buffer is filled with the worker's id and checked before it goes
 * back: two workers holding one buffer would see each other's bytes. */
static void *work(void *arg)
{
	struct worker *w = arg;

	for (unsigned r = 0; r < ROUNDS; r++) {
		size_t len = r % 3 ? SLOT : 4096 * (1 + r % 5);
		unsigned char *p = udfs_bufpool_get(w->bp, len);

		if (!p) {
			w->bad++;
			continue;
		}
		memset(p, (int)w->id, len);
		sched_yield();
		for (size_t i = 0; i < len; i += 509)
			w->bad += p[i] != w->id;
		w->bad += p[len - 1] != w->id;
		udfs_bufpool_put(w->bp, p, len);
	}
	return NULL;
}

static void test_threads(void)
{
	udfs_bufpool *bp = udfs_bufpool_new();
	pthread_t th[NT];
	struct worker w[NT];

	for (unsigned i = 0; i < NT; i++) {
		w[i] = (struct worker){bp, i + 1, 0};
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	for (unsigned i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(w[i].bad, 0);
	}
	udfs_bufpool_free(bp);
}

/* Failing the lists' growth gives NULL and keeps nothing; the next call
 * succeeds. */
static void test_nomem(void)
{
	udfs_bufpool *bp = udfs_bufpool_new();
	unsigned char *p, *q;

	for (long n = 0; n < 2; n++) {
		failalloc_arm(n);
		p = udfs_bufpool_get(bp, SLOT);
		failalloc_disarm();
		CHECK(p == NULL);
	}
	p = udfs_bufpool_get(bp, SLOT);
	q = udfs_bufpool_get(bp, SLOT);
	CHECK(p != NULL && q != NULL && p != q);
	udfs_bufpool_put(bp, p, SLOT);
	udfs_bufpool_put(bp, q, SLOT);
	failalloc_arm(0);
	CHECK(udfs_bufpool_new() == NULL);
	failalloc_disarm();
	udfs_bufpool_free(bp);
}

int main(void)
{
	test_cost();
	test_slots();
	test_small();
	test_threads();
	test_nomem();
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * Unit tests of the chunk cache (cache.h) without FUSE or a store: fake
 * tensors, a fake decoder that writes a pattern derived from (tensor,
 * chunk) and counts its calls, and fake hold/release that count model
 * references. Checks single-flight decoding under 8 threads, the byte
 * bound, that in-use entries survive eviction, error handling, the
 * decode-ahead pool, many-chunk reads decoded only on the pool within the
 * byte bound, consumed entries recycled before the cache grows, and a random
 * multi-threaded stress with every byte checked.
 */
#include "read/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"

#define NT 8
#define CHUNK (64u << 10)

static udfs_tensor tensors[4];
static atomic_int decodes;
static atomic_int holds;
static atomic_int releases;
static atomic_int decode_sleep_us;
static atomic_int reader_decodes; /* decodes on a reader's thread */
static _Thread_local int is_reader;
static const udfs_tensor *fail_t;
static uint32_t fail_ci;

static unsigned char pattern(const udfs_tensor *t, uint32_t ci, size_t i)
{
	return (unsigned char)((t - tensors) * 31 + ci * 7 + i * 13 + (i >> 9));
}

static size_t fake_len(const udfs_tensor *t, uint32_t ci)
{
	(void)t;
	(void)ci;
	return CHUNK;
}

static int fake_decode(const udfs_tensor *t, uint32_t ci, void *out)
{
	unsigned char *p = out;

	atomic_fetch_add(&decodes, 1);
	if (is_reader)
		atomic_fetch_add(&reader_decodes, 1);
	if (atomic_load(&decode_sleep_us))
		usleep((useconds_t)atomic_load(&decode_sleep_us));
	if (t == fail_t && ci == fail_ci)
		return udfs_error(-EIO, "fake: chunk %u is damaged", ci);
	for (size_t i = 0; i < CHUNK; i++)
		p[i] = pattern(t, ci, i);
	return 0;
}

static void fake_hold(const udfs_tensor *t)
{
	(void)t;
	atomic_fetch_add(&holds, 1);
}

static void fake_release(const udfs_tensor *t)
{
	(void)t;
	atomic_fetch_add(&releases, 1);
}

static const udfs_cache_ops ops = {
    .out_len = fake_len,
    .decode = fake_decode,
    .hold = fake_hold,
    .release = fake_release,
};

static int check_data(const void *data, const udfs_tensor *t, uint32_t ci)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < CHUNK; i++)
		if (p[i] != pattern(t, ci, i))
			return 0;
	return 1;
}

struct sf_arg {
	udfs_cache *c;
	pthread_barrier_t *bar;
	int ok;
};

static void *single_flight_thread(void *arg)
{
	struct sf_arg *a = arg;
	const void *data;
	void *h;

	pthread_barrier_wait(a->bar);
	if (udfs_cache_get(a->c, &tensors[0], 5, &data, &h) == 0) {
		a->ok = check_data(data, &tensors[0], 5);
		udfs_cache_put(a->c, h);
	}
	return NULL;
}

static void test_single_flight(void)
{
	udfs_cache *c = NULL;
	pthread_t th[NT];
	struct sf_arg args[NT];
	pthread_barrier_t bar;
	udfs_cache_stats st;

	atomic_store(&decodes, 0);
	atomic_store(&decode_sleep_us, 50000);
	CHECK_EQ_INT(udfs_cache_new(16 * CHUNK, 0, &ops, &c), 0);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		args[i] = (struct sf_arg){c, &bar, 0};
		pthread_create(&th[i], NULL, single_flight_thread, &args[i]);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(args[i].ok, 1);
	}
	CHECK_EQ_INT(atomic_load(&decodes), 1);
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.misses, 1);
	CHECK_EQ_INT(st.waits + st.hits, NT - 1);
	pthread_barrier_destroy(&bar);
	udfs_cache_free(c);
	atomic_store(&decode_sleep_us, 0);
}

static void test_eviction(void)
{
	udfs_cache *c = NULL;
	udfs_cache_stats st;
	const void *data, *pinned;
	void *h, *pin;

	CHECK_EQ_INT(udfs_cache_new(4 * CHUNK, 0, &ops, &c), 0);
	/* Pin chunk 0, then stream 10 more through a 4-chunk cache. */
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[1], 0, &pinned, &pin), 0);
	for (uint32_t ci = 1; ci <= 10; ci++) {
		CHECK_EQ_INT(udfs_cache_get(c, &tensors[1], ci, &data, &h), 0);
		CHECK(check_data(data, &tensors[1], ci));
		udfs_cache_put(c, h);
		udfs_cache_get_stats(c, &st);
		CHECK(st.bytes <= st.capacity);
	}
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.entries, 4);
	CHECK_EQ_INT(st.evictions, 7);
	/* The pinned entry survived, intact, and is still a hit. */
	CHECK(check_data(pinned, &tensors[1], 0));
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[1], 0, &data, &h), 0);
	CHECK(data == pinned);
	udfs_cache_put(c, h);
	udfs_cache_put(c, pin);
	/* The most recent chunk is a hit, the oldest one a miss. */
	atomic_store(&decodes, 0);
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[1], 10, &data, &h), 0);
	udfs_cache_put(c, h);
	CHECK_EQ_INT(atomic_load(&decodes), 0);
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[1], 1, &data, &h), 0);
	udfs_cache_put(c, h);
	CHECK_EQ_INT(atomic_load(&decodes), 1);
	udfs_cache_get_stats(c, &st);
	CHECK(st.bytes <= st.capacity);
	udfs_cache_free(c);
}

/* Consumed entries (every byte delivered, half a chunk at a time as
 * requests straddle chunks) are recycled before the cache grows: a stream
 * through an 8-chunk cache holds one entry. Entries delivered in part,
 * or read again after they were consumed, are kept as before. */
static void test_consumed(void)
{
	udfs_cache *c = NULL;
	udfs_cache_stats st;
	const void *data;
	void *h;

	CHECK_EQ_INT(udfs_cache_new(8 * CHUNK, 0, &ops, &c), 0);
	for (uint32_t ci = 0; ci < 20; ci++)
		for (int half = 0; half < 2; half++) {
			CHECK_EQ_INT(
			    udfs_cache_get(c, &tensors[2], ci, &data, &h), 0);
			CHECK(check_data(data, &tensors[2], ci));
			udfs_cache_put_served(c, h, CHUNK / 2);
			udfs_cache_get_stats(c, &st);
			CHECK(st.bytes <= 2 * CHUNK);
		}
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.entries, 1);
	CHECK_EQ_INT(st.evictions, 19);
	/* The last one, read again, is a hit and an ordinary entry. */
	atomic_store(&decodes, 0);
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[2], 19, &data, &h), 0);
	udfs_cache_put(c, h);
	CHECK_EQ_INT(atomic_load(&decodes), 0);
	/* Half-delivered entries fill the cache up to its capacity. */
	for (uint32_t ci = 100; ci < 110; ci++) {
		CHECK_EQ_INT(udfs_cache_get(c, &tensors[2], ci, &data, &h), 0);
		udfs_cache_put_served(c, h, CHUNK / 2);
	}
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.entries, 8);
	/* 19 was used before 100..109: the LRU evicted it. */
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[2], 19, &data, &h), 0);
	udfs_cache_put(c, h);
	CHECK_EQ_INT(atomic_load(&decodes), 11);
	udfs_cache_free(c);
}

static void test_zero_capacity(void)
{
	udfs_cache *c = NULL;
	udfs_cache_stats st;
	const void *data;
	void *h;

	CHECK_EQ_INT(udfs_cache_new(0, 0, &ops, &c), 0);
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[2], 3, &data, &h), 0);
	CHECK(check_data(data, &tensors[2], 3));
	udfs_cache_put(c, h);
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.bytes, 0);
	CHECK_EQ_INT(st.entries, 0);
	udfs_cache_free(c);
}

static void test_error(void)
{
	udfs_cache *c = NULL;
	udfs_cache_stats st;
	const void *data;
	void *h;

	fail_t = &tensors[2];
	fail_ci = 1;
	atomic_store(&decodes, 0);
	CHECK_EQ_INT(udfs_cache_new(8 * CHUNK, 0, &ops, &c), 0);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[2], 1, &data, &h), -EIO);
	CHECK_EQ_STR(udfs_error_msg(-EIO), "fake: chunk 1 is damaged");
	udfs_error_clear();
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[2], 1, &data, &h), -EIO);
	CHECK_EQ_INT(atomic_load(&decodes), 2); /* failures are not cached */
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.entries, 0);
	CHECK_EQ_INT(st.bytes, 0);
	CHECK_EQ_INT(st.errors, 2);
	udfs_cache_free(c);
	fail_t = NULL;
	udfs_error_clear();
}

/* Poll c's statistics into *st until the one at field (a member of *st)
 * reaches want, for 10 s at most: the pool decodes on its own threads. */
static void wait_stat(udfs_cache *c, udfs_cache_stats *st,
		      const uint64_t *field, uint64_t want)
{
	double deadline = udfs_now() + 10;

	do {
		udfs_cache_get_stats(c, st);
		if (*field >= want)
			return;
		usleep(1000);
	} while (udfs_now() < deadline);
}

static void test_prefetch(void)
{
	udfs_cache *c = NULL;
	udfs_cache_stats st;
	const void *data;
	void *h;

	atomic_store(&decodes, 0);
	CHECK_EQ_INT(udfs_cache_new(8 * CHUNK, 2, &ops, &c), 0);
	CHECK_EQ_INT(udfs_cache_prefetch(c, &tensors[3], 7), 0);
	CHECK_EQ_INT(udfs_cache_prefetch(c, &tensors[3], 8), 0);
	wait_stat(c, &st, &st.decodes, 2);
	CHECK_EQ_INT(st.decodes, 2);
	CHECK_EQ_INT(udfs_cache_prefetch(c, &tensors[3], 7), -EEXIST);
	CHECK_EQ_INT(udfs_cache_get(c, &tensors[3], 7, &data, &h), 0);
	CHECK(check_data(data, &tensors[3], 7));
	udfs_cache_put(c, h);
	CHECK_EQ_INT(atomic_load(&decodes), 2);
	udfs_cache_get_stats(c, &st);
	CHECK_EQ_INT(st.hits, 1);
	/* Jobs still queued at free time release their references. */
	atomic_store(&decode_sleep_us, 20000);
	for (uint32_t ci = 20; ci < 40; ci++)
		udfs_cache_prefetch(c, &tensors[3], ci);
	udfs_cache_free(c);
	atomic_store(&decode_sleep_us, 0);
}

static void *cancel_reader(void *arg)
{
	udfs_cache *c = arg;
	const void *data;
	void *h;

	if (udfs_cache_get(c, &tensors[1], 51, &data, &h) == 0) {
		CHECK(check_data(data, &tensors[1], 51));
		udfs_cache_put_served(c, h, CHUNK);
	}
	return NULL;
}

/* A reader taking a chunk whose decode-ahead job is still queued cancels
 * the job: run late, after the chunk was consumed and its buffer reused,
 * the job decoded it again for nobody (seen under ASan in
 * tests/mount/recycle.sh: 42 chunks decoded twice, their copies left in
 * the cache). */
static void test_cancel_ahead(void)
{
	udfs_cache *c = NULL;
	udfs_cache_stats st;
	pthread_t tid;

	atomic_store(&decodes, 0);
	atomic_store(&decode_sleep_us, 100000);
	CHECK_EQ_INT(udfs_cache_new(8 * CHUNK, 1, &ops, &c), 0);
	/* the one pool thread busy with 50, the job of 51 queued */
	CHECK_EQ_INT(udfs_cache_prefetch(c, &tensors[1], 50), 0);
	CHECK_EQ_INT(udfs_cache_prefetch(c, &tensors[1], 51), 0);
	CHECK_EQ_INT(pthread_create(&tid, NULL, cancel_reader, c), 0);
	wait_stat(c, &st, &st.misses, 1);
	CHECK_EQ_INT(st.misses, 1);
	CHECK_EQ_INT(st.ahead_queued, 2);
	CHECK_EQ_INT(st.ahead_cancelled, 1);
	pthread_join(tid, NULL);
	/* a later request for 51 does not queue it again */
	CHECK_EQ_INT(udfs_cache_prefetch(c, &tensors[1], 51), -EEXIST);
	udfs_cache_free(c);
	CHECK_EQ_INT(atomic_load(&decodes), 2);
	atomic_store(&decode_sleep_us, 0);
}

struct many_arg {
	udfs_cache *c;
	unsigned seed;
	int bad;
	uint64_t max_bytes; /* c->bytes seen while holding entries */
};

/* Reads of 1 to 3 chunks at once through a 4-chunk cache. */
static void *many_thread(void *arg)
{
	struct many_arg *a = arg;
	udfs_chunk_req r[3];
	udfs_cache_stats st;

	is_reader = 1;
	for (int i = 0; i < 300; i++) {
		const udfs_tensor *t = &tensors[rand_r(&a->seed) % 4];
		uint32_t ci = rand_r(&a->seed) % 16;
		size_t n = 1 + rand_r(&a->seed) % 3;

		for (size_t k = 0; k < n; k++)
			r[k] = (udfs_chunk_req){.t = t, .ci = ci + (uint32_t)k};
		if (udfs_cache_get_many(a->c, r, n) != 0) {
			a->bad++;
			continue;
		}
		for (size_t k = 0; k < n; k++)
			a->bad += !check_data(r[k].data, t, ci + (uint32_t)k);
		udfs_cache_get_stats(a->c, &st);
		if (st.bytes > a->max_bytes)
			a->max_bytes = st.bytes;
		for (size_t k = 0; k < n; k++)
			udfs_cache_put(a->c, r[k].handle);
	}
	return NULL;
}

/* With a pool, readers never decode; held entries stay within the
 * capacity plus one read's chunks however many readers wait; a failed
 * chunk's error reaches its reader, who holds nothing after it. */
static void test_get_many(void)
{
	udfs_cache *c = NULL;
	pthread_t th[NT];
	struct many_arg args[NT];
	udfs_chunk_req r[2] = {{.t = &tensors[2], .ci = 0},
			       {.t = &tensors[2], .ci = 1}};
	udfs_cache_stats st;

	atomic_store(&reader_decodes, 0);
	atomic_store(&decode_sleep_us, 200);
	CHECK_EQ_INT(udfs_cache_new(4 * CHUNK, 2, &ops, &c), 0);
	for (int i = 0; i < NT; i++) {
		args[i] = (struct many_arg){c, 77u + (unsigned)i, 0, 0};
		pthread_create(&th[i], NULL, many_thread, &args[i]);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(args[i].bad, 0);
		CHECK(args[i].max_bytes <= 4 * CHUNK + 3 * CHUNK);
	}
	CHECK_EQ_INT(atomic_load(&reader_decodes), 0);
	atomic_store(&decode_sleep_us, 0);

	fail_t = &tensors[2];
	fail_ci = 1;
	udfs_error_clear();
	is_reader = 1;
	CHECK_EQ_INT(udfs_cache_get_many(c, r, 2), -EIO);
	is_reader = 0;
	CHECK_EQ_STR(udfs_error_msg(-EIO), "fake: chunk 1 is damaged");
	fail_t = NULL;
	udfs_error_clear();
	udfs_cache_get_stats(c, &st);
	CHECK(st.bytes <= st.capacity); /* chunk 0 is not held */
	CHECK_EQ_INT(udfs_cache_get_many(c, r, 2), 0);
	udfs_cache_put(c, r[0].handle);
	udfs_cache_put(c, r[1].handle);
	udfs_cache_free(c);
}

struct stress_arg {
	udfs_cache *c;
	unsigned seed;
	int bad;
};

static void *stress_thread(void *arg)
{
	struct stress_arg *a = arg;
	const void *data;
	void *h;

	for (int i = 0; i < 3000; i++) {
		const udfs_tensor *t = &tensors[rand_r(&a->seed) % 4];
		uint32_t ci = rand_r(&a->seed) % 12;

		if (rand_r(&a->seed) % 8 == 0) {
			udfs_cache_prefetch(a->c, t, ci);
			continue;
		}
		if (udfs_cache_get(a->c, t, ci, &data, &h) != 0) {
			a->bad++;
			continue;
		}
		if (!check_data(data, t, ci))
			a->bad++;
		udfs_cache_put(a->c, h);
	}
	return NULL;
}

static void test_stress(void)
{
	udfs_cache *c = NULL;
	pthread_t th[NT];
	struct stress_arg args[NT];
	udfs_cache_stats st;

	CHECK_EQ_INT(udfs_cache_new(10 * CHUNK, 2, &ops, &c), 0);
	for (int i = 0; i < NT; i++) {
		args[i] = (struct stress_arg){c, 1234u + (unsigned)i, 0};
		pthread_create(&th[i], NULL, stress_thread, &args[i]);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(args[i].bad, 0);
	}
	udfs_cache_get_stats(c, &st);
	CHECK(st.bytes <= st.capacity);
	udfs_cache_free(c);
}

int main(void)
{
	test_single_flight();
	test_eviction();
	test_consumed();
	test_zero_capacity();
	test_error();
	test_prefetch();
	test_cancel_ahead();
	test_get_many();
	test_stress();
	/* Every reference the cache took on a model was given back. */
	CHECK_EQ_INT(atomic_load(&holds), atomic_load(&releases));
	CHECK(atomic_load(&holds) > 0);
	CHECK_DONE();
}

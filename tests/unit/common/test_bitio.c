// SPDX-License-Identifier: MIT
/*
 * Unit tests of the bit writer and reader (bitio.h): random sequences of
 * fixed-width fields and unary counts read back as written, the reader
 * ending on the last byte with no bit left over; every shorter stream
 * runs dry before the last field; a unary count over its limit fails.
 * Streams of a few bytes and of hundreds, cut anywhere in their last 40
 * bytes, take both of the reader's refills: eight bytes at once and the
 * byte loop of the last seven.
 */
#include "common/bitio.h"

#include <stdlib.h>

#include "check.h"
#include "common/prng.h"

#define FIELDS 400

struct field {
	int unary; /* a unary count, else nb bits of v */
	unsigned nb;
	uint64_t v;
};

static uint64_t rs = 7;

static uint64_t next(void) { return udfs_splitmix64(&rs); }

/* n random fields: counts up to 80 zeros (past a refill), widths 0-32. */
static void make(struct field *f, int n)
{
	for (int i = 0; i < n; i++) {
		f[i].unary = next() % 3 == 0;
		f[i].nb = (unsigned)(next() % 33);
		f[i].v =
		    f[i].unary ? next() % 81 : next() & ((1ull << f[i].nb) - 1);
	}
}

static size_t write_fields(const struct field *f, int n, uint8_t *buf)
{
	struct bitw w;

	bitw_init(&w, buf);
	for (int i = 0; i < n; i++) {
		if (f[i].unary)
			bitw_unary(&w, f[i].v);
		else
			bitw_put(&w, f[i].v, f[i].nb);
	}
	return bitw_finish(&w);
}

/* Reads the fields back from buf[0..len); the count read before the
 * first failure. */
static int read_fields(const struct field *f, int n, const uint8_t *buf,
		       size_t len, struct bitr *r)
{
	bitr_init(r, buf, len);
	for (int i = 0; i < n; i++) {
		uint64_t q;
		uint32_t v;

		if (f[i].unary) {
			if (!bitr_unary(r, 1000, &q))
				return i;
			CHECK_EQ_INT(q, f[i].v);
		} else {
			if (!bitr_get(r, f[i].nb, &v))
				return i;
			CHECK_EQ_INT(v, f[i].v);
		}
	}
	return n;
}

static void test_round_trip(void)
{
	static struct field f[FIELDS];
	static uint8_t buf[FIELDS * 16];

	for (int round = 0; round < 300; round++) {
		int n = round < 100 ? round % 12 : FIELDS;
		struct bitr r;
		size_t len;

		make(f, n);
		len = write_fields(f, n, buf);
		CHECK_EQ_INT(read_fields(f, n, buf, len, &r), n);
		/* the last byte holds a field's bit: nothing is left over */
		CHECK_EQ_INT(r.pos, len);
		CHECK(r.nbits < 8);
		CHECK_EQ_INT(r.acc, 0);
		/* a stream cut short runs dry before its last field */
		for (size_t cut = len > 40 ? len - 40 : 0; cut < len; cut++)
			CHECK(read_fields(f, n, buf, cut, &r) < n);
	}
}

/* A count over the limit fails whether its zeros span a refill or not. */
static void test_unary_limit(void)
{
	uint8_t buf[32];
	struct bitw w;
	struct bitr r;
	uint64_t q;
	size_t len;

	bitw_init(&w, buf);
	bitw_unary(&w, 70);
	bitw_unary(&w, 3);
	len = bitw_finish(&w);
	bitr_init(&r, buf, len);
	CHECK(!bitr_unary(&r, 69, &q));
	bitr_init(&r, buf, len);
	CHECK(bitr_unary(&r, 70, &q));
	CHECK_EQ_INT(q, 70);
	CHECK(!bitr_unary(&r, 2, &q));
}

int main(void)
{
	test_round_trip();
	test_unary_limit();
	CHECK_DONE();
}

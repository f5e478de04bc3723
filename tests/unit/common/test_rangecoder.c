// SPDX-License-Identifier: MIT
/*
 * Unit tests of the private adaptive binary range coder
 * (src/common/rangecoder.h): round trips of bit streams of every skew and
 * length, including the empty stream and runs that force carries, the size
 * against the entropy, and rejection by rc_dec_finish() of truncated, extended
 * and altered streams.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/prng.h"
#include "common/rangecoder.h"

static uint64_t rs = 0x2545f4914f6cdd1dULL;

static uint64_t xr(void) { return udfs_splitmix64(&rs); }

/* n bits, each 1 with probability q / 1024. */
static uint8_t *make_bits(size_t n, unsigned q)
{
	uint8_t *b = malloc(n + 1);

	for (size_t i = 0; i < n; i++)
		b[i] = (xr() % 1024) < q;
	return b;
}

static uint8_t *encode(const uint8_t *bits, size_t n, size_t *len)
{
	rc_prob p[4] = {RC_HALF, RC_HALF, RC_HALF, RC_HALF};
	struct rc_enc e;

	rc_enc_init(&e);
	for (size_t i = 0; i < n; i++)
		rc_enc_bit(&e, &p[i % 4], bits[i]);
	return rc_enc_finish(&e, len);
}

/* 1 when in[0..len) decodes to bits[0..n) and ends canonically, 0 when it
 * decodes to other bits or is rejected. */
static int decode(const uint8_t *in, size_t len, const uint8_t *bits, size_t n)
{
	rc_prob p[4] = {RC_HALF, RC_HALF, RC_HALF, RC_HALF};
	struct rc_dec d;
	int same = 1;

	rc_dec_init(&d, in, len);
	for (size_t i = 0; i < n; i++)
		same &= rc_dec_bit(&d, &p[i % 4]) == bits[i];
	return same && rc_dec_finish(&d);
}

static void roundtrip(size_t n, unsigned q)
{
	uint8_t *bits = make_bits(n, q), *enc, *bad;
	size_t len;
	double h = 0, pq = q / 1024.0;

	enc = encode(bits, n, &len);
	CHECK(decode(enc, len, bits, n));
	if (pq > 0 && pq < 1)
		h = n * -(pq * log2(pq) + (1 - pq) * log2(1 - pq));
	/* adaptive cost: within 15% of the entropy (the shift-6 adaptation
	 * noise at very skewed odds), plus the flush, the learning of four
	 * contexts and the floor of a probability (< 0.004 bits a bit) */
	if (n >= 10000)
		CHECK(8.0 * len <= h * 1.15 + 16 + 300 + 0.004 * n);
	/* an extra byte, zero or not, is rejected */
	bad = malloc(len + 2);
	memcpy(bad, enc, len);
	bad[len] = 0;
	CHECK(!decode(bad, len + 1, bits, n));
	bad[len] = 0x5a;
	CHECK(!decode(bad, len + 1, bits, n));
	/* dropping the last byte never decodes to the same bits */
	if (len)
		CHECK(!decode(enc, len - 1, bits, n));
	free(bad);
	free(enc);
	free(bits);
}

/* Streams of all zeros cost next to nothing; all ones push carries
 * through runs of 0xff. */
static void test_extremes(void)
{
	size_t n = 100000, len;
	uint8_t *bits = calloc(n, 1), *enc;

	enc = encode(bits, n, &len);
	CHECK(8.0 * len <= 300 + 0.004 * n);
	CHECK(decode(enc, len, bits, n));
	free(enc);
	memset(bits, 1, n);
	enc = encode(bits, n, &len);
	CHECK(decode(enc, len, bits, n));
	free(enc);
	/* alternating long runs: the probabilities swing between bounds */
	for (size_t i = 0; i < n; i++)
		bits[i] = (i / 5000) & 1;
	enc = encode(bits, n, &len);
	CHECK(decode(enc, len, bits, n));
	free(enc);
	enc = encode(bits, 0, &len);
	CHECK_EQ_INT(len, 0);
	CHECK(decode(enc, len, bits, 0));
	free(enc);
	free(bits);
}

/* Random garbage decodes without a bad access (ASan checks) and is
 * mostly rejected by the canonical end (about 2% of streams whose length
 * happens to fit pass). */
static void test_garbage(void)
{
	uint8_t buf[64];
	int accepted = 0;

	for (int t = 0; t < 2000; t++) {
		size_t len = 1 + xr() % sizeof(buf);
		rc_prob p = RC_HALF;
		struct rc_dec d;

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)xr();
		rc_dec_init(&d, buf, len);
		for (int i = 0; i < 300; i++)
			rc_dec_bit(&d, &p);
		accepted += rc_dec_finish(&d);
	}
	CHECK(accepted < 200);
}

int main(void)
{
	size_t ns[6] = {1, 2, 7, 100, 10000, 300000};
	unsigned qs[6] = {0, 1, 30, 300, 512, 1000};

	for (int i = 0; i < 6; i++)
		for (int j = 0; j < 6; j++)
			roundtrip(ns[i], qs[j]);
	test_extremes();
	test_garbage();
	CHECK_DONE();
}

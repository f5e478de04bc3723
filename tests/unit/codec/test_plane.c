// SPDX-License-Identifier: MIT
/*
 * Unit tests for the lossless plane codec and its zstd helpers: round trips
 * for every element size with and without a base, from empty to 1 MiB;
 * the choice between XOR and integer difference (difference must win when
 * values step across a power of two, XOR for ordinary small deltas); the
 * near-empty chunk of an unchanged tensor; sparse planes (the bitmap of
 * the nonzero bytes and those bytes) at every density and length, decoded
 * at every vector level; nibble planes (the high nibbles of a mantissa
 * plane compressed, the random low ones stored) and where they are not
 * taken; and malformed chunks of every
 * kind, which must be -EIO without a write past the output (decoded into
 * exact-size heap buffers, so AddressSanitizer sees any overrun).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "codec/plane.h"
#include "codec/simd.h"
#include "common/prng.h"
#include "common/util.h"

enum { MODE_XOR = 0, MODE_SUB = 1, MODE_NONE = 2 };

static uint64_t rng = 1;

static uint32_t rnd(void) { return (uint32_t)(udfs_splitmix64(&rng) >> 16); }

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

/* A base of n bytes of "weights" and cur = base plus a small signed
 * integer step on each element (little-endian, es bytes). */
static void make_pair(unsigned char *base, unsigned char *cur, size_t n,
		      unsigned es)
{
	for (size_t i = 0; i < n; i += es) {
		uint64_t b = 0, d;

		for (unsigned k = 0; k < es; k++)
			b |= (uint64_t)(rnd() & 0xff) << (8 * k);
		if (es >= 2) /* keep the top byte typical of small floats */
			b = (b & ~(0xffull << (8 * (es - 1)))) |
			    (uint64_t)(0x3c + (rnd() & 1)) << (8 * (es - 1));
		d = b + (uint64_t)(int64_t)((int)(rnd() % 17) - 8);
		for (unsigned k = 0; k < es; k++) {
			base[i + k] = (unsigned char)(b >> (8 * k));
			cur[i + k] = (unsigned char)(d >> (8 * k));
		}
	}
}

/* Encode, check the mode byte (-1: any), decode into an exact-size buffer
 * and compare. Returns the encoded length. */
static size_t round_trip(const unsigned char *cur, const unsigned char *base,
			 size_t n, unsigned es, int want_mode)
{
	void *enc = NULL;
	size_t len = 0;
	unsigned char *out = malloc(n ? n : 1);
	int err;

	err = udfs_plane_encode(cur, base, n, es, UDFS_ZSTD_LEVEL, &enc, &len);
	CHECK_EQ_INT(err, 0);
	if (err) {
		free(out);
		return 0;
	}
	CHECK(len >= 2 + 5 * (size_t)es);
	CHECK_EQ_INT(((unsigned char *)enc)[1], es);
	if (want_mode >= 0)
		CHECK_EQ_INT(((unsigned char *)enc)[0], want_mode);
	CHECK_EQ_INT(((unsigned char *)enc)[0] == MODE_NONE, base == NULL);
	memset(out, 0xee, n);
	CHECK_EQ_INT(udfs_plane_decode(enc, len, base, n, es, out), 0);
	if (n && memcmp(out, cur, n)) {
		fprintf(stderr, "round trip n %zu es %u base %d differs\n", n,
			es, base != NULL);
		CHECK(0);
	}
	free(out);
	free(enc);
	return len;
}

static void test_round_trips(void)
{
	static const unsigned ess[] = {1, 2, 4, 8};
	static const size_t elems[] = {0, 1, 2, 3, 7, 1001, 4097};
	size_t big = 1u << 20;
	unsigned char *base = malloc(big), *cur = malloc(big);

	for (size_t e = 0; e < 4; e++) {
		unsigned es = ess[e];

		for (size_t k = 0; k < sizeof(elems) / sizeof(elems[0]); k++) {
			size_t n = elems[k] * es;

			make_pair(base, cur, n, es);
			round_trip(cur, base, n, es, -1);
			round_trip(cur, NULL, n, es, MODE_NONE);
		}
		make_pair(base, cur, big, es);
		round_trip(cur, base, big, es, -1);
		round_trip(cur, NULL, big, es, MODE_NONE);
		/* Incompressible bytes: stored planes. */
		for (size_t i = 0; i < big; i++) {
			cur[i] = (unsigned char)rnd();
			base[i] = (unsigned char)rnd();
		}
		round_trip(cur, base, big, es, -1);
		round_trip(cur, NULL, big, es, MODE_NONE);
	}
	free(base);
	free(cur);
}

/* Values that step upward across a power of two: the difference is a
 * small positive integer, while XOR flips the whole exponent. */
static void test_sub_wins(void)
{
	size_t n = 1u << 20;
	unsigned char *base = malloc(n), *cur = malloc(n);

	/* F32 around 2.0. */
	for (size_t i = 0; i < n; i += 4) {
		uint32_t b = f2u(2.0f) - 1 - (rnd() % 4096);
		uint32_t c = b + 1 + (rnd() % 8192);

		memcpy(base + i, &b, 4);
		memcpy(cur + i, &c, 4);
	}
	round_trip(cur, base, n, 4, MODE_SUB);
	/* BF16 around 2.0 (0x4000). */
	for (size_t i = 0; i < n; i += 2) {
		uint16_t b = (uint16_t)(0x4000 - 1 - rnd() % 16);
		uint16_t c = (uint16_t)(b + 1 + rnd() % 32);

		memcpy(base + i, &b, 2);
		memcpy(cur + i, &c, 2);
	}
	round_trip(cur, base, n, 2, MODE_SUB);
	/* The same crossing just under 1.0 repeated: base 1 - tiny,
	 * fine-tune 1 + tiny, mixed with elements that do not cross. */
	for (size_t i = 0; i < n; i += 4) {
		float b = 0x1.fffffep-1f,
		      c = (rnd() & 1) ? 0x1.000002p+0f : 0x1.fffffcp-1f;

		if (rnd() & 1) {
			b = 0x1.fffffep+0f; /* and under 2.0: 2 + tiny */
			c = (rnd() & 1) ? 0x1.000002p+1f : 0x1.fffffcp+0f;
		}
		memcpy(base + i, &b, 4);
		memcpy(cur + i, &c, 4);
	}
	round_trip(cur, base, n, 4, -1);
	free(base);
	free(cur);
}

/* Ordinary fine-tune deltas of either sign: XOR keeps the top plane
 * almost empty, difference would fill it with 0x00/0xff. */
static void test_xor_wins(void)
{
	size_t n = 1u << 20;
	unsigned char *base = malloc(n), *cur = malloc(n);

	for (size_t i = 0; i < n; i += 4) {
		float b = ((float)(rnd() % 2000) - 1000.0f) / 1024.0f + 0.01f;
		float c =
		    b * (1.0f + ((float)(rnd() % 2001) - 1000.0f) * 1e-6f);

		memcpy(base + i, &b, 4);
		memcpy(cur + i, &c, 4);
	}
	round_trip(cur, base, n, 4, MODE_XOR);
	for (size_t i = 0; i < n; i += 2) {
		uint16_t b, c;

		b = (uint16_t)(f2u(((float)(rnd() % 2000) - 1000.0f) / 4096.0f +
				   0.01f) >>
			       16);
		c = (uint16_t)(b ^
			       (rnd() % 4)); /* flip the low mantissa bits */
		memcpy(base + i, &b, 2);
		memcpy(cur + i, &c, 2);
	}
	round_trip(cur, base, n, 2, MODE_XOR);
	free(base);
	free(cur);
}

static void test_zero_delta(void)
{
	size_t n = 1u << 20;
	unsigned char *base = malloc(n);
	static const unsigned ess[] = {1, 2, 4, 8};

	for (size_t i = 0; i < n; i++)
		base[i] = (unsigned char)rnd();
	for (size_t e = 0; e < 4; e++) {
		size_t len = round_trip(base, base, n, ess[e], MODE_XOR);

		CHECK_EQ_INT(len, 2 + 5 * ess[e]);
	}
	/* All-zero input without a base: zero planes too. */
	memset(base, 0, n);
	CHECK_EQ_INT(round_trip(base, NULL, n, 2, MODE_NONE), 2 + 5 * 2);
	free(base);
}

static void test_bad_args(void)
{
	unsigned char buf[16] = {0};
	void *enc = NULL;
	size_t len = 0;

	CHECK_EQ_INT(udfs_plane_encode(buf, NULL, 16, 0, 3, &enc, &len),
		     -EINVAL);
	CHECK_EQ_INT(udfs_plane_encode(buf, NULL, 15, 2, 3, &enc, &len),
		     -EINVAL);
	CHECK_EQ_INT(udfs_plane_encode(buf, NULL, 16, 16, 3, &enc, &len),
		     -EINVAL);
	CHECK(enc == NULL);
	udfs_error_clear();
}

/* Decode a copy of in (exactly in_len bytes on the heap) into an exact
 * n-byte heap buffer. */
static int decode_copy(const void *in, size_t in_len, const void *base,
		       size_t n, unsigned es)
{
	unsigned char *c = malloc(in_len ? in_len : 1);
	unsigned char *out = malloc(n ? n : 1);
	int err;

	memcpy(c, in, in_len);
	err = udfs_plane_decode(c, in_len, base, n, es, out);
	free(out);
	free(c);
	udfs_error_clear();
	return err;
}

static void set_len(unsigned char *enc, unsigned k, uint32_t len)
{
	for (int i = 0; i < 4; i++)
		enc[2 + 5 * k + 1 + i] = (unsigned char)(len >> (8 * i));
}

static uint32_t get_len(const unsigned char *enc, unsigned k)
{
	const unsigned char *d = enc + 2 + 5 * k + 1;

	return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
	       (uint32_t)d[3] << 24;
}

static void test_malformed(void)
{
	size_t n = 4000 * 4; /* 4000 F32 elements */
	unsigned char *base = malloc(n), *cur = malloc(n), *enc = NULL, *bad;
	size_t len = 0;
	void *p = NULL;
	int fails = 0;

	make_pair(base, cur, n, 4);
	for (size_t i = 0; i < n; i += 4) {
		cur[i] = (unsigned char)rnd(); /* a noisy low plane */
		cur[i + 2] = (unsigned char)(base[i + 2] + (i / 4 & 3));
	}
	CHECK_EQ_INT(udfs_plane_encode(cur, base, n, 4, 3, &p, &len), 0);
	enc = p;
	CHECK_EQ_INT(decode_copy(enc, len, base, n, 4), 0);
	/* The noisy low plane is stored, the next one (a few carries) sparse,
	 * the third (a pattern) compressed: every payload kind is there to
	 * damage. */
	CHECK_EQ_INT(enc[2], 2);
	CHECK_EQ_INT(enc[7], 3);
	CHECK_EQ_INT(enc[12], 1);

	/* Truncated anywhere. */
	for (size_t cut = 0; cut < len; cut++)
		if (decode_copy(enc, cut, base, n, 4) != -EIO)
			fails++;
	CHECK_EQ_INT(fails, 0);
	/* Trailing bytes. */
	bad = malloc(len + 1);
	memcpy(bad, enc, len);
	bad[len] = 0;
	CHECK_EQ_INT(decode_copy(bad, len + 1, base, n, 4), -EIO);
	/* Wrong es byte, and the right byte with the caller's es wrong. */
	memcpy(bad, enc, len);
	bad[1] = 2;
	CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
	bad[1] = 0;
	CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
	bad[1] = 200;
	CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
	CHECK_EQ_INT(decode_copy(enc, len, base, n, 2), -EIO);
	CHECK_EQ_INT(decode_copy(enc, len, base, n, 8), -EIO);
	/* The wrong output size: zstd frames declare theirs. */
	CHECK_EQ_INT(decode_copy(enc, len, base, n - 4, 4), -EIO);
	CHECK_EQ_INT(decode_copy(enc, len, base, n + 4, 4), -EIO);
	/* Mode: no base for a XOR/difference chunk, a base for a
	 * no-base chunk, unknown modes. */
	CHECK_EQ_INT(decode_copy(enc, len, NULL, n, 4), -EIO);
	memcpy(bad, enc, len);
	bad[0] = MODE_NONE;
	CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
	bad[0] = 3;
	CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
	CHECK_EQ_INT(decode_copy(bad, len, NULL, n, 4), -EIO);
	bad[0] = 255;
	CHECK_EQ_INT(decode_copy(bad, len, NULL, n, 4), -EIO);
	/* Plane lengths past the end, or shifted. */
	for (unsigned k = 0; k < 4; k++) {
		uint32_t l = get_len(enc, k);

		memcpy(bad, enc, len);
		set_len(bad, k, 0xffffffffu);
		CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
		set_len(bad, k, (uint32_t)len);
		CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
		set_len(bad, k, l + 1);
		CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
		if (l) {
			set_len(bad, k, l - 1);
			CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
		}
		/* Unknown plane kinds. */
		memcpy(bad, enc, len);
		bad[2 + 5 * k] = 5;
		CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
		bad[2 + 5 * k] = 255;
		CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
		/* A zero plane that claims bytes, a stored plane of the
		 * wrong size. */
		if (l) {
			memcpy(bad, enc, len);
			bad[2 + 5 * k] = 0;
			CHECK_EQ_INT(decode_copy(bad, len, base, n, 4), -EIO);
			bad[2 + 5 * k] = 2;
			CHECK_EQ_INT(decode_copy(bad, len, base, n, 4),
				     enc[2 + 5 * k] == 2 ? 0 : -EIO);
		}
	}
	free(bad);

	/* Random damage: any result but a crash, an overrun or another
	 * error than -EIO. */
	bad = malloc(len);
	fails = 0;
	for (int r = 0; r < 3000; r++) {
		int err;

		memcpy(bad, enc, len);
		for (int f = 0; f < 1 + r % 4; f++)
			bad[rnd() % (r % 3 ? len : 2 + 5 * 4)] ^=
			    (unsigned char)(1 + rnd() % 255);
		err = decode_copy(bad, len, base, n, 4);
		if (err != 0 && err != -EIO)
			fails++;
	}
	CHECK_EQ_INT(fails, 0);
	free(bad);
	free(enc);
	free(base);
	free(cur);
}

/* A chunk whose one zstd plane declares another size than the element
 * count: the frame is well formed, only its size is wrong. */
static void test_frame_size(void)
{
	unsigned char data[1001];
	void *z = NULL;
	size_t zl = 0;
	unsigned char *chunk;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i % 7);
	for (int delta = -1; delta <= 1; delta++) {
		size_t m = 1000;		       /* plane size */
		size_t fsz = (size_t)((int)m + delta); /* the frame's */
		int want = delta ? -EIO : 0;

		CHECK_EQ_INT(udfs_zstd_compress(data, fsz, 3, &z, &zl), 0);
		chunk = malloc(7 + zl);
		chunk[0] = MODE_NONE;
		chunk[1] = 1;
		chunk[2] = 1; /* zstd */
		set_len(chunk, 0, (uint32_t)zl);
		memcpy(chunk + 7, z, zl);
		CHECK_EQ_INT(decode_copy(chunk, 7 + zl, NULL, m, 1), want);
		free(chunk);
		free(z);
	}
}

static void test_zstd(void)
{
	size_t n = 100000;
	unsigned char *in = malloc(n), *out = malloc(n), *c;
	void *z = NULL;
	size_t zl = 0;

	for (size_t i = 0; i < n; i++)
		in[i] = (unsigned char)(rnd() % 4);
	CHECK_EQ_INT(udfs_zstd_compress(in, n, 3, &z, &zl), 0);
	CHECK(zl < n);
	CHECK_EQ_INT(udfs_zstd_decompress(z, zl, out, n), 0);
	CHECK(memcmp(in, out, n) == 0);
	free(out);
	/* Another size than the frame's: -EIO, exact-size buffers. */
	out = malloc(n - 1);
	CHECK_EQ_INT(udfs_zstd_decompress(z, zl, out, n - 1), -EIO);
	free(out);
	out = malloc(n + 1);
	CHECK_EQ_INT(udfs_zstd_decompress(z, zl, out, n + 1), -EIO);
	/* Truncated frames and garbage. */
	c = malloc(zl);
	memcpy(c, z, zl);
	CHECK_EQ_INT(udfs_zstd_decompress(c, zl / 2, out, n), -EIO);
	CHECK_EQ_INT(udfs_zstd_decompress(c, 0, out, n), -EIO);
	CHECK_EQ_INT(udfs_zstd_decompress(c, 3, out, n), -EIO);
	memset(c, 0x41, zl);
	CHECK_EQ_INT(udfs_zstd_decompress(c, zl, out, n), -EIO);
	udfs_error_clear();
	free(c);
	free(z);
	/* The empty buffer. */
	CHECK_EQ_INT(udfs_zstd_compress(in, 0, 3, &z, &zl), 0);
	CHECK_EQ_INT(udfs_zstd_decompress(z, zl, out, 0), 0);
	CHECK_EQ_INT(udfs_zstd_decompress(z, zl, out, 1), -EIO);
	udfs_error_clear();
	free(z);
	free(out);
	free(in);
}

/* Raw planes (no base, es 1) of n bytes with a nonzero byte at each
 * position with probability ppm / 10^6; kind of the one plane. */
static int sparse_plane_kind(size_t n, uint32_t ppm, int level)
{
	unsigned char *cur = calloc(n ? n : 1, 1), *out = malloc(n ? n : 1);
	void *enc = NULL;
	size_t len = 0;
	int kind = -1;

	for (size_t i = 0; i < n; i++)
		if (rnd() % 1000000 < ppm)
			cur[i] = (unsigned char)(1 + rnd() % 255);
	CHECK_EQ_INT(udfs_plane_encode(cur, NULL, n, 1, level, &enc, &len), 0);
	if (enc) {
		kind = ((unsigned char *)enc)[2];
		for (int l = 0; l < UDFS_SIMD_LEVELS; l++) {
			udfs_simd_cap(l);
			memset(out, 0xee, n);
			CHECK_EQ_INT(
			    udfs_plane_decode(enc, len, NULL, n, 1, out), 0);
			if (n && memcmp(out, cur, n)) {
				fprintf(
				    stderr,
				    "sparse n %zu ppm %u level %d differs\n", n,
				    ppm, l);
				CHECK(0);
			}
		}
		udfs_simd_cap(-1);
	}
	free(enc);
	free(cur);
	free(out);
	return kind;
}

static void test_sparse(void)
{
	static const size_t lens[] = {1, 7, 8, 63, 64, 65, 1000, 4099, 65536};
	static const uint32_t ppms[] = {1000, 50000, 125000, 300000, 500000};

	for (size_t i = 0; i < UDFS_ARRAY_SIZE(lens); i++)
		for (size_t k = 0; k < UDFS_ARRAY_SIZE(ppms); k++)
			sparse_plane_kind(lens[i], ppms[k], UDFS_ZSTD_LEVEL);
	/* Up to an eighth nonzero: sparse without a try of zstd; more than
	 * half: never sparse; random bytes between: whichever is smaller,
	 * sparse here (the bitmap costs less than zstd's literals). */
	CHECK_EQ_INT(sparse_plane_kind(65536, 50000, 3), 3);
	CHECK_EQ_INT(sparse_plane_kind(65536, 300000, 3), 3);
	CHECK(sparse_plane_kind(65536, 900000, 3) != 3);
	/* No nonzero byte: a zero plane. */
	CHECK_EQ_INT(sparse_plane_kind(4099, 0, 3), 0);
}

/* Damaged sparse planes: -EIO, never a write past the output. */
static void test_sparse_malformed(void)
{
	size_t n = 1001, len = 0, zlen, vlen;
	unsigned char *cur = calloc(n, 1), *enc, *bad, *p;
	void *e = NULL, *z = NULL, *v = NULL;
	unsigned char bm[126] = {0}, vals[2] = {5, 6};

	for (size_t i = 0; i < n; i += 100)
		cur[i] = (unsigned char)(1 + i % 200);
	CHECK_EQ_INT(udfs_plane_encode(cur, NULL, n, 1, 3, &e, &len), 0);
	enc = e;
	CHECK_EQ_INT(enc[2], 3);
	for (size_t cut = 0; cut < len; cut++)
		CHECK_EQ_INT(decode_copy(enc, cut, NULL, n, 1), -EIO);
	bad = malloc(len + 64);
	/* The bitmap frame's length past the plane, or short of it. */
	memcpy(bad, enc, len);
	bad[7] = 0xff;
	bad[8] = 0xff;
	CHECK_EQ_INT(decode_copy(bad, len, NULL, n, 1), -EIO);
	memcpy(bad, enc, len);
	bad[7]--;
	CHECK_EQ_INT(decode_copy(bad, len, NULL, n, 1), -EIO);
	/* Hand-made planes: a bitmap with a bit past the last element, and
	 * one whose count does not match the values frame. */
	for (int variant = 0; variant < 2; variant++) {
		memset(bm, 0, sizeof(bm));
		bm[3] = 1;
		if (variant == 0)
			bm[125] = 0x80; /* element 1007 of 1001 */
		else
			bm[4] = 3; /* three set bits, two values */
		CHECK_EQ_INT(udfs_zstd_compress(bm, 126, 3, &z, &zlen), 0);
		CHECK_EQ_INT(udfs_zstd_compress(vals, 2, 3, &v, &vlen), 0);
		p = bad;
		p[0] = MODE_NONE;
		p[1] = 1;
		p[2] = 3;
		set_len(p, 0, (uint32_t)(4 + zlen + vlen));
		p[7] = (unsigned char)zlen;
		p[8] = p[9] = p[10] = 0;
		memcpy(p + 11, z, zlen);
		memcpy(p + 11 + zlen, v, vlen);
		CHECK_EQ_INT(decode_copy(p, 11 + zlen + vlen, NULL, n, 1),
			     -EIO);
		free(z);
		free(v);
	}
	free(bad);
	free(enc);
	free(cur);
}

/* BF16 elements (m of them) of a random base, and cur = base XOR a delta
 * whose low byte is like a fine-tune's mantissa plane: a random low
 * nibble, and bits 4 to 7 set with probabilities 0.39, 0.28, 0.19 and
 * 0.12. With skew, the low nibble is 0 in three cases of four instead. */
static void make_mantissa_pair(uint16_t *base, uint16_t *cur, size_t m,
			       bool skew)
{
	static const uint32_t p256[4] = {100, 72, 48, 30};

	for (size_t i = 0; i < m; i++) {
		uint32_t r = rnd(), bits = rnd(), d = r & 15;

		if (skew && (r >> 4 & 3))
			d = 0;
		for (unsigned b = 0; b < 4; b++)
			d |= (uint32_t)((bits >> (8 * b) & 255) < p256[b])
			     << (4 + b);
		base[i] = (uint16_t)(0x3c00 | (rnd() & 0x1ff));
		cur[i] = (uint16_t)(base[i] ^ d);
	}
}

/* Encode m BF16 elements, check the mantissa plane's kind, round-trip at
 * every vector level; the encoded chunk (caller frees) or NULL. */
static unsigned char *nibble_chunk(size_t m, bool skew, int want_kind,
				   uint16_t *base, size_t *len)
{
	uint16_t *cur = malloc(2 * m), *out = malloc(2 * m);
	void *enc = NULL;

	make_mantissa_pair(base, cur, m, skew);
	CHECK_EQ_INT(
	    udfs_plane_encode(cur, base, 2 * m, 2, UDFS_ZSTD_LEVEL, &enc, len),
	    0);
	if (enc) {
		CHECK_EQ_INT(((unsigned char *)enc)[2], want_kind);
		for (int l = 0; l < UDFS_SIMD_LEVELS; l++) {
			udfs_simd_cap(l);
			memset(out, 0xee, 2 * m);
			CHECK_EQ_INT(
			    udfs_plane_decode(enc, *len, base, 2 * m, 2, out),
			    0);
			if (memcmp(out, cur, 2 * m)) {
				fprintf(stderr, "nibbles m %zu differ\n", m);
				CHECK(0);
			}
		}
		udfs_simd_cap(-1);
	}
	free(cur);
	free(out);
	return enc;
}

/* Nibble planes: taken for a mantissa plane with random low nibbles from
 * 4096 bytes up, not below nor where the low nibbles are skewed; and when
 * damaged, -EIO without a write past the output. */
static void test_nibbles(void)
{
	static const size_t ms[] = {4096, 4097, 4099, 65536, 65537};
	size_t m = 4097, len = 0, zl, half = (m + 1) / 2, last;
	uint16_t *base = malloc(2 * 65537);
	unsigned char *enc, *bad;

	for (size_t i = 0; i < UDFS_ARRAY_SIZE(ms); i++)
		free(nibble_chunk(ms[i], false, 4, base, &len));
	free(nibble_chunk(4095, false, 1, base, &len));
	free(nibble_chunk(65536, true, 1, base, &len));

	/* An odd plane: its last packed bytes hold one nibble each. */
	enc = nibble_chunk(m, false, 4, base, &len);
	if (!enc || enc[2] != 4) {
		free(enc);
		free(base);
		return;
	}
	for (size_t cut = 0; cut < len; cut++)
		CHECK_EQ_INT(decode_copy(enc, cut, base, 2 * m, 2), -EIO);
	bad = malloc(len);
	zl = (size_t)enc[12] | (size_t)enc[13] << 8 | (size_t)enc[14] << 16;
	last = 12 + 4 + zl + half - 1; /* the last byte of low nibbles */
	CHECK(last < len);
	memcpy(bad, enc, len);
	bad[last] |= 0x10;
	CHECK_EQ_INT(decode_copy(bad, len, base, 2 * m, 2), -EIO);
	/* The frame's length one off either way (the low nibbles shift). */
	memcpy(bad, enc, len);
	bad[12]++;
	CHECK_EQ_INT(decode_copy(bad, len, base, 2 * m, 2), -EIO);
	memcpy(bad, enc, len);
	bad[12]--;
	CHECK_EQ_INT(decode_copy(bad, len, base, 2 * m, 2), -EIO);
	/* The right bytes for another plane size. */
	CHECK_EQ_INT(decode_copy(enc, len, base, 2 * (m - 1), 2), -EIO);
	free(bad);
	free(enc);
	free(base);
}

int main(void)
{
	test_round_trips();
	test_sub_wins();
	test_xor_wins();
	test_zero_delta();
	test_bad_args();
	test_malformed();
	test_sparse();
	test_sparse_malformed();
	test_nibbles();
	test_frame_size();
	test_zstd();
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * Unit tests of value formats 4 to 7 of the lossy chunk codec, rANS-coded
 * b-bit codes (src/codec/rans.c, udfs(5) "Lossy chunk"): round trips for
 * b = 1..8, skewed, flat, sparse and one-symbol distributions and every
 * count modulo the four lanes of format 5, decoded whole and in blocks
 * that start in any lane; rejection of every truncation and extension, of
 * bad tables, states and lane lengths; random corruptions decode or fail
 * with -EIO; format 3 sections still decode; the encoder picks format 5
 * for typical codes within 3% of format 3's size, and format 7 (32 lanes,
 * four streams) for sections of 32768 codes or more; formats 6 and 7
 * decoded in blocks of any size and start, and damaged, at each vector
 * level the CPU has.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "codec/lossy.h"
#include "codec/lossy_i.h"
#include "codec/rans.h"
#include "codec/simd.h"
#include "common/dtype.h"
#include "common/util.h"

enum { VF_RC = 3, VF_RANS = 4, VF_RANS4 = 5, VF_RANS32 = 6, VF_RANS32S = 7 };
static const unsigned vfs[4] = {VF_RANS, VF_RANS4, VF_RANS32, VF_RANS32S};

static uint64_t rs = 11;

static uint64_t xr(void) { return udfs_splitmix64(&rs); }

static double unif(void) { return (double)(xr() >> 11) / 9007199254740992.0; }

enum { D_LAPLACE, D_FLAT, D_ONE, D_ENDS, D_SPARSE, D_COUNT };

/* n codes of b bits drawn from distribution kind. */
static void make_codes(uint8_t *v, uint32_t n, unsigned b, int kind)
{
	unsigned top = (1u << b) - 1;

	for (uint32_t j = 0; j < n; j++) {
		double u = unif() - 0.5, x;
		int c;

		switch (kind) {
		case D_LAPLACE: /* around the middle, a scale of a code */
			x = (u < 0 ? 1 : -1) * log(1 - 2 * fabs(u) + 1e-300);
			c = (int)lrint(top / 2.0 + x);
			v[j] = (uint8_t)(c < 0		? 0
					 : c > (int)top ? (int)top
							: c);
			break;
		case D_FLAT:
			v[j] = (uint8_t)(xr() & top);
			break;
		case D_ONE:
			v[j] = (uint8_t)(top / 3);
			break;
		case D_ENDS: /* only 0 and 2^b - 1, mostly 0 */
			v[j] = (uint8_t)(xr() % 50 ? 0 : top);
			break;
		default: /* every other symbol, one rare */
			v[j] = (uint8_t)((xr() & top) & ~1u);
			if (j == n / 2)
				v[j] = (uint8_t)(top & ~1u);
		}
	}
}

static udfs_lossy_params params(unsigned b)
{
	udfs_lossy_params p = {0};

	p.mask = UDFS_MASK_SEEDED;
	p.values = UDFS_VAL_CODES;
	p.bits = (uint8_t)b;
	p.lo = -0.0123f;
	p.step = 0.0017f;
	p.gain = 1.25f;
	return p;
}

/* Decode a value section; on success check it against the codes v
 * (1 when they differ), unless v is NULL. */
static int decode_check(const udfs_lossy_params *p, unsigned vf,
			const uint8_t *sec, size_t len, const uint8_t *v,
			uint32_t n, int dtype)
{
	float *d = malloc(((size_t)n + 1) * sizeof(*d));
	int ret = udfs_lossy_values_decode(p, dtype, vf, sec, len, n, d);

	for (uint32_t j = 0; ret == 0 && v && j < n; j++)
		if (d[j] != p->gain * (p->lo + (float)v[j] * p->step))
			ret = 1;
	free(d);
	udfs_error_clear();
	return ret;
}

static void roundtrip(unsigned b, uint32_t n, int kind, int dtype)
{
	/* each format, and its length for one symbol: the table, the states,
	 * the stream lengths (all 0), no stream bytes */
	static const struct {
		unsigned vf;
		size_t one;
	} fmts[] = {{VF_RANS, 4 + 8},
		    {VF_RANS4, 4 + 16 + 3},
		    {VF_RANS32, 4 + 128 + 31},
		    {VF_RANS32S, 4 + 128 + 3},
		    {VF_RC, 0}}; /* written before format 4: still decodes */
	udfs_lossy_params p = params(b);
	uint8_t *v = malloc(n), *sec = NULL;
	size_t len = 0;

	make_codes(v, n, b, kind);
	for (size_t f = 0; f < sizeof(fmts) / sizeof(fmts[0]); f++) {
		CHECK_EQ_INT(udfs_lossy_codes_encode_as(&p, n, v, fmts[f].vf,
							&sec, &len),
			     0);
		CHECK_EQ_INT(
		    decode_check(&p, fmts[f].vf, sec, len, v, n, dtype), 0);
		if (kind == D_ONE && fmts[f].one)
			CHECK_EQ_INT(len, fmts[f].one);
		free(sec);
	}
	free(v);
}

static void test_roundtrips(void)
{
	int dts[3] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	uint32_t ns[9] = {1, 2, 3, 4, 5, 7, 1001, 1002, 100000};

	for (unsigned b = 1; b <= 8; b++)
		for (int k = 0; k < D_COUNT; k++)
			for (int i = 0; i < 9; i++)
				roundtrip(b, ns[i], k, dts[(b + i) % 3]);
}

/* Decoding in blocks, as the chunk decoder does (at most 1024 values a
 * call), whose starts fall in every lane: the same values. */
static void test_blocks(void)
{
	udfs_lossy_params p = params(6);
	uint32_t n = 5003, sizes[5] = {1, 3, 1024, 7, 333};
	uint8_t *v = malloc(n), *sec = NULL;
	float *d = malloc(n * sizeof(*d));
	struct rans4_dec dec;
	struct rans4_slot tab[RANS_M];
	float lut[64];
	size_t len = 0;
	uint32_t at = 0;
	int bad = 0;

	for (int c = 0; c < 64; c++)
		lut[c] = (float)c;
	make_codes(v, n, 6, D_LAPLACE);
	CHECK_EQ_INT(udfs_lossy_codes_encode_as(&p, n, v, VF_RANS4, &sec, &len),
		     0);
	CHECK_EQ_INT(udfs_rans4_dec_init(&dec, sec, len, 6, lut, tab), 0);
	for (int i = 0; at < n; i++) {
		uint32_t k = UDFS_MIN(sizes[i % 5], n - at);

		udfs_rans4_decode(&dec, at, d + at, k);
		at += k;
	}
	CHECK(udfs_rans4_dec_finish(&dec));
	for (uint32_t j = 0; j < n; j++)
		bad += d[j] != (float)v[j];
	CHECK_EQ_INT(bad, 0);
	free(sec);
	free(d);
	free(v);
}

/* Format 6 (format 7 with shared) decoded in blocks of every size and
 * start lane, long enough that the vector decoders run (and their ends,
 * where steps are checked): the codes, at the level in force. */
static void test_blocks32(unsigned b, uint32_t n, int kind, bool shared)
{
	static const uint32_t sizes[6] = {1, 31, 1024, 33, 4096, 77};
	uint8_t *v = malloc(n), *sec;
	float *d = malloc(n * sizeof(*d)), lut[256];
	struct rans32_dec dec;
	struct rans4_slot *tab = malloc(RANS_M * sizeof(*tab));
	size_t len = 0;
	uint32_t at = 0;
	int bad = 0;

	for (int c = 0; c < 256; c++)
		lut[c] = (float)c;
	make_codes(v, n, b, kind);
	sec = udfs_rans32_encode(v, n, b, shared, &len);
	CHECK_EQ_INT(udfs_rans32_dec_init(&dec, sec, len, b, shared, lut, tab),
		     0);
	for (int i = 0; at < n; i++) {
		uint32_t k = UDFS_MIN(sizes[i % 6], n - at);

		udfs_rans32_decode(&dec, at, d + at, k);
		at += k;
	}
	CHECK(udfs_rans32_dec_finish(&dec));
	for (uint32_t j = 0; j < n; j++)
		bad += d[j] != (float)v[j];
	CHECK_EQ_INT(bad, 0);
	free(sec);
	free(tab);
	free(d);
	free(v);
}

/* Every prefix and every one-byte extension of a section is rejected;
 * random corruptions decode or give -EIO (ASan checks the accesses). */
static void test_corrupt(unsigned vf, unsigned b, int kind)
{
	udfs_lossy_params p = params(b);
	uint32_t n = 3001;
	uint8_t *v = malloc(n), *sec = NULL, *bad;
	size_t len = 0;
	int fails = 0, ret;

	make_codes(v, n, b, kind);
	CHECK_EQ_INT(udfs_lossy_codes_encode_as(&p, n, v, vf, &sec, &len), 0);
	bad = malloc(len + 1);
	for (size_t l = 0; l < len; l++) {
		memcpy(bad, sec, l);
		fails +=
		    decode_check(&p, vf, bad, l, v, n, UDFS_DT_BF16) == -EIO;
	}
	CHECK_EQ_INT(fails, len);
	fails = 0;
	for (unsigned x = 0; x < 256; x++) {
		memcpy(bad, sec, len);
		bad[len] = (uint8_t)x;
		fails += decode_check(&p, vf, bad, len + 1, v, n,
				      UDFS_DT_BF16) == -EIO;
	}
	CHECK_EQ_INT(fails, 256);
	for (int t = 0; t < 2000; t++) {
		memcpy(bad, sec, len);
		bad[xr() % len] ^= (uint8_t)(1u << (xr() % 8));
		if (t % 3 == 0)
			bad[xr() % len] = (uint8_t)xr();
		ret = decode_check(&p, vf, bad, len, NULL, n, UDFS_DT_BF16);
		CHECK(ret == 0 || ret == -EIO);
	}
	free(bad);
	free(sec);
	free(v);
}

/* Hand-made sections: the table and the states are validated. */
static void test_bad_tables(void)
{
	udfs_lossy_params p = params(2);
	uint8_t v[1] = {1};
	/* lo, hi, frequencies (4096 = 0x80 0x20), states RANS_L = 2^23 */
	static const uint8_t ok[] = {1,	   1, 0x80, 0x20, 0,	0,
				     0x80, 0, 0,    0,	  0x80, 0};
	static const uint8_t bad[][14] = {
	    {1, 1, 0xff, 0x1f, 0, 0, 0x80, 0, 0, 0, 0x80, 0},	 /* sum 4095 */
	    {4, 4, 0x80, 0x20, 0, 0, 0x80, 0, 0, 0, 0x80, 0},	 /* 4 >= 2^2 */
	    {2, 1, 0x80, 0x20, 0, 0, 0x80, 0, 0, 0, 0x80, 0},	 /* lo > hi */
	    {0, 1, 0, 0x80, 0x20, 0, 0, 0x80, 0, 0, 0, 0x80, 0}, /* f(lo) 0 */
	    {1, 1, 0x80, 0x20, 0, 0, 0x80, 0, 0, 0, 0x80, 0x80}, /* state */
	    {1, 1, 0x80, 0x20, 0, 0, 0x7f, 0, 0, 0, 0x80, 0},	 /* state */
	};
	static const size_t bad_len[] = {12, 12, 12, 13, 12, 12};

	CHECK_EQ_INT(
	    decode_check(&p, VF_RANS, ok, sizeof(ok), v, 1, UDFS_DT_BF16), 0);
	for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++)
		CHECK_EQ_INT(decode_check(&p, VF_RANS, bad[i], bad_len[i], v, 1,
					  UDFS_DT_BF16),
			     -EIO);
	/* format 5: the same table, four states of at least 2^16, three
	 * even lane lengths within the section */
	{
		static const uint8_t ok5[] = {1, 1, 0x80, 0x20, 0, 0, 1, 0,
					      0, 0, 1,	  0,	0, 0, 1, 0,
					      0, 0, 1,	  0,	0, 0, 0};
		uint8_t b5[sizeof(ok5) + 2];

		CHECK_EQ_INT(decode_check(&p, VF_RANS4, ok5, sizeof(ok5), v, 1,
					  UDFS_DT_BF16),
			     0);
		memcpy(b5, ok5, sizeof(ok5));
		b5[6] = 0; /* state 0 below 2^16 */
		CHECK_EQ_INT(decode_check(&p, VF_RANS4, b5, sizeof(ok5), v, 1,
					  UDFS_DT_BF16),
			     -EIO);
		memcpy(b5, ok5, sizeof(ok5));
		b5[20] = 1; /* lane 0 of odd length */
		CHECK_EQ_INT(decode_check(&p, VF_RANS4, b5, sizeof(ok5), v, 1,
					  UDFS_DT_BF16),
			     -EIO);
		memcpy(b5, ok5, sizeof(ok5));
		b5[21] = 4; /* lane 1 longer than the section */
		CHECK_EQ_INT(decode_check(&p, VF_RANS4, b5, sizeof(ok5), v, 1,
					  UDFS_DT_BF16),
			     -EIO);
		memcpy(b5, ok5, sizeof(ok5));
		b5[sizeof(ok5)] = 0, b5[sizeof(ok5) + 1] = 0; /* unread unit */
		CHECK_EQ_INT(decode_check(&p, VF_RANS4, b5, sizeof(ok5) + 2, v,
					  1, UDFS_DT_BF16),
			     -EIO);
	}
	/* formats 4 and 5 are for codes only */
	p.values = UDFS_VAL_SIGN;
	v[0] = 0;
	CHECK_EQ_INT(
	    decode_check(&p, VF_RANS, ok, sizeof(ok), v, 1, UDFS_DT_BF16),
	    -EIO);
}

/* Typical codes (4-bit min-max codes of a Laplace delta, as in a seeded
 * 1 MiB BF16 chunk at s = 0.9): format 7 is chosen, within 3% of format
 * 3. */
static void test_choice(void)
{
	udfs_lossy_params p = params(4);
	uint32_t n = 52429;
	uint8_t *v = malloc(n), *sec = NULL, *rc = NULL, fmt = 0;
	size_t len = 0, rc_len = 0;

	for (uint32_t j = 0; j < n; j++) {
		double u = unif() - 0.5;
		double x = (u < 0 ? 0.9 : -0.9) * log(1 - 2 * fabs(u) + 1e-300);
		int c = (int)lrint(7.2 + x); /* z = rint(0.0123 / 0.0017) = 7 */

		v[j] = (uint8_t)(c < 0 ? 0 : c > 15 ? 15 : c);
	}
	CHECK_EQ_INT(udfs_lossy_values_encode(&p, 2, n, v, &sec, &len, &fmt),
		     0);
	CHECK_EQ_INT(fmt, VF_RANS32S);
	CHECK_EQ_INT(udfs_lossy_codes_encode_as(&p, n, v, VF_RC, &rc, &rc_len),
		     0);
	CHECK(len * 100 <= rc_len * 103);
	fprintf(stderr, "Laplace codes: format 7 %zu bytes, format 3 %zu\n",
		len, rc_len);
	free(sec);
	free(rc);
	free(v);
}

/* A copy of sec[0..len) that ends where an unreadable page begins: a
 * decoder reading one byte past the section faults. Free with
 * guarded_free(). */
static uint8_t *guarded(const uint8_t *sec, size_t len, size_t *map_len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (len + pg - 1) / pg * pg;
	uint8_t *m = mmap(NULL, body + pg, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(m != MAP_FAILED);
	CHECK_EQ_INT(mprotect(m + body, pg, PROT_NONE), 0);
	memcpy(m + body - len, sec, len);
	*map_len = body + pg;
	return m + body - len;
}

static void guarded_free(uint8_t *p, size_t len, size_t map_len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	munmap(p + len - (map_len - pg), map_len);
}

/* Format 6 or 7 (vf) sections, whole and damaged, decoded against a guard
 * page: the vector decoders' reads ahead of the units stay inside the
 * section. */
static void test_guard32(unsigned vf, unsigned b, uint32_t n)
{
	udfs_lossy_params p = params(b);
	uint8_t *v = malloc(n), *sec = NULL, *g;
	size_t len = 0, map_len;

	make_codes(v, n, b, D_LAPLACE);
	CHECK_EQ_INT(udfs_lossy_codes_encode_as(&p, n, v, vf, &sec, &len), 0);
	g = guarded(sec, len, &map_len);
	CHECK_EQ_INT(decode_check(&p, vf, g, len, v, n, UDFS_DT_BF16), 0);
	for (int t = 0; t < 200; t++) {
		memcpy(g, sec, len);
		g[xr() % len] ^= (uint8_t)(1u << (xr() % 8));
		g[len - 1 - xr() % 64 % len] = (uint8_t)xr();
		CHECK(decode_check(&p, vf, g, len, NULL, n, UDFS_DT_BF16) <= 0);
	}
	guarded_free(g, len, map_len);
	free(sec);
	free(v);
}

/* Sections of 32768 codes or more are written in format 7 (32 lanes),
 * smaller ones in 5. */
static void test_choice32(void)
{
	udfs_lossy_params p = params(6);
	uint32_t n = 200000;
	uint8_t *v = malloc(n), *sec = NULL, fmt = 0;
	size_t len = 0, len5 = 0;

	make_codes(v, n, 6, D_LAPLACE);
	CHECK_EQ_INT(udfs_lossy_values_encode(&p, 2, n, v, &sec, &len, &fmt),
		     0);
	CHECK_EQ_INT(fmt, VF_RANS32S);
	free(sec);
	sec = udfs_rans4_encode(v, n, 6, &len5);
	CHECK(len <= len5 + 256);
	free(sec);
	CHECK_EQ_INT(
	    udfs_lossy_values_encode(&p, 2, 32768, v, &sec, &len, &fmt), 0);
	CHECK_EQ_INT(fmt, VF_RANS32S);
	free(sec);
	CHECK_EQ_INT(
	    udfs_lossy_values_encode(&p, 2, 32767, v, &sec, &len, &fmt), 0);
	CHECK_EQ_INT(fmt, VF_RANS4);
	free(sec);
	CHECK_EQ_INT(udfs_lossy_values_encode(&p, 2, 5000, v, &sec, &len, &fmt),
		     0);
	CHECK_EQ_INT(fmt, VF_RANS4);
	free(sec);
	free(v);
}

int main(void)
{
	test_roundtrips();
	test_blocks();
	/* each vector level the CPU has decodes formats 6 and 7 alike */
	for (int l = 0; l < UDFS_SIMD_LEVELS; l++) {
		udfs_simd_cap(l);
		if (udfs_simd_level() != l)
			continue;
		for (int sh = 0; sh < 2; sh++) {
			unsigned vf = sh ? VF_RANS32S : VF_RANS32;

			for (unsigned b = 1; b <= 8; b++)
				for (int k = 0; k < D_COUNT; k++)
					test_blocks32(b, 40000 + 13 * b, k, sh);
			/* too short for a group */
			test_blocks32(7, 300, D_LAPLACE, sh);
			for (int k = 0; k < D_COUNT; k++)
				test_corrupt(vf, 6, k);
			test_guard32(vf, 6, 70001);
			test_guard32(vf, 1, 5000);
			test_guard32(vf, 8, 40003);
		}
	}
	udfs_simd_cap(-1);
	test_choice32();
	for (int f = 0; f < 4; f++)
		for (unsigned b = 1; b <= 8; b += 3)
			for (int k = 0; k < D_COUNT; k++)
				test_corrupt(vfs[f], b, k);
	test_bad_tables();
	test_choice();
	CHECK_DONE();
}

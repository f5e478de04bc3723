// SPDX-License-Identifier: MIT
/*
 * Unit tests for dtypes: every name round-trips through parse and name,
 * element sizes in bits and bytes (sub-byte F4 and F6), and the float16 and
 * bfloat16 conversions checked against a straightforward double-precision
 * reference: every one of the 65536 half patterns decodes exactly and
 * encodes back to itself, and 2^24 float patterns spread over the whole
 * 32-bit space (plus the hand-picked ties, overflows and subnormals)
 * round to nearest even.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "common/dtype.h"

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static float u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

/* ---- references ------------------------------------------------------ */

/* Value of a float16 pattern, from the definition. */
static double ref_f16_val(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v;

	if (e == 0x1f)
		v = m ? NAN : INFINITY;
	else if (e == 0)
		v = ldexp(m, -24);
	else
		v = ldexp(1024 + m, e - 25);
	return h & 0x8000 ? -v : v;
}

/* Round x (finite, not NaN) to the nearest multiple of q, ties to even
 * multiple. Exact in double for the magnitudes used here. */
static double round_even(double x, double q)
{
	double k = floor(x / q), r = x - k * q;

	if (r > q / 2 || (r == q / 2 && fmod(k, 2) != 0))
		k += 1;
	return k * q;
}

/* float16 nearest to f, ties to even, by value. */
static uint16_t ref_f32_to_f16(float f)
{
	uint16_t sign = (f2u(f) >> 16) & 0x8000;
	double x = fabs((double)f), r;
	int e;

	if (isnan(f))
		return 0x7e00; /* the caller only checks "is a NaN" */
	if (x == 0)
		return sign;
	frexp(x, &e); /* x = m * 2^e, m in [0.5, 1) */
	e -= 1;	      /* x in [2^e, 2^(e+1)) */
	if (e < -14)
		e = -14; /* subnormals share the smallest normal's step */
	r = round_even(x, ldexp(1, e - 10));
	if (r >= 65536)
		return sign | 0x7c00;
	if (r < ldexp(1, -14))
		return sign | (uint16_t)(r * ldexp(1, 24));
	frexp(r, &e);
	e -= 1;
	return sign | (uint16_t)((e + 15) << 10) |
	       (uint16_t)(r / ldexp(1, e - 10) - 1024);
}

/* bfloat16 nearest to f, ties to even, by value. */
static uint16_t ref_f32_to_bf16(float f)
{
	uint16_t sign = (f2u(f) >> 16) & 0x8000;
	double x = fabs((double)f), r;
	int e;

	if (isnan(f))
		return 0x7fc0;
	if (x == 0)
		return sign;
	frexp(x, &e);
	e -= 1;
	if (e < -126)
		e = -126;
	r = round_even(x, ldexp(1, e - 7));
	if (r >= ldexp(1, 128))
		return sign | 0x7f80;
	/* r has at most 8 significant bits: exact as a float. */
	return sign | (uint16_t)(f2u((float)r) >> 16);
}

/* ---- tests ----------------------------------------------------------- */

static void test_names(void)
{
	static const struct {
		int dt;
		const char *name;
		unsigned bits, size;
	} want[] = {
	    {UDFS_DT_BOOL, "BOOL", 8, 1},
	    {UDFS_DT_U8, "U8", 8, 1},
	    {UDFS_DT_I8, "I8", 8, 1},
	    {UDFS_DT_I16, "I16", 16, 2},
	    {UDFS_DT_U16, "U16", 16, 2},
	    {UDFS_DT_F16, "F16", 16, 2},
	    {UDFS_DT_BF16, "BF16", 16, 2},
	    {UDFS_DT_I32, "I32", 32, 4},
	    {UDFS_DT_U32, "U32", 32, 4},
	    {UDFS_DT_F32, "F32", 32, 4},
	    {UDFS_DT_F64, "F64", 64, 8},
	    {UDFS_DT_I64, "I64", 64, 8},
	    {UDFS_DT_U64, "U64", 64, 8},
	    {UDFS_DT_F8_E4M3, "F8_E4M3", 8, 1},
	    {UDFS_DT_F8_E5M2, "F8_E5M2", 8, 1},
	    {UDFS_DT_F8_E8M0, "F8_E8M0", 8, 1},
	    {UDFS_DT_C64, "C64", 64, 8},
	    {UDFS_DT_F4, "F4", 4, 0},
	    {UDFS_DT_F6_E2M3, "F6_E2M3", 6, 0},
	    {UDFS_DT_F6_E3M2, "F6_E3M2", 6, 0},
	};

	CHECK_EQ_INT(sizeof(want) / sizeof(want[0]), UDFS_DT_COUNT);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CHECK_EQ_STR(udfs_dtype_name(want[i].dt), want[i].name);
		CHECK_EQ_INT(udfs_dtype_parse(want[i].name), want[i].dt);
		CHECK_EQ_INT(udfs_dtype_bits(want[i].dt), want[i].bits);
		CHECK_EQ_INT(udfs_dtype_size(want[i].dt), want[i].size);
		CHECK_EQ_INT(udfs_dtype_is_lossy_float(want[i].dt),
			     want[i].dt == UDFS_DT_F16 ||
				 want[i].dt == UDFS_DT_BF16 ||
				 want[i].dt == UDFS_DT_F32);
	}
	for (int dt = 0; dt < UDFS_DT_COUNT; dt++)
		CHECK_EQ_INT(udfs_dtype_parse(udfs_dtype_name(dt)), dt);
	CHECK_EQ_INT(udfs_dtype_parse("bf16"), -1); /* names are exact */
	CHECK_EQ_INT(udfs_dtype_parse(""), -1);
	CHECK_EQ_INT(udfs_dtype_parse("F16 "), -1);
	CHECK_EQ_INT(udfs_dtype_parse("?"), -1);
	CHECK_EQ_STR(udfs_dtype_name(-1), "?");
	CHECK_EQ_STR(udfs_dtype_name(UDFS_DT_COUNT), "?");
	CHECK_EQ_INT(udfs_dtype_bits(-1), 0);
	CHECK_EQ_INT(udfs_dtype_bits(UDFS_DT_COUNT), 0);
	CHECK_EQ_INT(udfs_dtype_size(UDFS_DT_COUNT), 0);
}

/* Every half pattern: decode matches the definition, and encoding the
 * decoded float gives the pattern back (NaN stays a NaN of its sign). */
static void test_half_exhaustive(void)
{
	int bad_f16 = 0, bad_bf16 = 0;

	for (uint32_t h = 0; h < 65536; h++) {
		float f = udfs_f16_to_f32((uint16_t)h);
		double want = ref_f16_val((uint16_t)h);
		bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
		uint16_t back = udfs_f32_to_f16(f);

		if (nan) {
			bool ok = isnan(f) && (back & 0x7c00) == 0x7c00 &&
				  (back & 0x3ff) &&
				  (back & 0x8000) == (h & 0x8000);

			if (!ok && bad_f16++ < 5)
				fprintf(stderr,
					"f16 %04x: NaN -> %08x -> "
					"%04x\n",
					h, f2u(f), back);
		} else if ((double)f != want || back != h ||
			   !!signbit(f) != !!(h & 0x8000)) {
			if (bad_f16++ < 5)
				fprintf(stderr,
					"f16 %04x: %.9g (want %.9g) "
					"-> %04x\n",
					h, f, want, back);
		}

		f = udfs_bf16_to_f32((uint16_t)h);
		back = udfs_f32_to_bf16(f);
		nan = ((h >> 7) & 0xff) == 0xff && (h & 0x7f);
		if (f2u(f) != h << 16 ||
		    (nan ? !isnan(udfs_bf16_to_f32(back)) ||
			       (back & 0x8000) != (h & 0x8000)
			 : back != h)) {
			if (bad_bf16++ < 5)
				fprintf(stderr, "bf16 %04x: %08x -> %04x\n", h,
					f2u(f), back);
		}
	}
	CHECK_EQ_INT(bad_f16, 0);
	CHECK_EQ_INT(bad_bf16, 0);
}

/* One float pattern against both references; returns failures (0/1/2). */
static int check_one(uint32_t u, int *shown)
{
	float f = u2f(u);
	uint16_t h = udfs_f32_to_f16(f), rh = ref_f32_to_f16(f);
	uint16_t b = udfs_f32_to_bf16(f), rb = ref_f32_to_bf16(f);
	int bad = 0;

	if (isnan(f)) {
		bad += !isnan(udfs_f16_to_f32(h)) ||
		       (h & 0x8000) != ((u >> 16) & 0x8000);
		bad += !isnan(udfs_bf16_to_f32(b)) ||
		       (b & 0x8000) != ((u >> 16) & 0x8000);
	} else {
		bad += h != rh;
		bad += b != rb;
	}
	if (bad && (*shown)++ < 8)
		fprintf(stderr,
			"f32 %08x (%.9g): f16 %04x want %04x, "
			"bf16 %04x want %04x\n",
			u, f, h, rh, b, rb);
	return bad;
}

/* 2^24 patterns: every 256th, alternately with a zero low byte (so the
 * exact ties of both formats are included) and a pseudo-random one. */
static void test_f32_stride(void)
{
	int bad = 0, shown = 0;
	uint32_t x = 12345;

	for (uint32_t i = 0; i < (1u << 24); i++) {
		uint32_t low = 0;

		if (i & 1) {
			x = x * 1664525u + 1013904223u;
			low = x >> 24;
		}
		bad += check_one(i << 8 | low, &shown);
	}
	CHECK_EQ_INT(bad, 0);
}

static void test_special(void)
{
	int shown = 0, bad = 0;
	/* Hand-picked patterns: ties, overflow edges, subnormal edges. */
	static const uint32_t pats[] = {
	    0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff,
	    0x7f800000, 0xff800000, 0x7f7f8000, 0x7f7f7fff, 0x477fe000,
	    0x477fefff, 0x477ff000, 0x477ff001, 0xc77ff000, 0x38800000,
	    0x387fffff, 0x387fe000, 0x33800000, 0x33800001, 0x337fffff,
	    0x33000000, 0x33c00000, 0x3f808000, 0x3f818000, 0x3f800fff,
	    0x3f801000, 0x3f803000, 0x3f802000, 0x3f7ff000, 0x7fc00000,
	    0xffc00001, 0x7f800001, 0x7fbfffff,
	};

	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
		bad += check_one(pats[i], &shown);
	CHECK_EQ_INT(bad, 0);

	/* The same facts spelled out. */
	CHECK_EQ_INT(udfs_f32_to_bf16(u2f(0x3f808000)), 0x3f80); /* tie, even */
	CHECK_EQ_INT(udfs_f32_to_bf16(u2f(0x3f818000)), 0x3f82); /* tie, odd */
	CHECK_EQ_INT(udfs_f32_to_bf16(u2f(0x3f808001)), 0x3f81);
	CHECK_EQ_INT(udfs_f32_to_bf16(FLT_MAX), 0x7f80); /* overflow */
	CHECK_EQ_INT(udfs_f32_to_bf16(-FLT_MAX), 0xff80);
	CHECK_EQ_INT(udfs_f32_to_bf16(-0.0f), 0x8000);
	CHECK_EQ_INT(udfs_f32_to_bf16(INFINITY), 0x7f80);
	CHECK(isnan(udfs_bf16_to_f32(udfs_f32_to_bf16(u2f(0x7f800001)))));
	CHECK(isnan(udfs_bf16_to_f32(udfs_f32_to_bf16(NAN))));

	CHECK_EQ_INT(udfs_f32_to_f16(1.0f), 0x3c00);
	CHECK_EQ_INT(udfs_f32_to_f16(u2f(0x3f801000)), 0x3c00); /* tie, even */
	CHECK_EQ_INT(udfs_f32_to_f16(u2f(0x3f803000)), 0x3c02); /* tie, odd */
	CHECK_EQ_INT(udfs_f32_to_f16(65504.0f), 0x7bff);
	CHECK_EQ_INT(udfs_f32_to_f16(65519.99f), 0x7bff);
	CHECK_EQ_INT(udfs_f32_to_f16(65520.0f), 0x7c00); /* tie to even: Inf */
	CHECK_EQ_INT(udfs_f32_to_f16(-65520.0f), 0xfc00);
	CHECK_EQ_INT(udfs_f32_to_f16(1e10f), 0x7c00);
	CHECK_EQ_INT(udfs_f32_to_f16(-INFINITY), 0xfc00);
	CHECK_EQ_INT(udfs_f32_to_f16(-0.0f), 0x8000);
	CHECK_EQ_INT(udfs_f32_to_f16(0x1p-24f), 0x0001); /* smallest sub */
	CHECK_EQ_INT(udfs_f32_to_f16(0x1p-25f), 0x0000); /* tie to even 0 */
	CHECK_EQ_INT(udfs_f32_to_f16(-0x1p-25f), 0x8000);
	CHECK_EQ_INT(udfs_f32_to_f16(0x1.000002p-25f), 0x0001);
	CHECK_EQ_INT(udfs_f32_to_f16(0x1.8p-24f), 0x0002);   /* 1.5: to 2 */
	CHECK_EQ_INT(udfs_f32_to_f16(0x1.4p-23f), 0x0002);   /* 2.5: to 2 */
	CHECK_EQ_INT(udfs_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest sub */
	CHECK_EQ_INT(udfs_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie: normal */
	CHECK_EQ_INT(udfs_f32_to_f16(0x1.ffbfcp-15f), 0x03ff);
	CHECK_EQ_INT(udfs_f32_to_f16(0x1p-14f), 0x0400);
	CHECK_EQ_INT(udfs_f32_to_f16(FLT_MIN), 0x0000);
	CHECK(isnan(udfs_f16_to_f32(udfs_f32_to_f16(NAN))));
	CHECK(isnan(udfs_f16_to_f32(udfs_f32_to_f16(u2f(0x7f800001)))));
	CHECK(signbit(udfs_f16_to_f32(0x8000)));
	CHECK(signbit(udfs_bf16_to_f32(0x8000)));
	CHECK_EQ_INT(f2u(udfs_f16_to_f32(0x0001)), f2u(0x1p-24f));
	CHECK_EQ_INT(f2u(udfs_f16_to_f32(0x03ff)), f2u(0x1.ff8p-15f));
	CHECK_EQ_INT(f2u(udfs_f16_to_f32(0x7c00)), 0x7f800000);
}

static void test_load_store(void)
{
	unsigned char buf[16] = {0};
	static const int dts[] = {UDFS_DT_F16, UDFS_DT_BF16, UDFS_DT_F32};

	for (size_t d = 0; d < 3; d++) {
		int dt = dts[d];

		udfs_dtype_store_f32(dt, buf, 0, 1.5f);
		udfs_dtype_store_f32(dt, buf, 1, -2.0f);
		udfs_dtype_store_f32(dt, buf, 2, 0.25f);
		CHECK_EQ_INT(f2u(udfs_dtype_load_f32(dt, buf, 0)), f2u(1.5f));
		CHECK_EQ_INT(f2u(udfs_dtype_load_f32(dt, buf, 1)), f2u(-2.0f));
		CHECK_EQ_INT(f2u(udfs_dtype_load_f32(dt, buf, 2)), f2u(0.25f));
	}
	/* Little-endian layout of element 1. */
	udfs_dtype_store_f32(UDFS_DT_BF16, buf, 1, 1.0f);
	CHECK_EQ_INT(buf[2], 0x80);
	CHECK_EQ_INT(buf[3], 0x3f);
	udfs_dtype_store_f32(UDFS_DT_F16, buf, 1, 1.0f);
	CHECK_EQ_INT(buf[2], 0x00);
	CHECK_EQ_INT(buf[3], 0x3c);
	/* Rounding on store: the tie above goes to even. */
	udfs_dtype_store_f32(UDFS_DT_BF16, buf, 0, u2f(0x3f818000));
	CHECK_EQ_INT(buf[0] | buf[1] << 8, 0x3f82);
}

int main(void)
{
	test_names();
	test_half_exhaustive();
	test_special();
	test_f32_stride();
	test_load_store();
	CHECK_DONE();
}

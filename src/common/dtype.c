// SPDX-License-Identifier: MIT
/*
 * safetensors dtypes and the exact float16/bfloat16 conversions used by
 * reconstruction. Conversions work on bit patterns only, so they give the
 * same result on every machine whatever the FPU state.
 */
#include "common/dtype.h"

#include <string.h>

static const struct {
	const char *name;
	unsigned bits;
} dtypes[UDFS_DT_COUNT] = {
    [UDFS_DT_BOOL] = {"BOOL", 8},	[UDFS_DT_U8] = {"U8", 8},
    [UDFS_DT_I8] = {"I8", 8},		[UDFS_DT_I16] = {"I16", 16},
    [UDFS_DT_U16] = {"U16", 16},	[UDFS_DT_F16] = {"F16", 16},
    [UDFS_DT_BF16] = {"BF16", 16},	[UDFS_DT_I32] = {"I32", 32},
    [UDFS_DT_U32] = {"U32", 32},	[UDFS_DT_F32] = {"F32", 32},
    [UDFS_DT_F64] = {"F64", 64},	[UDFS_DT_I64] = {"I64", 64},
    [UDFS_DT_U64] = {"U64", 64},	[UDFS_DT_F8_E4M3] = {"F8_E4M3", 8},
    [UDFS_DT_F8_E5M2] = {"F8_E5M2", 8}, [UDFS_DT_F8_E8M0] = {"F8_E8M0", 8},
    [UDFS_DT_C64] = {"C64", 64},	[UDFS_DT_F4] = {"F4", 4},
    [UDFS_DT_F6_E2M3] = {"F6_E2M3", 6}, [UDFS_DT_F6_E3M2] = {"F6_E3M2", 6},
};

int udfs_dtype_parse(const char *name)
{
	for (int i = 0; i < UDFS_DT_COUNT; i++)
		if (strcmp(name, dtypes[i].name) == 0)
			return i;
	return -1;
}

const char *udfs_dtype_name(int dt)
{
	return dt >= 0 && dt < UDFS_DT_COUNT ? dtypes[dt].name : "?";
}

unsigned udfs_dtype_bits(int dt)
{
	return dt >= 0 && dt < UDFS_DT_COUNT ? dtypes[dt].bits : 0;
}

unsigned udfs_dtype_size(int dt)
{
	unsigned bits = udfs_dtype_bits(dt);

	return bits % 8 ? 0 : bits / 8;
}

bool udfs_dtype_is_lossy_float(int dt)
{
	return dt == UDFS_DT_F16 || dt == UDFS_DT_BF16 || dt == UDFS_DT_F32;
}

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

float udfs_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t udfs_f32_to_bf16(float f)
{
	uint32_t u = f2u(f);

	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

float udfs_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;

	if (exp == 0x1f) /* Inf or NaN */
		return u2f(sign | 0x7f800000u | (man << 13));
	if (exp == 0) {
		if (man == 0)
			return u2f(sign);
		/* Subnormal: normalize. */
		exp = 127 - 15 + 1;
		while (!(man & 0x400u)) {
			man <<= 1;
			exp--;
		}
		man &= 0x3ffu;
		return u2f(sign | (exp << 23) | (man << 13));
	}
	return u2f(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

uint16_t udfs_f32_to_f16(float f)
{
	uint32_t u = f2u(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t absu = u & 0x7fffffffu;

	if (absu > 0x7f800000u) /* NaN */
		return (uint16_t)(sign | 0x7e00u | ((absu >> 13) & 0x3ffu));
	if (absu >= 0x477ff000u) /* rounds to >= 65520: overflow to Inf */
		return (uint16_t)(sign | 0x7c00u);
	if (absu < 0x38800000u) {
		/* Result is subnormal or zero: shift the full significand. */
		uint32_t e = absu >> 23;
		uint32_t man = (absu & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14 + (113 - e) */
		uint32_t half, rest, r;

		if (e < 102) /* below half the smallest subnormal */
			return sign;
		r = man >> shift;
		rest = man & ((1u << shift) - 1);
		half = 1u << (shift - 1);
		if (rest > half || (rest == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	/* Normal: rebias and round the mantissa to 10 bits, ties to even. */
	absu -= (127u - 15u) << 23;
	absu += 0xfffu + ((absu >> 13) & 1u);
	return (uint16_t)(sign | (absu >> 13));
}

float udfs_dtype_load_f32(int dt, const void *p, uint64_t i)
{
	uint16_t h;
	float f;

	switch (dt) {
	case UDFS_DT_BF16:
		memcpy(&h, (const char *)p + 2 * i, 2);
		return udfs_bf16_to_f32(h);
	case UDFS_DT_F16:
		memcpy(&h, (const char *)p + 2 * i, 2);
		return udfs_f16_to_f32(h);
	default:
		memcpy(&f, (const char *)p + 4 * i, 4);
		return f;
	}
}

void udfs_dtype_store_f32(int dt, void *p, uint64_t i, float v)
{
	uint16_t h;

	switch (dt) {
	case UDFS_DT_BF16:
		h = udfs_f32_to_bf16(v);
		memcpy((char *)p + 2 * i, &h, 2);
		break;
	case UDFS_DT_F16:
		h = udfs_f32_to_f16(v);
		memcpy((char *)p + 2 * i, &h, 2);
		break;
	default:
		memcpy((char *)p + 4 * i, &v, 4);
		break;
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * safetensors element types: names, sizes in bits, and the float16 and
 * bfloat16 conversions used by reconstruction (round to nearest even, NaN
 * stays NaN). The conversions are exact bit-level functions, identical on
 * every machine; they never depend on the FPU rounding mode.
 */
#ifndef UDFS_DTYPE_H
#define UDFS_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

enum udfs_dtype {
	UDFS_DT_BOOL,
	UDFS_DT_U8,
	UDFS_DT_I8,
	UDFS_DT_I16,
	UDFS_DT_U16,
	UDFS_DT_F16,
	UDFS_DT_BF16,
	UDFS_DT_I32,
	UDFS_DT_U32,
	UDFS_DT_F32,
	UDFS_DT_F64,
	UDFS_DT_I64,
	UDFS_DT_U64,
	UDFS_DT_F8_E4M3,
	UDFS_DT_F8_E5M2,
	UDFS_DT_F8_E8M0,
	UDFS_DT_C64,
	UDFS_DT_F4,
	UDFS_DT_F6_E2M3,
	UDFS_DT_F6_E3M2,
	UDFS_DT_COUNT
};

/* Parse a safetensors dtype name ("BF16"); -1 when unknown. */
int udfs_dtype_parse(const char *name);
/* Name of a dtype ("BF16"); "?" for an out-of-range value. */
const char *udfs_dtype_name(int dt);
/* Size of one element in bits (4 for F4, 16 for BF16, 64 for C64). */
unsigned udfs_dtype_bits(int dt);
/* Whole bytes per element, 0 for the sub-byte types. */
unsigned udfs_dtype_size(int dt);
/* True for F16, BF16 and F32: the types the lossy methods work on. */
bool udfs_dtype_is_lossy_float(int dt);

float udfs_bf16_to_f32(uint16_t h);
uint16_t udfs_f32_to_bf16(float f);
float udfs_f16_to_f32(uint16_t h);
uint16_t udfs_f32_to_f16(float f);

/* Load element i of a F16/BF16/F32 array as float32. */
float udfs_dtype_load_f32(int dt, const void *p, uint64_t i);
/* Store v as element i of a F16/BF16/F32 array (round to nearest even). */
void udfs_dtype_store_f32(int dt, void *p, uint64_t i, float v);

#endif

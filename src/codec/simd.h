/* SPDX-License-Identifier: MIT */
/*
 * Which vector instructions the decoder's hot loops use (codec/simd.c).
 * Each hot loop is compiled once per level (GCC target attributes, the
 * same C source) and called through a table indexed by the level, picked
 * once from the CPU. Every level gives the same bits: the loops only add
 * and multiply float32 lanes in the order the scalar code does, never
 * fused (the build passes -ffp-contract=off), and integer steps are exact.
 */
#ifndef UDFS_CODEC_SIMD_H
#define UDFS_CODEC_SIMD_H

#include <stdbool.h>

enum udfs_simd_level {
	UDFS_SIMD_BASE,	  /* the build's baseline (x86-64: SSE2) */
	UDFS_SIMD_AVX2,	  /* AVX2, BMI2 and POPCNT */
	UDFS_SIMD_AVX512, /* AVX-512 F, BW and VL, with the above */
	UDFS_SIMD_LEVELS
};

#if defined(__x86_64__) && defined(__GNUC__)
#define UDFS_SIMD_X86 1
/* popcnt: __builtin_popcount is otherwise a call or a dozen instructions */
#define UDFS_TARGET_AVX2 __attribute__((target("avx2,bmi2,popcnt")))
#define UDFS_TARGET_AVX512                                                     \
	__attribute__((target("avx2,bmi2,popcnt,avx512f,avx512bw,avx512vl")))
#endif

/* The level the hot loops use now: the best the CPU (and OS) supports, at
 * most the cap of udfs_simd_cap(). Thread-safe. */
int udfs_simd_level(void);

/* Whether the vector loops may use AVX-512 VBMI2 (byte expand and
 * compress): the level is UDFS_SIMD_AVX512 and the CPU has it. */
bool udfs_simd_vbmi2(void);

/* Cap the level at most (tests compare the levels' bytes); -1 lifts the
 * cap. The previous cap. Not for concurrent use with decoding. */
int udfs_simd_cap(int most);

#endif

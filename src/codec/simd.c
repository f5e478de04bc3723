// SPDX-License-Identifier: MIT
/*
 * The vector level of the decoder's hot loops (codec/simd.h): read from
 * the CPU once, cached; tests cap it to compare each level's bytes with
 * the baseline's.
 */
#include "codec/simd.h"

static int detected = -1; /* the CPU's level, once known */
static int vbmi2 = -1;	  /* whether the CPU has AVX-512 VBMI2, once known */
static int cap = -1;	  /* udfs_simd_cap(); -1: none */

static int detect(void)
{
#ifdef UDFS_SIMD_X86
	/* libgcc's checks include the OS saving the vector registers. */
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2") ||
	    !__builtin_cpu_supports("bmi2") ||
	    !__builtin_cpu_supports("popcnt"))
		return UDFS_SIMD_BASE;
	if (__builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl"))
		return UDFS_SIMD_AVX512;
	return UDFS_SIMD_AVX2;
#else
	return UDFS_SIMD_BASE;
#endif
}

int udfs_simd_level(void)
{
	int d = __atomic_load_n(&detected, __ATOMIC_RELAXED);
	int c = __atomic_load_n(&cap, __ATOMIC_RELAXED);

	if (d < 0) { /* a race computes the same value twice: harmless */
		d = detect();
		__atomic_store_n(&detected, d, __ATOMIC_RELAXED);
	}
	return c >= 0 && c < d ? c : d;
}

bool udfs_simd_vbmi2(void)
{
	int v = __atomic_load_n(&vbmi2, __ATOMIC_RELAXED);

	if (v < 0) {
#ifdef UDFS_SIMD_X86
		__builtin_cpu_init();
		v = __builtin_cpu_supports("avx512vbmi2") != 0;
#else
		v = 0;
#endif
		__atomic_store_n(&vbmi2, v, __ATOMIC_RELAXED);
	}
	return v && udfs_simd_level() >= UDFS_SIMD_AVX512;
}

int udfs_simd_cap(int most)
{
	return __atomic_exchange_n(&cap, most, __ATOMIC_RELAXED);
}

// SPDX-License-Identifier: MIT
/*
 * Composite lossy chunks of the adaptive method (udfs(5)): a low-rank part
 * and a residual, added in float32 before one rounding to the tensor's
 * dtype. The residual is a whole version 1 chunk (codec/lossy.c) decoded
 * with the tensor's catalog parameters, so every mask and value code of
 * UltraDelta, bitdelta and magnitude can carry it. A composite chunk is
 *
 *   u8      bits 6-7 format version (2), bit 0 low-rank part present,
 *           bit 1 residual present, bits 2-5 zero
 *   low-rank part:
 *     u8      k, the rank (1..255)
 *     u8      b, the factor code bits (2..8)
 *     varint  cols, the row length of the tensor
 *     k f32   scales of the columns of U, then k f32 of V (little endian)
 *     u8      value format of the codes (codec/lossy.c)
 *     varint  length of the codes section
 *     codes   (rows + cols) * k codes, U row by row then V row by row,
 *             as a version 1 value section of b-bit codes around m
 *   residual: the rest of the chunk, a version 1 chunk
 *
 * rows is the number of tensor rows the chunk's elements touch, so any
 * chunk decodes alone (its factors are fitted to its own rows). A chunk
 * holds at most n codes, which bounds every allocation by the output size.
 *
 * Reconstruction of element i: acc = low-rank(i) + residual(i) in that
 * order, then W = finite_sum(W_base, acc), except that an element whose
 * acc is exactly zero keeps the base bits (as a dropped element of a
 * version 1 chunk does). The daemon decodes with plain loops, no BLAS:
 * row by row over V transposed, blocks of elements side by side in
 * vectors (GCC vector types, compiled at each level of codec/simd.h), each
 * element's sum in the order above; BF16 blocks without special values
 * round branch-free. A residual that keeps every element (the default
 * add's dense codes) is decoded a block at a time with no positions and
 * no window: the low-rank part is added to the block's deltas where they
 * are (d + s is s + d, bit for bit) and the block is rounded straight
 * from the base into the output. Other residuals add their kept deltas
 * into a window of running sums.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/mix.h"

#include "codec/lossy_i.h"
#include "codec/simd.h"
#include "common/dtype.h"
#include "common/util.h"

#ifdef UDFS_SIMD_X86
#include <immintrin.h>
#endif

#define MIX_LOWRANK 1u
#define MIX_RESIDUAL 2u

uint64_t udfs_lowrank_rows(uint64_t cols, uint64_t first, uint32_t n)
{
	if (!cols || !n)
		return 0;
	return (first + n - 1) / cols - first / cols + 1;
}

void udfs_lowrank_dequant(const uint8_t *codes, uint64_t count, uint32_t k,
			  uint32_t bits, const float *scale, float *out)
{
	int m = (1 << (bits - 1)) - 1;

	for (uint64_t i = 0; i < count; i++)
		for (uint32_t c = 0; c < k; c++)
			out[i * k + c] =
			    (float)((int)codes[i * k + c] - m) * scale[c];
}

/* One row's stretch of the low-rank part: acc[j] += u . v_j for len
 * consecutive columns (v_j = v + j k). The sum of each element runs over c
 * in order from zero, as the format defines it (udfs(5)). */
static void expand_row(const float *u, const float *v, uint32_t k, uint32_t len,
		       float *acc)
{
	for (uint32_t j = 0; j < len; j++, v += k) {
		float s = 0.0f;

		for (uint32_t c = 0; c < k; c++)
			s += u[c] * v[c];
		acc[j] += s;
	}
}

/* Row by row: no division per element. */
void udfs_lowrank_expand(const float *uf, const float *vf, uint32_t k,
			 uint64_t cols, uint64_t first, uint32_t n, float *acc)
{
	uint64_t col = first % cols;

	for (uint32_t j = 0; j < n; uf += k, col = 0) {
		uint32_t len =
		    (uint32_t)UDFS_MIN((uint64_t)(n - j), cols - col);

		expand_row(uf, vf + col * k, k, len, acc + j);
		j += len;
	}
}

/*
 * The hot loops below are written with GCC vector types: a v16f holds 16
 * float32 lanes, and an operation on it is the scalar operation on each
 * lane, the same bits, whatever instructions it becomes. Each loop is
 * compiled at every level of codec/simd.h and picked at run time.
 */
typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* 16 floats at p, unaligned (macros: a vector passed to a function
 * would have its ABI depend on the target). */
#define LOAD16(p)                                                              \
	({                                                                     \
		v16f v_;                                                       \
		memcpy(&v_, (p), sizeof(v_));                                  \
		v_;                                                            \
	})
#define STORE16(p, v)                                                          \
	do {                                                                   \
		v16f w_ = (v);                                                 \
		memcpy((p), &w_, sizeof(w_));                                  \
	} while (0)

/* Elements of one row summed side by side, 64 at a time in four vectors
 * that stay in registers while c runs (four chains of adds in flight). */
#define LR_BLOCK 64

/* expand_row() with V transposed: vt + c * cols is column c of V from
 * this stretch's first column on. Each lane's sum runs over c from zero,
 * as expand_row()'s does. */
ALWAYS_INLINE void expand_row_t_body(const float *u, const float *vt,
				     uint64_t cols, uint32_t k, uint32_t len,
				     float *acc)
{
	uint32_t j = 0;

	for (; j + LR_BLOCK <= len; j += LR_BLOCK) {
		v16f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};

		for (uint32_t c = 0; c < k; c++) {
			const float *vc = vt + c * cols + j;
			float uc = u[c];

			s0 += uc * LOAD16(vc);
			s1 += uc * LOAD16(vc + 16);
			s2 += uc * LOAD16(vc + 32);
			s3 += uc * LOAD16(vc + 48);
		}
		STORE16(acc + j, LOAD16(acc + j) + s0);
		STORE16(acc + j + 16, LOAD16(acc + j + 16) + s1);
		STORE16(acc + j + 32, LOAD16(acc + j + 32) + s2);
		STORE16(acc + j + 48, LOAD16(acc + j + 48) + s3);
	}
	for (; j < len; j++) {
		float s = 0.0f;

		for (uint32_t c = 0; c < k; c++)
			s += u[c] * vt[c * cols + j];
		acc[j] += s;
	}
}

typedef void expand_row_t_fn(const float *u, const float *vt, uint64_t cols,
			     uint32_t k, uint32_t len, float *acc);

static void expand_row_t_base(const float *u, const float *vt, uint64_t cols,
			      uint32_t k, uint32_t len, float *acc)
{
	expand_row_t_body(u, vt, cols, k, len, acc);
}

#ifdef UDFS_SIMD_X86
UDFS_TARGET_AVX2 static void expand_row_t_avx2(const float *u, const float *vt,
					       uint64_t cols, uint32_t k,
					       uint32_t len, float *acc)
{
	expand_row_t_body(u, vt, cols, k, len, acc);
}

UDFS_TARGET_AVX512 static void expand_row_t_avx512(const float *u,
						   const float *vt,
						   uint64_t cols, uint32_t k,
						   uint32_t len, float *acc)
{
	expand_row_t_body(u, vt, cols, k, len, acc);
}
#endif

static expand_row_t_fn *const expand_row_t_at[UDFS_SIMD_LEVELS] = {
    expand_row_t_base,
#ifdef UDFS_SIMD_X86
    expand_row_t_avx2,
    expand_row_t_avx512,
#else
    expand_row_t_base,
    expand_row_t_base,
#endif
};

void udfs_lowrank_expand_t(const float *uf, const float *vt, uint32_t k,
			   uint64_t cols, uint64_t first, uint32_t n,
			   float *acc)
{
	expand_row_t_fn *row = expand_row_t_at[udfs_simd_level()];
	uint64_t col = first % cols;

	for (uint32_t j = 0; j < n; uf += k, col = 0) {
		uint32_t len =
		    (uint32_t)UDFS_MIN((uint64_t)(n - j), cols - col);

		row(uf, vt + col, cols, k, len, acc + j);
		j += len;
	}
}

static void put_f32(uint8_t *p, float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

static float get_f32(const uint8_t *p)
{
	uint32_t u = 0;
	float f;

	for (int i = 0; i < 4; i++)
		u |= (uint32_t)p[i] << (8 * i);
	memcpy(&f, &u, 4);
	return f;
}

/* The value-section parameters of factor codes: lo = -m, step 1, so that a
 * decoded value is c - m exactly. */
static udfs_lossy_params code_params(uint32_t bits)
{
	udfs_lossy_params p = {.mask = UDFS_MASK_NONE,
			       .values = UDFS_VAL_CODES,
			       .bits = (uint8_t)bits,
			       .step = 1.0f,
			       .gain = 1.0f};

	p.lo = -(float)((1 << (bits - 1)) - 1);
	return p;
}

/* Low-rank part of a chunk into a malloc-ed buffer. */
static int encode_lowrank(const udfs_lowrank *lr, uint64_t first, uint32_t n,
			  uint8_t **out, size_t *out_len)
{
	uint64_t rows = udfs_lowrank_rows(lr->cols, first, n);
	uint64_t cnt = (rows + lr->cols) * lr->k;
	udfs_lossy_params cp;
	uint8_t *codes, *sec = NULL, fmt = 0, *buf;
	size_t sec_len = 0, at = 0;
	int ret;

	if (lr->k < 1 || lr->k > 255 || lr->bits < 2 || lr->bits > 8 ||
	    lr->cols < 1 || lr->cols > UINT32_MAX || cnt > n)
		return udfs_error(
		    -EINVAL,
		    "composite chunk: rank %u, %u bits, %llu columns for %u elements",
		    lr->k, lr->bits, (unsigned long long)lr->cols, n);
	cp = code_params(lr->bits);
	codes = udfs_xmalloc(cnt + 1);
	memcpy(codes, lr->u_codes, rows * lr->k);
	memcpy(codes + rows * lr->k, lr->v_codes, lr->cols * lr->k);
	ret = udfs_lossy_values_encode(&cp, 1, (uint32_t)cnt, codes, &sec,
				       &sec_len, &fmt);
	free(codes);
	if (ret < 0)
		return ret;
	buf = udfs_xmalloc(2 + 5 + 8 * (size_t)lr->k + 1 + 5 + sec_len);
	buf[at++] = (uint8_t)lr->k;
	buf[at++] = (uint8_t)lr->bits;
	at += udfs_lossy_put_varint(buf + at, (uint32_t)lr->cols);
	for (uint32_t c = 0; c < lr->k; c++, at += 4)
		put_f32(buf + at, lr->u_scale[c]);
	for (uint32_t c = 0; c < lr->k; c++, at += 4)
		put_f32(buf + at, lr->v_scale[c]);
	buf[at++] = fmt;
	at += udfs_lossy_put_varint(buf + at, (uint32_t)sec_len);
	if (sec_len)
		memcpy(buf + at, sec, sec_len);
	free(sec);
	*out = buf;
	*out_len = at + sec_len;
	return 0;
}

int udfs_mix_encode_chunk(const udfs_lowrank *lr, uint64_t first, uint32_t n,
			  const void *res, size_t res_len, void **out,
			  size_t *out_len)
{
	uint8_t *lrb = NULL, *buf;
	size_t lr_len = 0;
	int ret = 0;

	if (lr)
		ret = encode_lowrank(lr, first, n, &lrb, &lr_len);
	if (ret < 0)
		return ret;
	if (res && (res_len < 1 || ((const uint8_t *)res)[0] >> 6 != 1)) {
		free(lrb);
		return udfs_error(
		    -EINVAL,
		    "composite chunk: residual is not a version 1 chunk");
	}
	buf = udfs_xmalloc(1 + lr_len + (res ? res_len : 0));
	buf[0] = (uint8_t)(UDFS_LOSSY_MIX_VERSION << 6 |
			   (lr ? MIX_LOWRANK : 0) | (res ? MIX_RESIDUAL : 0));
	if (lr_len)
		memcpy(buf + 1, lrb, lr_len);
	if (res)
		memcpy(buf + 1 + lr_len, res, res_len);
	free(lrb);
	*out = buf;
	*out_len = 1 + lr_len + (res ? res_len : 0);
	return 0;
}

/* Scales must be finite: a damaged one is an error, never garbage. */
static int read_scales(const uint8_t *in, uint32_t k, float *s)
{
	for (uint32_t c = 0; c < k; c++) {
		s[c] = get_f32(in + 4 * (size_t)c);
		if (!isfinite(s[c]))
			return udfs_error(
			    -EIO, "composite chunk: scale %u not finite", c);
	}
	return 0;
}

/* Elements summed at once (low-rank part plus residual) before rounding:
 * the window lives on the stack, so a chunk needs no array of its size. */
#define MIX_WINDOW 2048

/* A composite chunk being decoded: its low-rank factors (f NULL when it
 * has none) and the window [w0, w1) of elements whose sums acc holds. */
struct mix_dec {
	int dtype;
	unsigned es;
	uint64_t first, rows, cols;
	uint32_t n, k, w0, w1;
	bool windowed; /* a window was opened (kept positions) */
	bool runs;     /* residual_run() had every element */
	const uint8_t *base;
	uint8_t *out;
	const float *f;	 /* U (rows x k) then V (cols x k), scaled */
	const float *vt; /* V transposed (k x cols), or NULL */
	float acc[MIX_WINDOW];
};

/* V transposed for udfs_lowrank_expand_t, when it takes at most this
 * many floats of scratch (1 MiB); a larger V uses udfs_lowrank_expand. */
#define VT_MAX (256u << 10)

/* v (cols x k) transposed into vt (k x cols); vt. */
static const float *transpose(const float *v, uint64_t cols, uint32_t k,
			      float *vt)
{
	for (uint64_t col = 0; col < cols; col++)
		for (uint32_t c = 0; c < k; c++)
			vt[c * cols + col] = v[col * k + c];
	return vt;
}

/* Decode the low-rank part at *at into m->f (per-thread scratch). */
static int decode_lowrank(const uint8_t *in, size_t len, size_t *at,
			  struct mix_dec *m)
{
	uint32_t k, bits, cols, sec_len;
	uint64_t cnt, vt_len;
	unsigned fmt;
	udfs_lossy_params cp;
	float scale[2 * 255], *f;
	int mq, ret;

	if (len - *at < 2)
		return udfs_error(-EIO, "composite chunk: truncated");
	k = in[(*at)++];
	bits = in[(*at)++];
	if (k < 1 || bits < 2 || bits > 8 ||
	    !udfs_lossy_get_varint(in, len, at, &cols) || cols < 1)
		return udfs_error(-EIO, "composite chunk: bad low-rank header");
	m->k = k;
	m->cols = cols;
	m->rows = udfs_lowrank_rows(cols, m->first, m->n);
	cnt = (m->rows + cols) * (uint64_t)k;
	if (cnt > m->n || len - *at < 8 * (size_t)k + 1)
		return udfs_error(-EIO, "composite chunk: bad low-rank header");
	ret = read_scales(in + *at, 2 * k, scale);
	if (ret < 0)
		return ret;
	*at += 8 * (size_t)k;
	fmt = in[(*at)++];
	if (fmt > 7 || !udfs_lossy_get_varint(in, len, at, &sec_len) ||
	    sec_len > len - *at)
		return udfs_error(-EIO, "composite chunk: bad codes header");
	vt_len = (uint64_t)cols * k <= VT_MAX ? (uint64_t)cols * k : 0;
	f = udfs_scratch(UDFS_SCRATCH_MIX, (cnt + 1 + vt_len) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	cp = code_params(bits);
	ret = udfs_lossy_values_decode(&cp, m->dtype, fmt, in + *at, sec_len,
				       (uint32_t)cnt, f);
	if (ret < 0)
		return ret;
	*at += sec_len;
	mq = (1 << (bits - 1)) - 1;
	for (uint64_t i = 0; i < cnt; i++) {
		const float *s = i < m->rows * k ? scale : scale + k;

		/* Code 2^b - 1 is never written: its value mq + 1 is not
		 * on the symmetric grid. */
		if (f[i] > (float)mq)
			return udfs_error(
			    -EIO, "composite chunk: factor code out of range");
		f[i] = f[i] * s[i % k];
	}
	m->f = f;
	m->vt =
	    vt_len ? transpose(f + m->rows * k, cols, k, f + cnt + 1) : NULL;
	return 0;
}

/* acc[0..len) += the low-rank part of the chunk's elements at .. at +
 * len - 1 (none when the chunk has none). */
static void lowrank_add(const struct mix_dec *m, uint32_t at, uint32_t len,
			float *acc)
{
	uint64_t e0 = m->first + at;
	const float *u;

	if (!m->f)
		return;
	u = m->f + (e0 / m->cols - m->first / m->cols) * m->k;
	if (m->vt)
		udfs_lowrank_expand_t(u, m->vt, m->k, m->cols, e0, len, acc);
	else
		udfs_lowrank_expand(u, m->f + m->rows * m->k, m->k, m->cols, e0,
				    len, acc);
}

/* Start the window at element w0: zero sums plus the low-rank part. */
static void window_open(struct mix_dec *m, uint32_t w0)
{
	m->w0 = w0;
	m->w1 = (uint32_t)UDFS_MIN((uint64_t)m->n, (uint64_t)w0 + MIX_WINDOW);
	m->windowed = true;
	memset(m->acc, 0, (size_t)(m->w1 - w0) * sizeof(m->acc[0]));
	lowrank_add(m, w0, m->w1 - w0, m->acc);
}

/* round_bf16 of elements from .. to - 1, one at a time. */
static void round_bf16_each(uint8_t *out, const uint8_t *base, const float *acc,
			    uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++) {
		uint16_t h;

		memcpy(&h, base + 2 * (size_t)i, 2);
		if (acc[i] != 0.0f)
			h = udfs_lossy_bf16_add(h, acc[i]);
		memcpy(out + 2 * (size_t)i, &h, 2);
	}
}

/* round_bf16 over LR_BLOCK elements whose sums are all finite and below
 * the largest BF16 (then udfs_lossy_bf16_add is a plain round to nearest
 * even), without a branch; base may be out. false, and out unchanged,
 * when an element needs the general case. */
ALWAYS_INLINE bool round_block_bf16(uint8_t *out, const uint8_t *base,
				    const float *acc)
{
	v16h r[4];
	v16u special = {0};
	uint32_t any = 0;

	for (int q = 0; q < 4; q++) {
		v16h h;
		v16f a;
		v16u hu, wu, keep;

		memcpy(&h, base + 32 * q, sizeof(h));
		memcpy(&a, acc + 16 * q, sizeof(a));
		hu = __builtin_convertvector(h, v16u);
		wu = (v16u)((v16f)(hu << 16) + a);
		special |= (v16u)((wu & 0x7fffffffu) >= 0x7f7f8000u);
		wu = (wu + 0x7fffu + (wu >> 16 & 1u)) >> 16;
		keep = (v16u)(a == 0.0f);
		r[q] =
		    __builtin_convertvector((hu & keep) | (wu & ~keep), v16h);
	}
	for (int t = 0; t < 16; t++)
		any |= special[t];
	if (any)
		return false;
	memcpy(out, r, sizeof(r));
	return true;
}

/* out = base + acc, BF16, as udfs_mix_round_bf16 (base may be out). */
ALWAYS_INLINE void round_bf16_body(uint8_t *out, const uint8_t *base,
				   const float *acc, uint32_t n)
{
	uint32_t i = 0;

	for (; i + LR_BLOCK <= n; i += LR_BLOCK)
		if (!round_block_bf16(out + 2 * (size_t)i, base + 2 * (size_t)i,
				      acc + i))
			round_bf16_each(out, base, acc, i, i + LR_BLOCK);
	round_bf16_each(out, base, acc, i, n);
}

typedef void round_bf16_fn(uint8_t *out, const uint8_t *base, const float *acc,
			   uint32_t n);

static void round_bf16_base(uint8_t *out, const uint8_t *base, const float *acc,
			    uint32_t n)
{
	round_bf16_body(out, base, acc, n);
}

#ifdef UDFS_SIMD_X86
UDFS_TARGET_AVX2 static void round_bf16_avx2(uint8_t *out, const uint8_t *base,
					     const float *acc, uint32_t n)
{
	round_bf16_body(out, base, acc, n);
}

/*
 * round_bf16_body in AVX-512 instructions: the compiler made the generic
 * block's 16-bit results through a permute and a copy on the stack, and
 * its special-value test through a vector reduction. Here the blocks'
 * sums are tested with mask registers, and the results are narrowed
 * (vpmovdw), blended over the base where the sum is zero and stored
 * straight to out: the same bits. All four loads of a block come before
 * its stores, for base == out.
 */
UDFS_TARGET_AVX512 static void round_bf16_avx512(uint8_t *out,
						 const uint8_t *base,
						 const float *acc, uint32_t n)
{
	const __m512i abs = _mm512_set1_epi32(0x7fffffff);
	const __m512i top = _mm512_set1_epi32(0x7f7f8000);
	const __m512i half = _mm512_set1_epi32(0x7fff);
	const __m512i one = _mm512_set1_epi32(1);
	uint32_t i = 0;

	for (; i + LR_BLOCK <= n; i += LR_BLOCK) {
		__m256i h[4];
		__m512i w[4];
		__mmask16 keep[4], special = 0;

		for (int q = 0; q < 4; q++) {
			__m512 a = _mm512_loadu_ps(acc + i + 16 * q);
			__m512i u;

			h[q] = _mm256_loadu_si256(
			    (const __m256i *)(base + 2 * ((size_t)i + 16 * q)));
			u = _mm512_castps_si512(
			    _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(
					      _mm512_cvtepu16_epi32(h[q]), 16)),
					  a));
			special |= _mm512_cmpge_epu32_mask(
			    _mm512_and_si512(u, abs), top);
			keep[q] = _mm512_cmpeq_ps_mask(a, _mm512_setzero_ps());
			w[q] = _mm512_srli_epi32(
			    _mm512_add_epi32(
				_mm512_add_epi32(u, half),
				_mm512_and_si512(_mm512_srli_epi32(u, 16),
						 one)),
			    16);
		}
		if (special) {
			round_bf16_each(out, base, acc, i, i + LR_BLOCK);
			continue;
		}
		for (int q = 0; q < 4; q++)
			_mm256_storeu_si256(
			    (__m256i *)(out + 2 * ((size_t)i + 16 * q)),
			    _mm256_mask_blend_epi16(
				keep[q], _mm512_cvtepi32_epi16(w[q]), h[q]));
	}
	round_bf16_each(out, base, acc, i, n);
}
#endif

static round_bf16_fn *const round_bf16_at[UDFS_SIMD_LEVELS] = {
    round_bf16_base,
#ifdef UDFS_SIMD_X86
    round_bf16_avx2,
    round_bf16_avx512,
#else
    round_bf16_base,
    round_bf16_base,
#endif
};

static void round_bf16(uint8_t *out, const uint8_t *base, const float *acc,
		       uint32_t n)
{
	round_bf16_at[udfs_simd_level()](out, base, acc, n);
}

void udfs_mix_round_bf16(void *out_bf16, const float *acc, uint32_t n)
{
	round_bf16(out_bf16, out_bf16, acc, n);
}

/* Elements at .. at + len - 1 of the output: W = W_base + acc, one
 * rounding; elements with acc == 0 keep the base bits exactly. */
static void apply_sums(const struct mix_dec *m, uint32_t at, const float *acc,
		       uint32_t len)
{
	const uint8_t *base = m->base + (size_t)at * m->es;
	uint8_t *out = m->out + (size_t)at * m->es;

	if (m->dtype == UDFS_DT_BF16) {
		round_bf16(out, base, acc, len);
		return;
	}
	if (out != base)
		memcpy(out, base, (size_t)len * m->es);
	for (uint32_t i = 0; i < len; i++) {
		float b;

		if (acc[i] == 0.0f)
			continue;
		b = udfs_dtype_load_f32(m->dtype, base, i);
		udfs_dtype_store_f32(
		    m->dtype, out, i,
		    udfs_lossy_finite_sum(m->dtype, b, acc[i]));
	}
}

static void window_close(struct mix_dec *m)
{
	apply_sums(m, m->w0, m->acc, m->w1 - m->w0);
}

/* acc[0..k) += d[0..k), in blocks the compiler vectorizes. */
static void add_run(float *restrict acc, const float *restrict d, uint32_t k)
{
	const float *end = d + k;

	for (; end - d >= LR_BLOCK; acc += LR_BLOCK, d += LR_BLOCK)
		for (int t = 0; t < LR_BLOCK; t++)
			acc[t] += d[t];
	for (; d < end; acc++, d++)
		*acc += *d;
}

/* The residual's kept deltas, ascending: windows before them are done. A
 * block of consecutive positions inside the window (a dense residual) is
 * one plain loop. */
static int residual_kept(void *ctx, const uint32_t *pos, const float *d,
			 uint32_t k)
{
	struct mix_dec *m = ctx;

	if (!m->windowed)
		window_open(m, 0);
	if (k && pos[k - 1] - pos[0] == k - 1 && pos[0] >= m->w0 &&
	    pos[k - 1] < m->w1) {
		add_run(m->acc + (pos[0] - m->w0), d, k);
		return 0;
	}
	for (uint32_t j = 0; j < k; j++) {
		while (pos[j] >= m->w1) {
			window_close(m);
			window_open(m, m->w1);
		}
		m->acc[pos[j] - m->w0] += d[j];
	}
	return 0;
}

/* A residual with every element kept, a block at a time: the low-rank
 * part is added to the deltas where they are and the block is done, with
 * no window and no positions. d + s is s + d: the sum of udfs(5). */
static int residual_run(void *ctx, uint32_t at, float *d, uint32_t k)
{
	struct mix_dec *m = ctx;

	m->runs = true;
	lowrank_add(m, at, k, d);
	apply_sums(m, at, d, k);
	return 0;
}

/* A composite (version 2) chunk. */
static int decode_mix(const udfs_lossy_params *p, int dtype, uint64_t first,
		      uint32_t n, const void *in, size_t in_len,
		      const void *base, void *out)
{
	const uint8_t *buf = in;
	struct mix_dec m = {.dtype = dtype,
			    .es = udfs_dtype_size(dtype),
			    .first = first,
			    .n = n,
			    .base = base,
			    .out = out};
	unsigned flags;
	size_t at = 1;
	int ret = 0;

	if (in_len < 1 || buf[0] >> 6 != UDFS_LOSSY_MIX_VERSION ||
	    (buf[0] & 0x3c))
		return udfs_error(-EIO, "composite chunk: bad format byte");
	flags = buf[0] & 3u;
	if (flags & MIX_LOWRANK)
		ret = decode_lowrank(buf, in_len, &at, &m);
	if (ret < 0)
		return ret;
	if (flags & MIX_RESIDUAL)
		ret = udfs_lossy_foreach(p, dtype, first, n, buf + at,
					 in_len - at, residual_kept,
					 residual_run, &m);
	else if (at != in_len)
		ret = udfs_error(-EIO,
				 "composite chunk: %zu bytes after its parts",
				 in_len - at);
	if (ret < 0 || m.runs) /* runs: every element is done */
		return ret;
	if (!m.windowed)
		window_open(&m, 0);
	while (ret == 0) {
		window_close(&m);
		if (m.w1 >= n)
			break;
		window_open(&m, m.w1);
	}
	return ret;
}

/* Every chunk version enters here: a composite chunk holds a version 1
 * chunk, so this file stands above codec/lossy.c and not beside it. */
int udfs_lossy_decode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const void *in,
			    size_t in_len, const void *base, void *out)
{
	const uint8_t *buf = in;

	if (in_len >= 1 && buf[0] >> 6 == UDFS_LOSSY_MIX_VERSION)
		return decode_mix(p, dtype, first, n, in, in_len, base, out);
	return udfs_lossy_decode_v1(p, dtype, first, n, in, in_len, base, out);
}

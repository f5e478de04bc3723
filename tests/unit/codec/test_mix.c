// SPDX-License-Identifier: MIT
/*
 * Unit tests of the composite chunks of the adaptive method
 * (src/codec/mix.c): round trips of a low-rank part plus a version 1
 * residual for every dtype, chunks that start and end inside a row,
 * compared bit for bit with the reconstruction computed directly;
 * determinism of the bytes; rejection of every truncation and of damaged
 * headers with -EIO; bad encoder input; the size of the low-rank part
 * against its code count, with V transposed or not (a large V); BF16 edge
 * values (NaN, infinities, -0, the largest finite, overflowing sums)
 * decoded as the generic rounding does; udfs_lowrank_expand_t against
 * udfs_lowrank_expand and udfs_mix_round_bf16 against udfs_lossy_bf16_add,
 * bit for bit; residuals with every element kept (the default add's);
 * and all of it again at each vector level of codec/simd.h the CPU has,
 * every level giving the reference bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "codec/lossy_i.h"
#include "codec/mix.h"
#include "codec/simd.h"
#include "common/dtype.h"
#include "common/util.h"

static uint64_t rs = 0x2545f4914f6cdd1dULL;

static uint64_t xr(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static double unif(void) { return (double)(xr() >> 11) / 9007199254740992.0; }

/* One composite chunk under test: a rank-k part over the rows the chunk
 * touches, and a residual of b-bit codes on an explicit mask. */
struct mix {
	int dtype;
	uint64_t cols, first, rows;
	uint32_t n, k, bits, n_kept;
	uint8_t *uc, *vc;
	float us[8], vs[8];
	udfs_lossy_params p;
	uint32_t *kept;
	uint8_t *codes;
	uint8_t *base, *want;
};

/* dense: a residual code for every element (no mask), as the default
 * add writes; else an explicit mask keeping about a fifth. */
static void mix_init(struct mix *m, int dtype, uint64_t cols, uint64_t first,
		     uint32_t n, uint32_t k, uint32_t bits, bool dense)
{
	unsigned es = udfs_dtype_size(dtype);
	uint32_t top = (1u << bits) - 2; /* 2m: the highest code written */
	float *uf, *vf, *acc;

	*m = (struct mix){.dtype = dtype,
			  .cols = cols,
			  .first = first,
			  .n = n,
			  .k = k,
			  .bits = bits};
	m->rows = udfs_lowrank_rows(cols, first, n);
	m->uc = malloc(m->rows * k + 1);
	m->vc = malloc(cols * k + 1);
	for (uint64_t i = 0; i < m->rows * k; i++)
		m->uc[i] = (uint8_t)(xr() % (top + 1));
	for (uint64_t i = 0; i < cols * k; i++)
		m->vc[i] = (uint8_t)(xr() % (top + 1));
	for (uint32_t c = 0; c < k; c++) {
		m->us[c] = (float)(0.01 * (unif() + 0.1));
		m->vs[c] = (float)(0.01 * (unif() + 0.1));
	}
	m->p = (udfs_lossy_params){.mask = dense ? UDFS_MASK_NONE
						 : UDFS_MASK_EXPLICIT,
				   .values = UDFS_VAL_CODES,
				   .bits = 3,
				   .lo = -0.003f,
				   .step = 0.001f,
				   .gain = 1.0f,
				   .rate = dense ? 0.0 : 0.8};
	m->kept = malloc(((size_t)n + 1) * sizeof(uint32_t));
	m->codes = malloc((size_t)n + 1);
	for (uint32_t i = 0; i < n; i++)
		if (dense || unif() < 0.2) {
			m->codes[m->n_kept] = (uint8_t)(xr() % 8);
			m->kept[m->n_kept++] = i;
		}
	m->base = malloc((size_t)n * es);
	m->want = malloc((size_t)n * es);
	for (uint32_t i = 0; i < n; i++)
		udfs_dtype_store_f32(dtype, m->base, i,
				     (float)(unif() - 0.5) * 0.1f);
	/* The reference: low-rank, then residual, one rounding. */
	uf = malloc(m->rows * k * sizeof(float) + 4);
	vf = malloc(cols * k * sizeof(float) + 4);
	acc = calloc(n, sizeof(float));
	udfs_lowrank_dequant(m->uc, m->rows, k, bits, m->us, uf);
	udfs_lowrank_dequant(m->vc, cols, k, bits, m->vs, vf);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t e = first + i, r = e / cols - first / cols;
		float s = 0;

		for (uint32_t c = 0; c < k; c++)
			s += uf[r * k + c] * vf[(e % cols) * k + c];
		acc[i] = s;
	}
	for (uint32_t j = 0; j < m->n_kept; j++)
		acc[m->kept[j]] +=
		    m->p.gain * (m->p.lo + (float)m->codes[j] * m->p.step);
	for (uint32_t i = 0; i < n; i++) {
		float b = udfs_dtype_load_f32(dtype, m->base, i);

		udfs_dtype_store_f32(dtype, m->want, i, b + acc[i]);
	}
	free(uf);
	free(vf);
	free(acc);
}

static void mix_free(struct mix *m)
{
	free(m->uc);
	free(m->vc);
	free(m->kept);
	free(m->codes);
	free(m->base);
	free(m->want);
}

static int mix_encode(const struct mix *m, void **out, size_t *len)
{
	udfs_lowrank lr = {.k = m->k,
			   .bits = m->bits,
			   .cols = m->cols,
			   .u_codes = m->uc,
			   .v_codes = m->vc,
			   .u_scale = m->us,
			   .v_scale = m->vs};
	void *res = NULL;
	size_t res_len = 0;
	int err;

	err = udfs_lossy_encode_chunk(&m->p, m->dtype, m->first, m->n,
				      m->p.mask == UDFS_MASK_NONE ? NULL
								  : m->kept,
				      m->n_kept, m->codes, &res, &res_len);
	if (err)
		return err;
	err =
	    udfs_mix_encode_chunk(&lr, m->first, m->n, res, res_len, out, len);
	free(res);
	return err;
}

static int mix_decode(const struct mix *m, const void *in, size_t len,
		      void *out)
{
	int err = udfs_lossy_decode_chunk(&m->p, m->dtype, m->first, m->n, in,
					  len, m->base, out);

	if (err)
		udfs_error_clear();
	return err;
}

static void test_roundtrip(int dtype, uint64_t cols, uint64_t first, uint32_t n,
			   uint32_t k, uint32_t bits, bool dense)
{
	struct mix m;
	void *enc = NULL, *enc2 = NULL;
	size_t len = 0, len2 = 0;
	unsigned es = udfs_dtype_size(dtype);
	uint8_t *out;

	mix_init(&m, dtype, cols, first, n, k, bits, dense);
	out = malloc((size_t)n * es);
	CHECK_EQ_INT(mix_encode(&m, &enc, &len), 0);
	CHECK_EQ_INT(mix_encode(&m, &enc2, &len2), 0);
	/* Same input, same bytes. */
	CHECK(len == len2 && memcmp(enc, enc2, len) == 0);
	CHECK_EQ_INT(mix_decode(&m, enc, len, out), 0);
	CHECK(memcmp(out, m.want, (size_t)n * es) == 0);
	/* in place, as the daemon decodes: the base is the output buffer */
	memcpy(out, m.base, (size_t)n * es);
	CHECK_EQ_INT(
	    udfs_lossy_decode_chunk(&m.p, dtype, first, n, enc, len, out, out),
	    0);
	CHECK(memcmp(out, m.want, (size_t)n * es) == 0);
	/* The codes section holds (rows + cols) * k codes of b bits at most
	 * (raw), or 3% more when rANS-coded (value format 4, chosen for its
	 * speed), plus the header: 1 + 2 + 5 + 8k + 1 + 5 bytes. */
	{
		void *lo = NULL;
		size_t lo_len = 0;
		udfs_lowrank lr = {.k = k,
				   .bits = bits,
				   .cols = cols,
				   .u_codes = m.uc,
				   .v_codes = m.vc,
				   .u_scale = m.us,
				   .v_scale = m.vs};

		CHECK_EQ_INT(
		    udfs_mix_encode_chunk(&lr, first, n, NULL, 0, &lo, &lo_len),
		    0);
		CHECK(lo_len <=
		      14 + 8 * (size_t)k +
			  ((m.rows + cols) * k * bits + 7) / 8 * 103 / 100);
		free(lo);
	}
	free(enc);
	free(enc2);
	free(out);
	mix_free(&m);
}

/* Every truncation is -EIO, so are damaged header fields; decoding a
 * damaged chunk never writes past out (ASan) and never returns other
 * than 0 or -EIO. */
static void test_damaged(void)
{
	struct mix m;
	void *enc = NULL;
	size_t len = 0;
	uint8_t *out, *bad;

	mix_init(&m, UDFS_DT_BF16, 48, 30, 300, 3, 6, false);
	out = malloc(300 * 2);
	CHECK_EQ_INT(mix_encode(&m, &enc, &len), 0);
	bad = malloc(len + 8);
	for (size_t l = 0; l < len; l++) {
		memcpy(bad, enc, l);
		CHECK_EQ_INT(mix_decode(&m, bad, l, out), -EIO);
	}
	/* a byte appended */
	memcpy(bad, enc, len);
	bad[len] = 0x55;
	CHECK_EQ_INT(mix_decode(&m, bad, len + 1, out), -EIO);
	/* reserved format bits, rank 0, 9 factor bits, no columns */
	memcpy(bad, enc, len);
	bad[0] |= 0x04;
	CHECK_EQ_INT(mix_decode(&m, bad, len, out), -EIO);
	memcpy(bad, enc, len);
	bad[1] = 0;
	CHECK_EQ_INT(mix_decode(&m, bad, len, out), -EIO);
	memcpy(bad, enc, len);
	bad[2] = 9;
	CHECK_EQ_INT(mix_decode(&m, bad, len, out), -EIO);
	memcpy(bad, enc, len);
	bad[3] = 0;
	CHECK_EQ_INT(mix_decode(&m, bad, len, out), -EIO);
	/* a scale that is not finite */
	memcpy(bad, enc, len);
	memset(bad + 4, 0xff, 4);
	CHECK_EQ_INT(mix_decode(&m, bad, len, out), -EIO);
	/* every single-byte change decodes or fails cleanly */
	for (size_t i = 0; i < len; i++) {
		int r;

		memcpy(bad, enc, len);
		bad[i] ^= (uint8_t)(1u << (i % 8));
		r = mix_decode(&m, bad, len, out);
		CHECK(r == 0 || r == -EIO);
	}
	free(bad);
	free(enc);
	free(out);
	mix_free(&m);
}

static void test_bad_encode(void)
{
	uint8_t codes[64] = {0};
	float sc[2] = {1, 1};
	udfs_lowrank lr = {.k = 2,
			   .bits = 4,
			   .cols = 8,
			   .u_codes = codes,
			   .v_codes = codes,
			   .u_scale = sc,
			   .v_scale = sc};
	void *out = NULL;
	size_t len = 0;
	uint8_t v1 = 0x40;

	/* (rows + cols) * k codes must fit in the chunk's n elements */
	CHECK_EQ_INT(udfs_mix_encode_chunk(&lr, 0, 16, NULL, 0, &out, &len),
		     -EINVAL);
	udfs_error_clear();
	lr.bits = 1;
	CHECK_EQ_INT(udfs_mix_encode_chunk(&lr, 0, 64, NULL, 0, &out, &len),
		     -EINVAL);
	udfs_error_clear();
	/* a residual that is not a version 1 chunk */
	v1 = 0x80;
	CHECK_EQ_INT(udfs_mix_encode_chunk(NULL, 0, 64, &v1, 1, &out, &len),
		     -EINVAL);
	udfs_error_clear();
	/* neither part: every element keeps its base bits */
	CHECK_EQ_INT(udfs_mix_encode_chunk(NULL, 0, 64, NULL, 0, &out, &len),
		     0);
	CHECK_EQ_INT(len, 1);
	{
		udfs_lossy_params p = {.values = UDFS_VAL_SIGN, .gain = 1};
		uint16_t base[64], rec[64];

		for (int i = 0; i < 64; i++)
			base[i] = (uint16_t)(0x8000u | (unsigned)i);
		CHECK_EQ_INT(udfs_lossy_decode_chunk(&p, UDFS_DT_BF16, 0, 64,
						     out, len, base, rec),
			     0);
		CHECK(memcmp(base, rec, sizeof(base)) == 0);
	}
	free(out);
}

/* udfs_lowrank_expand_t gives the bits of udfs_lowrank_expand: rows
 * longer and shorter than a tile, chunks starting and ending inside a
 * row, values of mixed magnitudes (any reordering of the sums shows). */
static void test_expand_t(uint64_t cols, uint64_t first, uint32_t n, uint32_t k)
{
	uint64_t rows = udfs_lowrank_rows(cols, first, n);
	float *uf = malloc(rows * k * sizeof(float));
	float *vf = malloc(cols * k * sizeof(float));
	float *vt = malloc(cols * k * sizeof(float));
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));

	for (uint64_t i = 0; i < rows * k; i++)
		uf[i] = (float)((unif() - 0.5) * pow(10, 4 * unif() - 2));
	for (uint64_t i = 0; i < cols * k; i++)
		vf[i] = (float)((unif() - 0.5) * pow(10, 4 * unif() - 2));
	for (uint64_t j = 0; j < cols; j++)
		for (uint32_t c = 0; c < k; c++)
			vt[c * cols + j] = vf[j * k + c];
	for (uint32_t j = 0; j < n; j++)
		a[j] = b[j] = (float)(unif() - 0.5);
	udfs_lowrank_expand(uf, vf, k, cols, first, n, a);
	udfs_lowrank_expand_t(uf, vt, k, cols, first, n, b);
	CHECK(memcmp(a, b, n * sizeof(float)) == 0);
	free(uf);
	free(vf);
	free(vt);
	free(a);
	free(b);
}

/* The residual's deltas by position (udfs_lossy_foreach_kept callback). */
static int collect(void *ctx, const uint32_t *pos, const float *d, uint32_t k)
{
	float *acc = ctx;

	for (uint32_t j = 0; j < k; j++)
		acc[pos[j]] += d[j];
	return 0;
}

/* A BF16 composite chunk over edge-value bases, against the generic
 * reconstruction: acc == 0 keeps the base bits, else one finite sum. */
static void test_bf16_edges(void)
{
	static const uint16_t edge[] = {0x7fc1, 0xff81, 0x7f80, 0xff80,
					0x7f7f, 0xff7f, 0x8000, 0x0000,
					0x0001, 0x8001, 0x3f80, 0xbf80};
	enum { N = 384 };
	udfs_lossy_params p = {.mask = UDFS_MASK_NONE,
			       .values = UDFS_VAL_CODES,
			       .bits = 3,
			       .lo = -3e38f,
			       .step = 1e38f,
			       .gain = 1.0f};
	uint16_t base[N], want[N], got[N];
	uint8_t codes[N];
	float acc[N] = {0};
	void *res = NULL, *chunk = NULL;
	size_t res_len = 0, len = 0;

	for (int i = 0; i < N; i++) {
		base[i] = edge[i % 12];
		codes[i] = (uint8_t)(i / 12 % 8); /* code 3: a zero delta */
	}
	CHECK_EQ_INT(udfs_lossy_encode_chunk(&p, UDFS_DT_BF16, 0, N, NULL, N,
					     codes, &res, &res_len),
		     0);
	CHECK_EQ_INT(
	    udfs_mix_encode_chunk(NULL, 0, N, res, res_len, &chunk, &len), 0);
	CHECK_EQ_INT(udfs_lossy_foreach_kept(&p, UDFS_DT_BF16, 0, N, res,
					     res_len, collect, acc),
		     0);
	for (int i = 0; i < N; i++) {
		float b = udfs_dtype_load_f32(UDFS_DT_BF16, base, i);

		want[i] = base[i];
		if (acc[i] != 0.0f)
			udfs_dtype_store_f32(
			    UDFS_DT_BF16, want, i,
			    udfs_lossy_finite_sum(UDFS_DT_BF16, b, acc[i]));
	}
	CHECK_EQ_INT(udfs_lossy_decode_chunk(&p, UDFS_DT_BF16, 0, N, chunk, len,
					     base, got),
		     0);
	CHECK(memcmp(got, want, sizeof(want)) == 0);
	free(res);
	free(chunk);
}

/* udfs_mix_round_bf16 against udfs_lossy_bf16_add element by element:
 * sums of every kind (zero, -0, tiny, overflowing, NaN, infinite) at
 * random places, one element in `every`, lengths around the vector
 * blocks (rare ones leave most blocks to the vector path). */
static void test_round_bf16(uint32_t n, unsigned every)
{
	static const float odd[] = {0.0f,   -0.0f,    1e-40f,	 3e38f,
				    -3e38f, INFINITY, -INFINITY, NAN};
	uint16_t *base = malloc(n * 2 + 2), *want = malloc(n * 2 + 2);
	uint16_t *got = malloc(n * 2 + 2);
	float *acc = calloc(n + 1, sizeof(float));

	for (uint32_t i = 0; i < n; i++) {
		base[i] = (uint16_t)xr();
		acc[i] = xr() % every ? (float)((unif() - 0.5) * 1e-2)
				      : odd[xr() % 8];
		want[i] = acc[i] != 0.0f ? udfs_lossy_bf16_add(base[i], acc[i])
					 : base[i];
	}
	memcpy(got, base, n * 2);
	udfs_mix_round_bf16(got, acc, n);
	CHECK(memcmp(got, want, n * 2) == 0);
	free(base);
	free(want);
	free(got);
	free(acc);
}

/* Everything whose loops have vector versions, at the level in force. */
static void test_level(void)
{
	static const int dts[] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	static const uint32_t lens[] = {1,  15,	 16,  63,   64,
					65, 127, 200, 1000, 20000};

	for (int d = 0; d < 3; d++) {
		test_roundtrip(dts[d], 64, 0, 64 * 40, 4, 4, false);
		/* starts and ends inside a row */
		test_roundtrip(dts[d], 50, 37, 1000, 3, 8, false);
		test_roundtrip(dts[d], 7, 3, 200, 1, 2, false);
		/* many windows of the decoder's running sums */
		test_roundtrip(dts[d], 1000, 5, 20000, 2, 4, false);
		/* every element kept: blocks without positions, rows
		 * shorter and longer than a vector block */
		test_roundtrip(dts[d], 1000, 5, 20000, 8, 4, true);
		test_roundtrip(dts[d], 50, 37, 3001, 3, 8, true);
		test_roundtrip(dts[d], 7, 3, 200, 1, 2, true);
	}
	/* a V too large to transpose (cols * k > 2^18 floats) */
	test_roundtrip(UDFS_DT_BF16, 70000, 3, 400000, 4, 4, false);
	test_roundtrip(UDFS_DT_BF16, 70000, 3, 300000, 4, 4, true);
	test_expand_t(1000, 5, 20000, 7);
	test_expand_t(300, 299, 1201, 32);
	test_expand_t(7, 3, 200, 1);
	test_expand_t(256, 0, 4 * 256, 64);
	test_expand_t(1024, 1000, 5000, 8);
	test_bf16_edges();
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		test_round_bf16(lens[i], 16);
		test_round_bf16(lens[i], 4096);
	}
}

int main(void)
{
	test_damaged();
	test_bad_encode();
	/* Each vector level the CPU has gives the reference bytes (a CPU
	 * without a level runs the tests of the levels below it). */
	for (int l = 0; l < UDFS_SIMD_LEVELS; l++) {
		udfs_simd_cap(l);
		if (udfs_simd_level() == l)
			test_level();
		else
			fprintf(stderr, "test_mix: no vector level %d here\n",
				l);
	}
	udfs_simd_cap(-1);
	CHECK_DONE();
}

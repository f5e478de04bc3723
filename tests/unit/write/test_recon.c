// SPDX-License-Identifier: MIT
/*
 * Unit tests of the add's lossy tensor path (src/write/plan_lossy.c):
 * udfs_lossy_tensor_recon must give, chunk by chunk, the bytes a reader
 * decodes from the chunk written (the add's error figures come from it
 * instead of a decode), for every dtype and value kind, with sums that
 * saturate in F16, and for the adaptive method's composite chunks
 * (udfs_mix_tensor_recon); and a tensor prepared on several threads (parallel
 * slices, the group-wise mask walked while chunks are encoded) must give
 * the same chunks as on one; a source changed since the plan is -EIO.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec/lossy.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "format/model.h"
#include "write/add_i.h"
#include "write/ultradelta.h"

static uint64_t rs = 0x9e3779b97f4a7c15ULL;

static double unif(void)
{
	return (double)(udfs_splitmix64(&rs) >> 11) / 9007199254740992.0;
}

/* Base and fine-tune of n elements of dtype; in F16 and BF16 a few base
 * weights near the top of the range, where gain * delta saturates. */
static void make_pair(int dtype, uint64_t n, void *base, void *cur)
{
	for (uint64_t i = 0; i < n; i++) {
		float b = (float)(unif() - 0.5) * 0.04f;
		float d = (float)(unif() - 0.5) * 0.004f;

		if (i % 9973 == 5) /* outliers: a wide quantization range */
			d *= 40;
		if (dtype == UDFS_DT_F16 && i % 7919 == 3) {
			b = 65400.0f;
			d = 100.0f;
		}
		if (dtype == UDFS_DT_BF16 && i % 7919 == 3) {
			b = 3.3e38f;
			d = 5e36f;
		}
		udfs_dtype_store_f32(dtype, base, i, b);
		udfs_dtype_store_f32(dtype, cur, i, b + d);
	}
}

/* The plan of method enc for the pair, as the planner fills it. */
static void make_plan(int enc, int mask, int dtype, uint64_t n, const void *cur,
		      const void *base, struct tensor_plan *p)
{
	float *d = malloc(n * sizeof(float) + 1);
	uint8_t *codes = malloc(n);

	udfs_add_delta_range(dtype, n, cur, base, d);

	memset(p, 0, sizeof(*p));
	p->enc = enc;
	p->lp.mask = (uint8_t)mask;
	p->lp.rate = 0.9;
	p->lp.gain = 9.3f;
	p->lp.seed = 12345;
	if (enc == UDFS_ENC_ULTRADELTA) {
		p->lp.values = UDFS_VAL_CODES;
		p->lp.bits = 4;
		CHECK_EQ_INT(
		    udfs_ud_quantize(d, n, 4, codes, &p->lp.lo, &p->lp.step),
		    0);
		/* the extremes the planner hands over with lo and step */
		CHECK_EQ_INT(udfs_ud_minmax(d, n, &p->qmin, &p->qmax), 0);
	} else if (enc == UDFS_ENC_BITDELTA) {
		p->lp.values = UDFS_VAL_SIGN;
		p->lp.mask = UDFS_MASK_NONE;
		p->lp.step = 0.001f;
		p->lp.gain = 1.0f;
	} else {
		p->lp.values = UDFS_VAL_NATIVE;
	}
	free(codes);
	free(d);
}

/* Encode every chunk of the tensor; check recon against the decoder and
 * return the chunks' bytes concatenated (malloc-ed) for comparison. */
static unsigned char *encode_all(const struct tensor_plan *p, int dtype,
				 uint64_t n, const unsigned char *cur,
				 const unsigned char *base, int jobs,
				 size_t *total)
{
	unsigned es = udfs_dtype_size(dtype);
	uint64_t per = UDFS_CHUNK_BYTES / es;
	unsigned char *all = NULL, *dec = malloc(UDFS_CHUNK_BYTES);
	unsigned char *rec = malloc(UDFS_CHUNK_BYTES);
	struct lossy_tensor *lt = NULL;

	*total = 0;
	CHECK_EQ_INT(
	    udfs_lossy_tensor_prepare(p, dtype, n, cur, base, jobs, &lt), 0);
	for (uint64_t first = 0; lt && first < n; first += per) {
		uint32_t m = (uint32_t)(n - first < per ? n - first : per);
		void *out = NULL;
		size_t len = 0;
		udfs_fidelity fa = {0}, fb = {0};

		CHECK_EQ_INT(
		    udfs_lossy_tensor_chunk(lt, p, dtype, first, m, &out, &len),
		    0);
		CHECK_EQ_INT(udfs_lossy_decode_chunk(&p->lp, dtype, first, m,
						     out, len,
						     base + first * es, dec),
			     0);
		udfs_lossy_tensor_recon(lt, p, dtype, first, m,
					base + first * es, rec);
		CHECK(memcmp(dec, rec, (size_t)m * es) == 0);
		CHECK_EQ_INT(udfs_lossy_tensor_measure(lt, p, dtype, first, m,
						       cur + first * es,
						       base + first * es, &fa),
			     0);
		udfs_fidelity_add(&fb, dtype, base + first * es, dec,
				  cur + first * es, m);
		CHECK(memcmp(&fa, &fb, sizeof(fa)) == 0);
		all = realloc(all, *total + len + 1);
		memcpy(all + *total, out, len);
		*total += len;
		free(out);
	}
	if (lt)
		CHECK(udfs_lossy_tensor_kept(lt) > 0);
	udfs_lossy_tensor_free(lt);
	free(dec);
	free(rec);
	return all;
}

/* The bytes of p encoded with 1 job and with jobs jobs: the same. */
static void same_bytes(const struct tensor_plan *p, int dtype, uint64_t n,
		       const unsigned char *cur, const unsigned char *base,
		       int jobs)
{
	size_t l1 = 0, l2 = 0;
	unsigned char *one = encode_all(p, dtype, n, cur, base, 1, &l1);
	unsigned char *many = encode_all(p, dtype, n, cur, base, jobs, &l2);

	CHECK(l1 > 0 && l1 == l2);
	CHECK(one && many && memcmp(one, many, l1) == 0);
	free(one);
	free(many);
}

/* An adaptive plan as apply_picks() makes it: a low-rank part of rank
 * `rank` (0: none) and a residual res (codes, signs or none), on the
 * elements left by dropping `rate` of them (seeded: a seeded mask). */
static void make_mix_plan(uint8_t rank, uint8_t res, float rate, bool seeded,
			  float lo, uint64_t cols, struct tensor_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->enc = UDFS_ENC_ADAPTIVE;
	p->mix = (struct mix_code){.cols = cols,
				   .rank = rank,
				   .fbits = 6,
				   .res = res,
				   .rbits = res == MIX_RES_CODES ? 4 : 0,
				   .seeded = seeded,
				   .rate = rate};
	p->lp.gain = seeded ? (float)(1.0 / (1.0 - rate)) : 1.0f;
	p->lp.mask = seeded	? UDFS_MASK_SEEDED
		     : rate > 0 ? UDFS_MASK_EXPLICIT
				: UDFS_MASK_NONE;
	p->lp.seed = 777;
	p->lp.rate = rate;
	p->lp.values = res == MIX_RES_CODES ? UDFS_VAL_CODES : UDFS_VAL_SIGN;
	p->lp.bits = p->mix.rbits;
	/* lo = -1: coarse codes whose rescaled values overshoot the F16
	 * outliers, so that the reconstruction saturates. */
	p->lp.lo = res == MIX_RES_CODES ? lo : 0;
	p->lp.step = res == MIX_RES_NONE ? 0 : lo < -0.5f ? 40.0f : 0.0002f;
}

/* The adaptive method's composite chunks: recon against the decoder. */
static void test_mix(int dtype)
{
	unsigned es = udfs_dtype_size(dtype);
	uint64_t n = (uint64_t)(2.5 * UDFS_CHUNK_BYTES / es), cols = 512;
	unsigned char *base = malloc(n * es), *cur = malloc(n * es);
	struct {
		uint8_t rank, res;
		float rate;
		bool seeded;
	} cfg[4] = {{4, MIX_RES_CODES, 0, false},
		    {8, MIX_RES_SIGN, 0.5f, false},
		    {0, MIX_RES_CODES, 0.7f, true},
		    {2, MIX_RES_NONE, 0, false}};

	make_pair(dtype, n, base, cur);
	for (int c = 0; c < 4; c++) {
		struct tensor_plan p;

		make_mix_plan(cfg[c].rank, cfg[c].res, cfg[c].rate,
			      cfg[c].seeded, c == 2 ? -1.0f : -0.0015f, cols,
			      &p);
		same_bytes(&p, dtype, n, cur, base, 2);
	}
	free(base);
	free(cur);
}

static void test_method(int enc, int mask, int dtype)
{
	unsigned es = udfs_dtype_size(dtype);
	uint64_t n = (uint64_t)(2.5 * UDFS_CHUNK_BYTES / es);
	unsigned char *base = malloc(n * es), *cur = malloc(n * es);
	struct tensor_plan p;

	make_pair(dtype, n, base, cur);
	make_plan(enc, mask, dtype, n, cur, base, &p);
	same_bytes(&p, dtype, n, cur, base, 3);
	free(base);
	free(cur);
}

/* A source that changed after the plan (a larger delta, a NaN) is an
 * error of the prepare, not codes made with the plan's stale extremes. */
static void test_changed(void)
{
	int dtype = UDFS_DT_BF16;
	uint64_t n = (uint64_t)(1.5 * UDFS_CHUNK_BYTES / 2);
	unsigned char *base = malloc(n * 2), *cur = malloc(n * 2);
	struct lossy_tensor *lt = NULL;
	struct tensor_plan p;

	make_pair(dtype, n, base, cur);
	make_plan(UDFS_ENC_ULTRADELTA, UDFS_MASK_SEEDED, dtype, n, cur, base,
		  &p);
	/* past the largest delta of make_pair (5e36, its BF16 outliers) */
	udfs_dtype_store_f32(dtype, cur, n - 7,
			     udfs_dtype_load_f32(dtype, base, n - 7) + 1e38f);
	CHECK_EQ_INT(udfs_lossy_tensor_prepare(&p, dtype, n, cur, base, 2, &lt),
		     -EIO);
	CHECK(lt == NULL);
	udfs_dtype_store_f32(dtype, cur, n - 7, NAN);
	CHECK_EQ_INT(udfs_lossy_tensor_prepare(&p, dtype, n, cur, base, 1, &lt),
		     -EIO);
	CHECK(lt == NULL);
	free(base);
	free(cur);
}

int main(void)
{
	test_changed();
	int dtypes[3] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};

	for (int i = 0; i < 3; i++) {
		test_method(UDFS_ENC_ULTRADELTA, UDFS_MASK_EXPLICIT, dtypes[i]);
		test_method(UDFS_ENC_ULTRADELTA, UDFS_MASK_SEEDED, dtypes[i]);
		test_method(UDFS_ENC_DARE, UDFS_MASK_SEEDED, dtypes[i]);
		test_method(UDFS_ENC_MAGNITUDE, UDFS_MASK_EXPLICIT, dtypes[i]);
		test_method(UDFS_ENC_BITDELTA, UDFS_MASK_NONE, dtypes[i]);
		test_mix(dtypes[i]);
	}
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * Unit tests of src/write/trace_csr.c: udfs_seeded_pruned_csr must give,
 * entry for entry, the pruned delta built element by element from the
 * seeded mask (udfs_seeded_levels_keep), the delta, its code and the value
 * table: for every dtype and value kind, rates from keep-all to nearly
 * nothing, and shapes whose rows end inside a mask word and a block.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec/lossy.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "write/add_i.h"
#include "write/linalg.h"
#include "write/ultradelta.h"

static uint64_t rs = 0x2545f4914f6cdd1dULL;

static double unif(void)
{
	return (double)(udfs_splitmix64(&rs) >> 11) / 9007199254740992.0;
}

/* Base and fine-tune of n elements of dtype, a few deltas exactly 0. */
static void make_pair(int dtype, uint64_t n, void *base, void *cur)
{
	for (uint64_t i = 0; i < n; i++) {
		float b = (float)(unif() - 0.5) * 0.04f;
		float d = (float)(unif() - 0.5) * 0.004f;

		if (i % 13 == 7)
			d = 0;
		udfs_dtype_store_f32(dtype, base, i, b);
		udfs_dtype_store_f32(dtype, cur, i, b + d);
	}
}

/* A seeded plan keeping 1 - rate, values of kind `values`, as the
 * planner fills it. */
static void make_plan(int values, double rate, int dtype, uint64_t n,
		      const void *cur, const void *base, struct tensor_plan *p)
{
	float *d = malloc(n * sizeof(float) + 1);
	uint8_t *codes = malloc(n + 1);

	udfs_add_delta_range(dtype, n, cur, base, d);
	memset(p, 0, sizeof(*p));
	p->enc = UDFS_ENC_ULTRADELTA;
	p->lp.mask = UDFS_MASK_SEEDED;
	p->lp.rate = rate;
	p->lp.seed = 777;
	p->lp.gain = 9.3f;
	p->lp.values = (uint8_t)values;
	if (values == UDFS_VAL_CODES) {
		p->lp.bits = 4;
		CHECK_EQ_INT(
		    udfs_ud_quantize(d, n, 4, codes, &p->lp.lo, &p->lp.step),
		    0);
		CHECK_EQ_INT(udfs_ud_minmax(d, n, &p->qmin, &p->qmax), 0);
	} else if (values == UDFS_VAL_SIGN) {
		p->lp.step = 0.001f;
	}
	free(codes);
	free(d);
}

/* The value of element i as the trace phase must see it, or 0 where the
 * mask drops it. */
static float reference(const struct tensor_plan *p, int dtype,
		       const unsigned char *cur, const unsigned char *base,
		       uint64_t i)
{
	unsigned es = udfs_dtype_size(dtype);
	float d, lut[256];
	uint8_t code;

	if (!udfs_seeded_levels_keep(p->lp.seed, i,
				     udfs_seeded_levels(p->lp.rate)))
		return 0;
	udfs_add_delta_range(dtype, 1, cur + i * es, base + i * es, &d);
	udfs_lossy_value_lut(&p->lp, lut);
	if (p->lp.values == UDFS_VAL_NATIVE)
		return p->lp.gain * d;
	if (p->lp.values == UDFS_VAL_SIGN)
		return lut[d < 0];
	udfs_ud_quantize_range(&d, 1, p->lp.bits, p->qmin, p->qmax, &code);
	return lut[code];
}

static void test_one(int dtype, int values, double rate, size_t rows,
		     size_t cols)
{
	uint64_t n = (uint64_t)rows * cols, e = 0, nonzero = 0;
	unsigned es = udfs_dtype_size(dtype);
	unsigned char *base = malloc(n * es), *cur = malloc(n * es);
	struct tensor_plan p;
	udfs_csr a = {0};
	bool same = true;

	make_pair(dtype, n, base, cur);
	make_plan(values, rate, dtype, n, cur, base, &p);
	CHECK_EQ_INT(
	    udfs_seeded_pruned_csr(&p, dtype, cur, base, rows, cols, &a), 0);
	CHECK(a.rows == rows && a.cols == cols && a.ptr[0] == 0);
	for (size_t r = 0; r < rows && same; r++) {
		for (size_t c = 0; c < cols && same; c++) {
			float v = reference(&p, dtype, cur, base, r * cols + c);

			if (v == 0.0f)
				continue;
			nonzero++;
			same = e < a.ptr[r + 1] && a.col[e] == c &&
			       memcmp(&a.val[e], &v, sizeof(v)) == 0;
			e++;
		}
		same = same && a.ptr[r + 1] == e;
	}
	CHECK(same);
	CHECK(a.ptr[rows] == nonzero);
	if (rate == 0.0)
		CHECK(nonzero > n / 2); /* keep-all: only the zero deltas go */
	udfs_csr_free(&a);
	free(base);
	free(cur);
}

int main(void)
{
	const int dtypes[] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	const int values[] = {UDFS_VAL_CODES, UDFS_VAL_SIGN, UDFS_VAL_NATIVE};
	const double rates[] = {0.0, 0.5, 0.9, 0.999};
	/* rows ending inside a word, a block of 4096, and a row of several
	 * blocks; a single row of 3; a last block short of 4096 */
	const size_t shapes[][2] = {
	    {100, 77}, {64, 4096}, {3, 10000}, {1, 3}, {4097, 3}};

	for (size_t d = 0; d < 3; d++)
		for (size_t v = 0; v < 3; v++)
			for (size_t r = 0; r < 4; r++)
				for (size_t s = 0; s < 5; s++)
					test_one(dtypes[d], values[v], rates[r],
						 shapes[s][0], shapes[s][1]);
	CHECK_DONE();
}

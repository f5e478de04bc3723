// SPDX-License-Identifier: MIT
/*
 * Unit tests of the lossy chunk codec (src/codec/lossy.c): round trips for
 * every mask kind x value kind x dtype compared bit for bit with a direct
 * computation of the reconstruction formula, rejection of truncated and
 * garbled chunks, rejection of bad encoder input, the encoded size
 * against the paper's accounting, and the value format of large codes
 * sections (rANS for stationary codes, within 3% of range coding;
 * range coding still tried and taken where the statistics drift); the
 * round trips and the saturation run at every vector level the CPU has. With
 * UDFS_BENCH=1 it prints encode and decode speeds of a 1 MiB BF16 chunk.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "codec/lossy.h"
#include "codec/lossy_i.h"
#include "codec/simd.h"
#include "codec/trellis.h"
#include "common/dtype.h"
#include "common/util.h"
#include "write/ultradelta.h"

static uint64_t rs = 1;

static uint64_t xr(void) { return udfs_splitmix64(&rs); }

static double unif(void) { return (double)(xr() >> 11) / 9007199254740992.0; }

static double laplace(double b)
{
	double u = unif() - 0.5;

	return (u < 0 ? b : -b) * log(1 - 2 * fabs(u) + 1e-300);
}

struct chunk {
	int dtype;
	unsigned es;
	uint32_t n, n_kept;
	uint64_t first;
	udfs_lossy_params p;
	uint8_t *base;	/* n elements of dtype */
	uint32_t *kept; /* n_kept positions */
	uint8_t *vals;	/* n_kept values (codes, signs or dtype elements) */
	uint8_t *want;	/* reference reconstruction */
};

/* Base values: small random weights with NaN, Inf and signed zeros in
 * some positions, so that copying base bits is checked exactly. */
static void fill_base(struct chunk *c)
{
	for (uint32_t i = 0; i < c->n; i++) {
		float w = (float)(unif() - 0.5) * 0.1f;

		udfs_dtype_store_f32(c->dtype, c->base, i, w);
		if (i % 101 == 3) {
			/* a NaN with a payload, in the dtype's own bits */
			if (c->es == 2) {
				uint16_t h =
				    c->dtype == UDFS_DT_BF16 ? 0x7fa5 : 0x7e35;
				memcpy(c->base + 2 * i, &h, 2);
			} else {
				uint32_t u = 0x7fc12345;

				memcpy(c->base + 4 * i, &u, 4);
			}
		}
		if (i % 211 == 5)
			udfs_dtype_store_f32(c->dtype, c->base, i, -0.0f);
	}
}

static void make_mask(struct chunk *c, double r)
{
	c->n_kept = 0;
	if (c->p.mask == UDFS_MASK_NONE) {
		for (uint32_t i = 0; i < c->n; i++)
			c->kept[c->n_kept++] = i;
	} else if (c->p.mask == UDFS_MASK_SEEDED) {
		uint32_t t = udfs_seeded_levels(r);

		for (uint32_t i = 0; i < c->n; i++)
			if (udfs_seeded_levels_keep(c->p.seed, c->first + i, t))
				c->kept[c->n_kept++] = i;
	} else {
		for (uint32_t i = 0; i < c->n; i++)
			if (unif() >= r)
				c->kept[c->n_kept++] = i;
	}
	c->p.rate = r;
}

static void make_vals(struct chunk *c, double scale)
{
	for (uint32_t j = 0; j < c->n_kept; j++) {
		double x = laplace(1.0);

		switch (c->p.values) {
		case UDFS_VAL_CODES: {
			int L = (1 << c->p.bits) - 1;
			int v = (int)lrint(L / 2.0 + x * L / 8.0);

			c->vals[j] = (uint8_t)(v < 0 ? 0 : v > L ? L : v);
			break;
		}
		case UDFS_VAL_SIGN:
			c->vals[j] = x < 0;
			break;
		case UDFS_VAL_TRELLIS: /* path bits: the first steps only */
			c->vals[j] = (uint8_t)(xr() & 1);
			break;
		default:
			udfs_dtype_store_f32(c->dtype, c->vals, j,
					     (float)(x * scale));
		}
	}
}

static float finite_top(int dtype)
{
	return dtype == UDFS_DT_F16    ? 65504.0f
	       : dtype == UDFS_DT_BF16 ? 0x1.fep127f
				       : FLT_MAX;
}

/* The reconstruction formula written out directly. */
static void reference(struct chunk *c)
{
	unsigned state = 0;

	memcpy(c->want, c->base, (size_t)c->n * c->es);
	for (uint32_t j = 0; j < c->n_kept; j++) {
		uint32_t i = c->kept[j];
		float q, d, w, b = udfs_dtype_load_f32(c->dtype, c->base, i);

		if (c->p.values == UDFS_VAL_CODES)
			q = c->p.lo + (float)c->vals[j] * c->p.step;
		else if (c->p.values == UDFS_VAL_SIGN)
			q = c->vals[j] ? -c->p.step : c->p.step;
		else if (c->p.values == UDFS_VAL_TRELLIS) {
			/* step j / v shifts its path bit into the state */
			if (j % c->p.bits == 0)
				state =
				    (state << 1 | c->vals[j / c->p.bits]) & 255;
			q = c->p.step *
			    udfs_trellis_codebook(state, j % c->p.bits);
		} else
			q = udfs_dtype_load_f32(c->dtype, c->vals, j);
		d = c->p.gain * q;
		w = b + d;
		udfs_dtype_store_f32(c->dtype, c->want, i, w);
		/* Finite base weights reconstruct finite: a sum out of range
		 * saturates, a sum that is not a number keeps the base. */
		if (isfinite(b) &&
		    !isfinite(udfs_dtype_load_f32(c->dtype, c->want, i)))
			udfs_dtype_store_f32(c->dtype, c->want, i,
					     isnan(w) ? b
					     : w > 0  ? finite_top(c->dtype)
						      : -finite_top(c->dtype));
	}
}

static void chunk_init(struct chunk *c, int dtype, uint32_t n, int mask,
		       int values, unsigned bits, double r)
{
	memset(c, 0, sizeof(*c));
	c->dtype = dtype;
	c->es = udfs_dtype_size(dtype);
	c->n = n;
	c->first = 1000003;
	c->p.mask = (uint8_t)mask;
	c->p.values = (uint8_t)values;
	c->p.bits = (uint8_t)bits;
	c->p.lo = -0.0123f;
	c->p.step = 0.0017f;
	c->p.gain = (float)(1.0 / (1.0 - r));
	c->p.seed = udfs_seeded_key(7, "model.layers.0.mlp.up_proj.weight");
	c->base = malloc((size_t)n * c->es + 1);
	c->want = malloc((size_t)n * c->es + 1);
	c->kept = malloc(((size_t)n + 1) * 4);
	c->vals = malloc(((size_t)n + 1) * 4);
	fill_base(c);
	make_mask(c, mask == UDFS_MASK_NONE ? 0.0 : r);
	make_vals(c, 1e-3);
	reference(c);
}

static void chunk_free(struct chunk *c)
{
	free(c->base);
	free(c->want);
	free(c->kept);
	free(c->vals);
}

static int encode(struct chunk *c, void **out, size_t *len)
{
	return udfs_lossy_encode_chunk(&c->p, c->dtype, c->first, c->n, c->kept,
				       c->n_kept, c->vals, out, len);
}

static int decode(struct chunk *c, const void *in, size_t len, void *out)
{
	return udfs_lossy_decode_chunk(&c->p, c->dtype, c->first, c->n, in, len,
				       c->base, out);
}

/* Round trips of each dtype whose codes went as value format 5 (rANS). */
static int rans_chunks[UDFS_DT_F32 + 1];

static void roundtrip(int dtype, uint32_t n, int mask, int values,
		      unsigned bits, double r)
{
	struct chunk c;
	void *enc = NULL;
	size_t len = 0;
	uint8_t *out;
	int ret;

	chunk_init(&c, dtype, n, mask, values, bits, r);
	out = malloc((size_t)n * c.es + 1);
	ret = encode(&c, &enc, &len);
	CHECK_EQ_INT(ret, 0);
	if (ret == 0) {
		memset(out, 0xaa, (size_t)n * c.es);
		CHECK_EQ_INT(decode(&c, enc, len, out), 0);
		if (memcmp(out, c.want, (size_t)n * c.es)) {
			fprintf(stderr,
				"mismatch: dtype %d n %u mask %d "
				"values %d bits %u r %g\n",
				dtype, n, mask, values, bits, r);
			CHECK(0);
		}
		if (len && (((uint8_t *)enc)[0] >> 3 & 7) >= 5)
			rans_chunks[dtype]++;
		/* in place: out == base */
		CHECK_EQ_INT(udfs_lossy_decode_chunk(&c.p, dtype, c.first, n,
						     enc, len, c.base, c.base),
			     0);
		CHECK(memcmp(c.base, c.want, (size_t)n * c.es) == 0);
	}
	free(enc);
	free(out);
	chunk_free(&c);
}

/*
 * A seeded chunk written by earlier versions (mask format 0: the mask drawn
 * per element by udfs_seeded_keep) still decodes; its bytes read as mask
 * format 5 (by levels) name another mask, which fails or differs.
 */
static void test_seeded_per_element(int values, double r)
{
	uint64_t thr = udfs_seeded_threshold(r);
	uint8_t *val = NULL, *enc, vfmt = 0;
	size_t val_len = 0, at = 1;
	struct chunk c;
	uint8_t *out;
	int ret;

	chunk_init(&c, UDFS_DT_BF16, 100000, UDFS_MASK_SEEDED, values, 4, r);
	c.n_kept = 0;
	for (uint32_t i = 0; i < c.n; i++)
		if (udfs_seeded_keep(c.p.seed, c.first + i, thr))
			c.kept[c.n_kept++] = i;
	make_vals(&c, 1e-3);
	reference(&c);
	CHECK_EQ_INT(udfs_lossy_values_encode(&c.p, c.es, c.n_kept, c.vals,
					      &val, &val_len, &vfmt),
		     0);
	enc = malloc(val_len + 8);
	out = malloc((size_t)c.n * c.es);
	enc[0] = (uint8_t)(1 << 6 | vfmt << 3 | 0);
	at += udfs_lossy_put_varint(enc + at, (uint32_t)val_len);
	memcpy(enc + at, val, val_len);
	CHECK_EQ_INT(decode(&c, enc, at + val_len, out), 0);
	CHECK(memcmp(out, c.want, (size_t)c.n * c.es) == 0);
	enc[0] |= 5;
	ret = decode(&c, enc, at + val_len, out);
	udfs_error_clear();
	CHECK(ret != 0 || memcmp(out, c.want, (size_t)c.n * c.es) != 0);
	free(out);
	free(enc);
	free(val);
	chunk_free(&c);
}

/* Exactly one element kept, at either end and in the middle. */
static void test_one_kept(void)
{
	uint32_t at[3] = {0, 777, 4095};

	for (int t = 0; t < 3; t++) {
		struct chunk c;
		void *enc = NULL;
		size_t len = 0;
		uint8_t *out;

		chunk_init(&c, UDFS_DT_BF16, 4096, UDFS_MASK_EXPLICIT,
			   UDFS_VAL_CODES, 4, 0.5);
		c.n_kept = 1;
		c.kept[0] = at[t];
		reference(&c);
		out = malloc((size_t)c.n * c.es);
		CHECK_EQ_INT(encode(&c, &enc, &len), 0);
		CHECK(len <= 8);
		CHECK_EQ_INT(decode(&c, enc, len, out), 0);
		CHECK(memcmp(out, c.want, (size_t)c.n * c.es) == 0);
		free(enc);
		free(out);
		chunk_free(&c);
	}
}

/* Every code the one of a zero delta, and every code an extreme: the
 * range coder's shortest and longest outputs. */
static void test_constant_codes(void)
{
	for (int k = 0; k < 3; k++) {
		struct chunk c;
		void *enc = NULL;
		size_t len = 0;
		uint8_t *out;

		chunk_init(&c, UDFS_DT_BF16, 20000, UDFS_MASK_SEEDED,
			   UDFS_VAL_CODES, 4, 0.5);
		/* lo = -0.0123, step = 0.0017: zero is code 7 */
		for (uint32_t j = 0; j < c.n_kept; j++)
			c.vals[j] = (uint8_t)(k == 0 ? 7 : k == 1 ? 0 : 15);
		reference(&c);
		out = malloc((size_t)c.n * c.es);
		CHECK_EQ_INT(encode(&c, &enc, &len), 0);
		if (k == 0)
			CHECK(len < 40);
		CHECK_EQ_INT(decode(&c, enc, len, out), 0);
		CHECK(memcmp(out, c.want, (size_t)c.n * c.es) == 0);
		free(enc);
		free(out);
		chunk_free(&c);
	}
}

static void test_roundtrips(void)
{
	int dts[3] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	double rates[4] = {0.0, 0.3, 0.9, 0.99};
	uint32_t sizes[4] = {1, 7, 1000, 65536};

	for (int t = 0; t < 3; t++)
		for (int m = 0; m < 3; m++)
			for (int v = 0; v < 3; v++)
				for (int ri = 0; ri < 4; ri++)
					for (int si = 0; si < 4; si++)
						roundtrip(dts[t], sizes[si], m,
							  v, 4, rates[ri]);
	for (unsigned b = 1; b <= 8; b++) {
		roundtrip(UDFS_DT_BF16, 5000, UDFS_MASK_EXPLICIT,
			  UDFS_VAL_CODES, b, 0.9);
		roundtrip(UDFS_DT_F16, 5000, UDFS_MASK_SEEDED, UDFS_VAL_CODES,
			  b, 0.5);
		roundtrip(UDFS_DT_F32, 5000, UDFS_MASK_NONE, UDFS_VAL_CODES, b,
			  0.0);
	}
	/* n = 0 */
	roundtrip(UDFS_DT_BF16, 0, UDFS_MASK_EXPLICIT, UDFS_VAL_CODES, 4, 0.9);
	/* all dropped */
	roundtrip(UDFS_DT_BF16, 1000, UDFS_MASK_EXPLICIT, UDFS_VAL_CODES, 4,
		  1.0);
	roundtrip(UDFS_DT_BF16, 1000, UDFS_MASK_SEEDED, UDFS_VAL_NATIVE, 4,
		  1.0);
	for (int m = 0; m < 3; m++)
		for (int v = 0; v < 3; v++) {
			/* all dropped, one kept, all kept, a large chunk */
			roundtrip(UDFS_DT_F16, 300, m, v, 4, 1.0);
			roundtrip(UDFS_DT_BF16, 1, m, v, 3, 0.0);
			roundtrip(UDFS_DT_F32, 2, m, v, 8, 0.5);
			roundtrip(UDFS_DT_BF16, 3000, m, v, 4, 0.0);
			roundtrip(UDFS_DT_BF16, 1 << 19, m, v, 4, 0.97);
		}
	for (unsigned v = 1; v <= UDFS_TRELLIS_VMAX; v++)
		for (int m = 0; m < 3; m++) {
			roundtrip(UDFS_DT_BF16, 1, m, UDFS_VAL_TRELLIS, v, 0.0);
			roundtrip(UDFS_DT_F16, 1001, m, UDFS_VAL_TRELLIS, v,
				  0.5);
			roundtrip(UDFS_DT_F32, 4099, m, UDFS_VAL_TRELLIS, v,
				  0.3);
			roundtrip(UDFS_DT_BF16, 1 << 19, m, UDFS_VAL_TRELLIS, v,
				  0.0);
		}
	CHECK(rans_chunks[UDFS_DT_BF16] > 0 && rans_chunks[UDFS_DT_F16] > 0 &&
	      rans_chunks[UDFS_DT_F32] > 0);
	test_one_kept();
	test_constant_codes();
}

/* Any prefix or corruption of a chunk is rejected or decodes without a
 * bad access (ASan builds check the latter). */
static void test_corrupt(int mask, int values, double r)
{
	struct chunk c;
	void *enc = NULL;
	size_t len = 0;
	uint8_t *out, *bad;
	int fails = 0, ret;

	chunk_init(&c, UDFS_DT_BF16, 3000, mask, values, 4, r);
	out = malloc((size_t)c.n * c.es);
	CHECK_EQ_INT(encode(&c, &enc, &len), 0);
	bad = malloc(len + 16);
	for (size_t l = 0; l < len; l++) {
		memcpy(bad, enc, l);
		ret = decode(&c, bad, l, out);
		fails += ret == -EIO;
		udfs_error_clear();
	}
	CHECK_EQ_INT(fails, len);
	memcpy(bad, enc, len);
	bad[len] = 0;
	CHECK_EQ_INT(decode(&c, bad, len + 1, out), -EIO);
	udfs_error_clear();
	for (int t = 0; t < 3000; t++) {
		size_t at = xr() % len;

		memcpy(bad, enc, len);
		bad[at] ^= (uint8_t)(1u << (xr() % 8));
		if (t % 3 == 0)
			bad[xr() % len] = (uint8_t)xr();
		ret = decode(&c, bad, len, out);
		CHECK(ret == 0 || ret == -EIO);
		udfs_error_clear();
	}
	/* header fields out of range: version, formats, lengths */
	memcpy(bad, enc, len);
	bad[0] ^= 0x80;
	CHECK_EQ_INT(decode(&c, bad, len, out), -EIO);
	udfs_error_clear();
	memcpy(bad, enc, len);
	bad[0] |= 0x38; /* value format 7 */
	CHECK_EQ_INT(decode(&c, bad, len, out), -EIO);
	udfs_error_clear();
	memcpy(bad, enc, len);
	bad[1] ^= 0x01; /* first varint: n_kept, or the value length */
	CHECK_EQ_INT(decode(&c, bad, len, out), -EIO);
	udfs_error_clear();
	if (mask == UDFS_MASK_EXPLICIT) {
		memcpy(bad, enc, len);
		bad[0] = (uint8_t)((bad[0] & ~7) | 5); /* mask format 5 */
		CHECK_EQ_INT(decode(&c, bad, len, out), -EIO);
		udfs_error_clear();
		memcpy(bad, enc, len);
		bad[1] = 0xff; /* n_kept > n or a longer varint */
		bad[2] = 0xff;
		bad[3] = 0x7f;
		CHECK_EQ_INT(decode(&c, bad, len, out), -EIO);
		udfs_error_clear();
	}
	/* the chunk read with another mask kind */
	c.p.mask = (uint8_t)(mask == UDFS_MASK_EXPLICIT ? UDFS_MASK_NONE
							: UDFS_MASK_EXPLICIT);
	CHECK_EQ_INT(decode(&c, enc, len, out), -EIO);
	udfs_error_clear();
	free(bad);
	free(enc);
	free(out);
	chunk_free(&c);
}

/*
 * The mask format the encoder picks for an explicit mask: Rice-coded gaps
 * for an irregular mask (range coding saves a fraction of a percent and
 * decodes ten times slower), range-coded gaps for a regular one (every
 * 10th element: the adaptive model learns it, Rice cannot). Both round
 * trip, and every truncation of either is rejected.
 */
static void test_mask_format(bool regular, unsigned want)
{
	struct chunk c;
	void *enc = NULL;
	size_t len = 0;
	uint8_t *out;

	chunk_init(&c, UDFS_DT_BF16, 20000, UDFS_MASK_EXPLICIT, UDFS_VAL_CODES,
		   4, 0.9);
	if (regular) {
		c.n_kept = 0;
		for (uint32_t i = 0; i < c.n; i += 10)
			c.kept[c.n_kept++] = i;
		make_vals(&c, 1e-3);
		reference(&c);
	}
	out = malloc((size_t)c.n * c.es);
	CHECK_EQ_INT(encode(&c, &enc, &len), 0);
	CHECK_EQ_INT(((uint8_t *)enc)[0] & 7, want);
	CHECK_EQ_INT(decode(&c, enc, len, out), 0);
	CHECK(memcmp(out, c.want, (size_t)c.n * c.es) == 0);
	for (size_t l = 0; l < len; l++) {
		CHECK_EQ_INT(decode(&c, enc, l, out), -EIO);
		udfs_error_clear();
	}
	free(enc);
	free(out);
	chunk_free(&c);
}

static void test_bad_encode(void)
{
	struct chunk c;
	void *enc = NULL;
	size_t len;
	uint32_t k;

	chunk_init(&c, UDFS_DT_BF16, 100, UDFS_MASK_EXPLICIT, UDFS_VAL_CODES, 4,
		   0.5);
	CHECK(c.n_kept >= 2);
	k = c.kept[1];
	c.kept[1] = c.kept[0];
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	c.kept[1] = k;
	udfs_error_clear();
	c.vals[0] = 16;
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	c.vals[0] = 0;
	udfs_error_clear();
	CHECK_EQ_INT(udfs_lossy_encode_chunk(&c.p, UDFS_DT_F64, 0, c.n, c.kept,
					     c.n_kept, c.vals, &enc, &len),
		     -EINVAL);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_lossy_decode_chunk(&c.p, UDFS_DT_I32, 0, c.n, c.vals,
					     20, c.base, c.want),
		     -EINVAL);
	udfs_error_clear();
	c.p.bits = 9;
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	udfs_error_clear();
	c.p.values = UDFS_VAL_TRELLIS; /* 5 values a step, a path bit of 2 */
	c.p.bits = 5;
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	udfs_error_clear();
	c.p.bits = 4;
	c.vals[0] = 2;
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	udfs_error_clear();
	c.vals[0] = 0;
	c.p.values = UDFS_VAL_CODES;
	c.p.mask = UDFS_MASK_SEEDED; /* positions are not the seeded ones */
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	udfs_error_clear();
	c.p.mask = UDFS_MASK_NONE; /* n_kept != n */
	CHECK_EQ_INT(encode(&c, &enc, &len), -EINVAL);
	udfs_error_clear();
	chunk_free(&c);
}

/* Laplace deltas quantized to 4 bits, pruned group-wise at s = 0.9: the
 * chunk costs at most the paper's b + G(s) bits per kept element. */
static void test_size(double s, int mask)
{
	enum { N = 1 << 19 };
	float *d = malloc(N * sizeof(*d)), lo, step;
	uint8_t *codes = malloc(N), *keep = malloc(N), *vals = malloc(N);
	uint32_t *kept = malloc(N * sizeof(*kept)), nk = 0;
	udfs_lossy_params p = {.mask = (uint8_t)mask,
			       .values = UDFS_VAL_CODES,
			       .bits = 4,
			       .rate = s,
			       .seed = 12345};
	void *enc = NULL;
	size_t len = 0;
	double paper_bits;

	for (int i = 0; i < N; i++)
		d[i] = (float)laplace(1e-3);
	CHECK_EQ_INT(udfs_ud_quantize(d, N, 4, codes, &lo, &step), 0);
	p.lo = lo;
	p.step = step;
	p.gain = (float)(1 / (1 - s));
	if (mask == UDFS_MASK_EXPLICIT)
		udfs_ud_prune_groupwise(codes, N, 4, s, 1, keep);
	else
		udfs_ud_prune_seeded(N, s, p.seed, keep);
	for (uint32_t i = 0; i < N; i++)
		if (keep[i]) {
			vals[nk] = codes[i];
			kept[nk++] = i;
		}
	CHECK_EQ_INT(udfs_lossy_encode_chunk(&p, UDFS_DT_BF16, 0, N, kept, nk,
					     vals, &enc, &len),
		     0);
	/* bits per kept element the paper counts: 16 / ratio / (1 - s) */
	paper_bits = 16.0 /
		     udfs_ud_paper_ratio(s, 4, mask == UDFS_MASK_EXPLICIT) /
		     (1 - s);
	fprintf(stderr,
		"s=%.2f %s: %.3f bits per kept element (paper %.3f), "
		"ratio %.1fx of BF16\n",
		s, mask == UDFS_MASK_EXPLICIT ? "explicit" : "seeded",
		8.0 * len / nk, paper_bits, 2.0 * N / len);
	CHECK(8.0 * len <= paper_bits * nk + 8 * 64);
	free(enc);
	free(d);
	free(codes);
	free(keep);
	free(vals);
	free(kept);
}

static void bench(double s, int mask)
{
	enum { N = 1 << 19 }; /* 1 MiB of BF16 */
	struct chunk c;
	void *enc = NULL;
	size_t len = 0;
	uint8_t *out;
	double t0, te, td;
	int reps = 20;

	chunk_init(&c, UDFS_DT_BF16, N, mask, UDFS_VAL_CODES, 4, s);
	out = malloc((size_t)N * 2);
	t0 = udfs_now();
	for (int i = 0; i < reps; i++) {
		free(enc);
		CHECK_EQ_INT(encode(&c, &enc, &len), 0);
	}
	te = (udfs_now() - t0) / reps;
	t0 = udfs_now();
	for (int i = 0; i < reps; i++)
		CHECK_EQ_INT(decode(&c, enc, len, out), 0);
	td = (udfs_now() - t0) / reps;
	fprintf(stderr,
		"bench s=%.2f %s: %zu bytes, %.2f bytes/kept, encode "
		"%.0f MB/s, decode %.0f MB/s\n",
		s, mask == UDFS_MASK_EXPLICIT ? "explicit" : "seeded", len,
		(double)len / c.n_kept, 2.0 * N / te / 1e6, 2.0 * N / td / 1e6);
	free(enc);
	free(out);
	chunk_free(&c);
}

/*
 * A reconstruction of finite base weights is finite: gain * value past the
 * dtype's range saturates at its largest finite value (F16 deltas of
 * +-65504 under a 1/(1-s) gain decoded to infinities), while sums in range
 * keep exactly the bits of the plain formula.
 */
static void test_saturate(void)
{
	static const int dts[3] = {UDFS_DT_F16, UDFS_DT_BF16, UDFS_DT_F32};
	enum { N = 64 };

	for (int k = 0; k < 3; k++) {
		for (int big = 0; big < 2; big++) {
			int dt = dts[k];
			unsigned es = udfs_dtype_size(dt);
			udfs_lossy_params p = {
			    .mask = UDFS_MASK_NONE,
			    .values = UDFS_VAL_CODES,
			    .bits = 4,
			    .lo = -finite_top(dt),
			    .step = finite_top(dt) / 7.5f,
			    .gain = big ? 33.3f : 1.0f,
			};
			uint8_t codes[N], base[N * 4] = {0}, out[N * 4];
			void *enc = NULL;
			size_t len = 0;

			for (int i = 0; i < N; i++) {
				codes[i] = (uint8_t)(i % 16);
				/* Some weights near the top already. */
				udfs_dtype_store_f32(
				    dt, base, (uint64_t)i,
				    i % 3 ? 0.0f : finite_top(dt) * 0.75f);
			}
			CHECK_EQ_INT(udfs_lossy_encode_chunk(&p, dt, 0, N, NULL,
							     N, codes, &enc,
							     &len),
				     0);
			CHECK_EQ_INT(udfs_lossy_decode_chunk(&p, dt, 0, N, enc,
							     len, base, out),
				     0);
			for (int i = 0; i < N; i++) {
				float b = udfs_dtype_load_f32(dt, base, i);
				float q = p.lo + (float)codes[i] * p.step;
				float w = udfs_dtype_load_f32(dt, out, i);
				uint8_t want[4];

				CHECK(isfinite(w));
				udfs_dtype_store_f32(dt, want, 0,
						     b + p.gain * q);
				if (isfinite(udfs_dtype_load_f32(dt, want, 0)))
					CHECK(memcmp(want, out + i * es, es) ==
					      0);
				else
					CHECK(fabsf(w) == finite_top(dt));
			}
			free(enc);
		}
	}
}

/*
 * 65536 4-bit codes, Laplace around the zero code 7, or (drift) in runs of
 * 1024 alternating between that and four times wider: the encoder skips
 * range coding only where it cannot beat rANS by 3% (lossy.c,
 * RC_CODES_GATE); where the statistics drift it still finds range coding.
 */
static void test_codes_format(bool drift, uint8_t want)
{
	enum { N = 65536 };
	udfs_lossy_params p = {
	    .values = UDFS_VAL_CODES, .bits = 4, .lo = -7.0f, .step = 1.0f};
	uint8_t *v = malloc(N), *out = NULL, *rc = NULL, fmt = 0;
	size_t len = 0, rc_len = 0;

	for (uint32_t j = 0; j < N; j++) {
		double b = drift && (j / 1024) % 2 ? 4.0 : 1.0;
		long c = 7 + lrint(laplace(b));

		v[j] = (uint8_t)(c < 0 ? 0 : c > 15 ? 15 : c);
	}
	CHECK_EQ_INT(udfs_lossy_values_encode(&p, 1, N, v, &out, &len, &fmt),
		     0);
	CHECK_EQ_INT(fmt, want);
	CHECK_EQ_INT(udfs_lossy_codes_encode_as(&p, N, v, 3, &rc, &rc_len), 0);
	CHECK(len * 100 <= rc_len * 103);
	free(out);
	free(rc);
	free(v);
}

int main(void)
{
	test_seeded_per_element(UDFS_VAL_CODES, 0.9);
	test_seeded_per_element(UDFS_VAL_SIGN, 0.5);
	test_seeded_per_element(UDFS_VAL_NATIVE, 0.97);
	/* The decoder's vector loops (positions of a mask's bits, the BF16
	 * sums) at every level the CPU has, against the same reference. */
	for (int l = 0; l < UDFS_SIMD_LEVELS; l++) {
		udfs_simd_cap(l);
		if (udfs_simd_level() < l)
			break;
		test_roundtrips();
		test_saturate();
	}
	udfs_simd_cap(-1);
	test_corrupt(UDFS_MASK_EXPLICIT, UDFS_VAL_CODES, 0.9);
	test_corrupt(UDFS_MASK_EXPLICIT, UDFS_VAL_CODES, 0.2);
	test_corrupt(UDFS_MASK_EXPLICIT, UDFS_VAL_NATIVE, 0.9);
	test_corrupt(UDFS_MASK_SEEDED, UDFS_VAL_CODES, 0.9);
	test_corrupt(UDFS_MASK_NONE, UDFS_VAL_SIGN, 0.0);
	test_corrupt(UDFS_MASK_SEEDED, UDFS_VAL_SIGN, 0.5);
	test_corrupt(UDFS_MASK_EXPLICIT, UDFS_VAL_SIGN, 0.97);
	test_corrupt(UDFS_MASK_NONE, UDFS_VAL_CODES, 0.0);
	test_corrupt(UDFS_MASK_NONE, UDFS_VAL_TRELLIS, 0.0);
	test_corrupt(UDFS_MASK_EXPLICIT, UDFS_VAL_TRELLIS, 0.6);
	test_mask_format(false, 1);  /* Rice-coded gaps */
	test_mask_format(true, 4);   /* range-coded gaps */
	test_codes_format(false, 7); /* rANS, 32 lanes (65536 codes) */
	test_codes_format(true, 3);  /* range-coded */
	test_bad_encode();
	test_size(0.9, UDFS_MASK_EXPLICIT);
	test_size(0.97, UDFS_MASK_EXPLICIT);
	test_size(0.9, UDFS_MASK_SEEDED);
	if (getenv("UDFS_BENCH")) {
		double ss[3] = {0.5, 0.9, 0.97};

		for (int i = 0; i < 3; i++) {
			bench(ss[i], UDFS_MASK_EXPLICIT);
			bench(ss[i], UDFS_MASK_SEEDED);
		}
	}
	CHECK_DONE();
}

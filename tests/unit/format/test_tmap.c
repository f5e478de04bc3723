// SPDX-License-Identifier: MIT
/*
 * Unit tests for a file's tensor map (format/tmap.h): every encoding and
 * field survives a round trip, with the names, dtypes, shapes and ranges
 * taken from the header; the record sizes the store counts are the real
 * ones; and every truncation, extension and malformed field is -EIO with
 * no tensor left behind.
 */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"
#include "format/tmap.h"

/* Tensor a (BF16 [2,3], 12 bytes) then b (F32, 2^20 + 3 elements: five
 * chunks), then c (U8 [0]: empty). */
static const char json[] =
    "{\"b\":{\"dtype\":\"F32\",\"shape\":[1048579],\"data_offsets\":[12,"
    "4194328]},\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,"
    "12]},\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4194328,"
    "4194328]}}";

/* The model the files belong to: its seed keys seeded masks. */
static udfs_model model = {.seed = 42};

/* The header of the file and the file's description, as the catalog
 * keeps them (no tensors yet). */
static void describe_file(udfs_file *f)
{
	size_t n = strlen(json);

	memset(f, 0, sizeof(*f));
	f->model = &model;
	f->path = udfs_xstrdup("model.safetensors");
	f->kind = UDFS_FILE_SAFETENSORS;
	f->data_offset = 8 + n;
	f->size = f->data_offset + 4194328;
	f->header = udfs_xmalloc(f->data_offset);
	for (int i = 0; i < 8; i++)
		f->header[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(f->header + 8, json, n);
}

static void set_chunks(udfs_tensor *t, uint64_t *off, uint32_t n)
{
	t->n_chunks = n;
	t->chunks = udfs_xcalloc(n, sizeof(*t->chunks));
	for (uint32_t i = 0; i < n; i++) {
		t->chunks[i].offset = *off;
		t->chunks[i].length = 1000 + 37 * i;
		t->chunks[i].checksum = 0x0123456789abcdefULL * (i + 3);
		*off += t->chunks[i].length;
		t->stored_bytes += t->chunks[i].length;
	}
}

/* The file with its tensors: a adaptive (lossy), b xor, c same. With
 * compact, a's parameters take their usual values where they can (a
 * seeded mask keyed by the model, an f32 rate, gain 1). */
static void full_file(udfs_file *f, bool compact)
{
	uint64_t off = 16;
	udfs_tensor *t;

	describe_file(f);
	f->n_tensors = 3;
	f->tensors = t = udfs_xcalloc(3, sizeof(*t));
	t[0].enc = UDFS_ENC_ADAPTIVE;
	t[0].begin = 0;
	t[0].end = 12;
	t[0].base_file_id = 7;
	t[0].base_begin = 300;
	t[0].lp = (udfs_lossy_params){.mask = 1,
				      .values = 2,
				      .bits = 3,
				      .lo = -0.25f,
				      .step = 1.5e-3f,
				      .gain = 1.0625f,
				      .rate = 0.7000000000000001,
				      .seed = 0xfedcba9876543210ULL};
	if (compact) {
		t[0].lp.seed = udfs_seeded_key(42, "a");
		t[0].lp.rate = 0.7f;
		t[0].lp.gain = 1.0f;
	}
	t[0].name = udfs_xstrdup("a");
	set_chunks(&t[0], &off, 1);
	t[1].enc = UDFS_ENC_XOR;
	t[1].begin = 12;
	t[1].end = 4194328;
	t[1].base_file_id = 7;
	t[1].base_begin = 312;
	set_chunks(&t[1], &off, 5);
	t[2].enc = UDFS_ENC_SAME;
	t[2].begin = t[2].end = 4194328;
	t[2].base_file_id = 8;
}

static void free_file(udfs_file *f)
{
	udfs_tensors_free(f->tensors, f->n_tensors);
	free(f->header);
	free(f->path);
}

static bool same_tensor(const udfs_tensor *a, const udfs_tensor *b)
{
	bool ok = a->enc == b->enc && a->begin == b->begin &&
		  a->end == b->end && a->base_file_id == b->base_file_id &&
		  a->base_begin == b->base_begin &&
		  a->stored_bytes == b->stored_bytes &&
		  a->n_chunks == b->n_chunks &&
		  memcmp(&a->lp, &b->lp, sizeof(a->lp)) == 0;

	for (uint32_t i = 0; ok && i < a->n_chunks; i++)
		ok = a->chunks[i].offset == b->chunks[i].offset &&
		     a->chunks[i].length == b->chunks[i].length &&
		     a->chunks[i].checksum == b->chunks[i].checksum;
	return ok;
}

static int decode(udfs_file *g, const unsigned char *map, size_t len)
{
	describe_file(g);
	udfs_error_clear();
	return udfs_tmap_decode(g, map, len, "test");
}

static void test_round_trip(bool compact)
{
	udfs_file f, g;
	unsigned char *map;
	size_t len, sum = 1;

	full_file(&f, compact);
	for (size_t i = 0; i < 3; i++)
		f.tensors[i].file = &f;
	map = udfs_tmap_encode(&f, &len);
	CHECK_EQ_INT(decode(&g, map, len), 0);
	CHECK_EQ_INT(g.n_tensors, 3);
	for (size_t i = 0; i < 3 && g.n_tensors == 3; i++) {
		CHECK(same_tensor(&f.tensors[i], &g.tensors[i]));
		CHECK(g.tensors[i].file == &g);
		sum += udfs_tmap_record_bytes(&f.tensors[i]);
	}
	if (g.n_tensors == 3) {
		CHECK_EQ_STR(g.tensors[0].name, "a");
		CHECK_EQ_INT(g.tensors[0].dtype, UDFS_DT_BF16);
		CHECK_EQ_INT(g.tensors[0].ndim, 2);
		CHECK_EQ_INT(g.tensors[0].shape[1], 3);
		CHECK_EQ_INT(g.tensors[0].nelems, 6);
		CHECK_EQ_STR(g.tensors[1].name, "b");
		CHECK_EQ_INT(g.tensors[1].nelems, 1048579);
		CHECK_EQ_STR(g.tensors[2].name, "c");
	}
	/* The chunks run on from one another: record sizes add up to the
	 * map, a byte for the version aside. */
	CHECK_EQ_INT(sum, len);
	/* What the planners assume per record is what the usual one takes;
	 * gain 1 and the seed cost nothing. */
	CHECK_EQ_INT(udfs_tmap_record_bytes(&f.tensors[0]),
		     compact ? 1 + 1 + 2 + 14 + 1 + 2 + 8
			     : 1 + 1 + 2 + 32 + 1 + 2 + 8);
	CHECK(!compact || udfs_tmap_record_bytes(&f.tensors[0]) <=
			      UDFS_TENSOR_REC_BYTES + UDFS_LOSSY_PARAM_BYTES +
				  UDFS_CHUNK_REF_BYTES);
	CHECK(udfs_tmap_record_bytes(&f.tensors[1]) <=
	      UDFS_TENSOR_REC_BYTES + 5 * UDFS_CHUNK_REF_BYTES);
	CHECK(udfs_encoded_bytes(&f.tensors[1]) ==
	      f.tensors[1].stored_bytes +
		  udfs_tmap_record_bytes(&f.tensors[1]));
	free_file(&g);
	free(map);
	free_file(&f);
}

/* A verbatim file: its pseudo-tensor from the size; none in a base. */
static void test_verbatim(void)
{
	char path[] = "config.json";
	udfs_file f = {.path = path, .kind = UDFS_FILE_VERBATIM, .size = 516};
	udfs_tensor t = {0};
	unsigned char *map;
	size_t len;

	CHECK_EQ_INT(udfs_tensor_verbatim(&t, 516), 0);
	t.enc = UDFS_ENC_SAME;
	t.base_file_id = 1;
	f.tensors = &t;
	f.n_tensors = 1;
	map = udfs_tmap_encode(&f, &len);
	CHECK_EQ_INT(len, 4);
	f.tensors = NULL;
	f.n_tensors = 0;
	CHECK_EQ_INT(udfs_tmap_decode(&f, map, len, "test"), 0);
	CHECK_EQ_INT(f.n_tensors, 1);
	if (f.n_tensors == 1) {
		CHECK_EQ_STR(f.tensors[0].name, "");
		CHECK_EQ_INT(f.tensors[0].dtype, UDFS_DT_U8);
		CHECK_EQ_INT(f.tensors[0].end, 516);
		CHECK_EQ_INT(f.tensors[0].enc, UDFS_ENC_SAME);
		CHECK_EQ_INT(f.tensors[0].base_file_id, 1);
	}
	udfs_tensors_free(f.tensors, f.n_tensors);
	f.tensors = NULL;
	f.n_tensors = 0;
	/* A base model's verbatim file: the version byte alone. */
	CHECK_EQ_INT(udfs_tmap_decode(&f, map, 1, "test"), 0);
	CHECK_EQ_INT(f.n_tensors, 0);
	udfs_tensors_free(f.tensors, f.n_tensors);
	free(map);
	free(t.name);
	free(t.shape);
}

static void expect_bad(const char *what, const unsigned char *map, size_t len)
{
	udfs_file g;
	int err = decode(&g, map, len);

	if (err != -EIO || g.tensors || g.n_tensors)
		fprintf(stderr, "case %s: %d\n", what, err);
	CHECK_EQ_INT(err, -EIO);
	CHECK(g.tensors == NULL && g.n_tensors == 0);
	CHECK(strstr(udfs_error_msg(err), "test") != NULL);
	free_file(&g);
}

/* Every cut and every extension of a good map, and bad fields. */
static void test_malformed(void)
{
	udfs_file f;
	unsigned char *map, *b;
	size_t len;

	full_file(&f, false);
	for (size_t i = 0; i < 3; i++)
		f.tensors[i].file = &f;
	map = udfs_tmap_encode(&f, &len);
	b = udfs_xmalloc(len + 1);
	for (size_t n = 0; n < len; n++)
		expect_bad("truncated", map, n);
	memcpy(b, map, len);
	b[len] = 0;
	expect_bad("extended", b, len + 1);

	memcpy(b, map, len);
	b[0] = 2;
	expect_bad("version", b, len);
	b[0] = 1;
	b[1] = (unsigned char)(UDFS_ENC_COUNT | 0x80);
	expect_bad("encoding", b, len);
	b[1] = UDFS_ENC_ADAPTIVE | 0x80 | 0x20;
	expect_bad("head bits", b, len);
	b[1] = UDFS_ENC_ADAPTIVE; /* lossy without a base */
	expect_bad("no base", b, len);
	b[1] = UDFS_ENC_ADAPTIVE | 0x80;
	b[2] = 0;
	expect_bad("base id 0", b, len);
	b[2] = 0x87; /* 7 with a redundant zero byte after it */
	{
		unsigned char *c = udfs_xmalloc(len + 1);

		memcpy(c, b, 3);
		c[3] = 0;
		memcpy(c + 4, b + 3, len - 3);
		expect_bad("overlong varint", c, len + 1);
		free(c);
	}
	free(b);
	free(map);

	/* A chunk that claims more than any chunk stores. */
	f.tensors[1].chunks[2].length = UDFS_CHUNK_MAX_STORED + 1;
	map = udfs_tmap_encode(&f, &len);
	expect_bad("chunk length", map, len);
	free(map);
	/* A chunk before offset 0. */
	f.tensors[1].chunks[2].length = 10;
	f.tensors[0].chunks[0].offset = 0;
	f.tensors[1].chunks[0].offset = 0;
	f.tensors[1].chunks[1].offset = 0;
	f.tensors[1].chunks[2].offset = (uint64_t)-5;
	map = udfs_tmap_encode(&f, &len);
	expect_bad("negative offset", map, len);
	free(map);
	free_file(&f);

	/* Parameters stored that their usual value would leave out: the
	 * encoder never writes them, so the decoder refuses them (one map,
	 * one way to write it). */
	full_file(&f, true);
	for (size_t i = 0; i < 3; i++)
		f.tensors[i].file = &f;
	map = udfs_tmap_encode(&f, &len);
	b = udfs_xcalloc(len + 16, 1);
	{
		double r = 0.7f;
		uint64_t key = udfs_seeded_key(42, "a");
		size_t at = 7 + 8; /* after version, head, id, offset, kinds,
				      flags, lo, step: the f32 rate */
		size_t n;

		CHECK_EQ_INT(map[6], 0x23); /* lo, step, seed key */
		memcpy(b, map, at);
		b[6] = 0x2b; /* the rate as f64 */
		memcpy(b + at, &r, 8);
		memcpy(b + at + 8, map + at + 4, len - at - 4);
		expect_bad("f64 rate that f32 holds", b, len + 4);

		memcpy(b, map, at + 4);
		b[6] = 0x13; /* the key written out */
		n = at + 4;
		while (key >= 0x80) {
			b[n++] = (unsigned char)(key | 0x80);
			key >>= 7;
		}
		b[n++] = (unsigned char)key;
		memcpy(b + n, map + at + 4, len - at - 4);
		expect_bad("seed that is the key", b, n + len - at - 4);

		memcpy(b, map, len);
		b[6] = 0x33;
		expect_bad("two seeds", b, len);
		b[6] = 0x63;
		expect_bad("flag bit 6", b, len);
		memcpy(b, map, len);
		b[6] = 0x2b;
		expect_bad("f64 flag over an f32", b, len);
	}
	free(b);
	free(map);
	free_file(&f);

	/* A header row that is not the header it claims to be. */
	{
		udfs_file g;
		unsigned char one = 1;

		describe_file(&g);
		g.data_offset -= 1;
		udfs_error_clear();
		CHECK_EQ_INT(udfs_tmap_decode(&g, &one, 1, "test"), -EIO);
		CHECK(g.tensors == NULL);
		free_file(&g);
	}
}

int main(void)
{
	test_round_trip(false);
	test_round_trip(true);
	test_verbatim();
	test_malformed();
	CHECK_DONE();
}

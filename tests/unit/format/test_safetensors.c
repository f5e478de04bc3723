// SPDX-License-Identifier: MIT
/*
 * Unit tests for the strict safetensors parser: valid files of every dtype
 * (built in memory), the -EAGAIN protocol, udfs_st_read_fd, and a corpus
 * of malformed headers that must each fail with -EINVAL and a message that
 * says what is wrong. Fuzzing crashes become cases here too.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "format/safetensors.h"

/* A file image: 8-byte length, the JSON header (hlen bytes, may hold any
 * byte), then data_len bytes of data. */
static unsigned char *mk_raw(const char *json, size_t hlen, size_t data_len,
			     size_t *len)
{
	unsigned char *b = udfs_xcalloc(1, 8 + hlen + data_len + 1);

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	memcpy(b + 8, json, hlen);
	for (size_t i = 0; i < data_len; i++)
		b[8 + hlen + i] = (unsigned char)(i * 7 + 1);
	*len = 8 + hlen + data_len;
	return b;
}

static unsigned char *mk(const char *json, size_t data_len, size_t *len)
{
	return mk_raw(json, strlen(json), data_len, len);
}

static int parse(const unsigned char *b, size_t len, udfs_st_header **h)
{
	udfs_error_clear();
	return udfs_st_parse("model.safetensors", b, len, len, NULL, h);
}

/* Expect -EINVAL and a message containing want (and the file label). */
static void bad_img(const char *what, const unsigned char *b, size_t len,
		    const char *want)
{
	udfs_st_header *h = NULL;
	int err = parse(b, len, &h);

	CHECK_EQ_INT(err, -EINVAL);
	CHECK(h == NULL);
	if (getenv("UDFS_TEST_VERBOSE"))
		fprintf(stderr, "%-24.24s -> %s\n", what, udfs_error_msg(err));
	if (!strstr(udfs_error_msg(err), want) ||
	    !strstr(udfs_error_msg(err), "model.safetensors")) {
		fprintf(stderr, "case \"%s\": message \"%s\" lacks \"%s\"\n",
			what, udfs_error_msg(err), want);
		CHECK(0);
	}
	udfs_st_free(h);
}

static void bad(const char *json, size_t data_len, const char *want)
{
	size_t len;
	unsigned char *b = mk(json, data_len, &len);

	bad_img(json, b, len, want);
	free(b);
}

#define T(name, dt, shape, b, e)                                               \
	"\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape                  \
	",\"data_offsets\":[" #b "," #e "]}"

static void test_every_dtype(void)
{
	struct sbuf {
		char s[8192];
		size_t n;
	} j = {.n = 0};
	uint64_t off = 0, want_len[UDFS_DT_COUNT];
	udfs_st_header *h = NULL;
	unsigned char *b;
	size_t len;
	int err;

	/* Tensors in reverse dtype order in the JSON but increasing offsets
	 * in reverse too, so sorting by begin is exercised. */
	for (int dt = 0; dt < UDFS_DT_COUNT; dt++) {
		unsigned bits = udfs_dtype_bits(dt);
		/* 24 elements: a whole number of bytes for 4 and 6 bits. */
		want_len[dt] = 24 * bits / 8;
	}
	j.n += (size_t)snprintf(j.s + j.n, sizeof(j.s) - j.n,
				"{\"__metadata__\":{\"format\":\"pt\","
				"\"b\":\"2\"}");
	for (int dt = UDFS_DT_COUNT - 1; dt >= 0; dt--) {
		uint64_t begin = 0;

		for (int k = 0; k < dt; k++)
			begin += want_len[k];
		j.n += (size_t)snprintf(
		    j.s + j.n, sizeof(j.s) - j.n,
		    ",\"t%02d\":{\"dtype\":\"%s\","
		    "\"shape\":[2,3,4],\"data_offsets\":"
		    "[%llu,%llu]}",
		    dt, udfs_dtype_name(dt), (unsigned long long)begin,
		    (unsigned long long)(begin + want_len[dt]));
		off += want_len[dt];
	}
	/* A zero-size tensor at the end and a scalar. */
	j.n += (size_t)snprintf(
	    j.s + j.n, sizeof(j.s) - j.n,
	    ",\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],"
	    "\"data_offsets\":[%llu,%llu]}"
	    ",\"s\":{\"dtype\":\"F64\",\"shape\":[],"
	    "\"data_offsets\":[%llu,%llu]}}    ",
	    (unsigned long long)off, (unsigned long long)off,
	    (unsigned long long)off, (unsigned long long)off + 8);
	off += 8;
	b = mk(j.s, (size_t)off, &len);
	err = parse(b, len, &h);
	CHECK_EQ_INT(err, 0);
	if (err) {
		fprintf(stderr, "%s\n", udfs_error_msg(err));
		free(b);
		return;
	}
	CHECK_EQ_INT(h->n_tensors, UDFS_DT_COUNT + 2);
	CHECK_EQ_INT(h->header_len, strlen(j.s));
	CHECK_EQ_INT(h->data_offset, 8 + strlen(j.s));
	CHECK_EQ_INT(h->data_len, off);
	CHECK(memcmp(h->raw, b, h->data_offset) == 0);
	CHECK_EQ_INT(h->n_meta, 2);
	CHECK_EQ_STR(h->meta_keys[0], "format");
	CHECK_EQ_STR(h->meta_values[0], "pt");
	CHECK_EQ_STR(h->meta_keys[1], "b");
	for (size_t i = 1; i < h->n_tensors; i++)
		CHECK(h->tensors[i - 1].end == h->tensors[i].begin);
	for (int dt = 0; dt < UDFS_DT_COUNT; dt++) {
		char name[16];
		const udfs_st_tensor *t;

		snprintf(name, sizeof(name), "t%02d", dt);
		t = udfs_st_find(h, name);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK_EQ_STR(t->name, name);
		CHECK_EQ_INT(t->dtype, dt);
		CHECK_EQ_INT(t->ndim, 3);
		CHECK_EQ_INT(t->shape[2], 4);
		CHECK_EQ_INT(t->nelems, 24);
		CHECK_EQ_INT(t->end - t->begin, want_len[dt]);
		CHECK(t == &h->tensors[dt]);
	}
	CHECK(udfs_st_find(h, "z") != NULL);
	CHECK_EQ_INT(udfs_st_find(h, "z")->nelems, 0);
	CHECK_EQ_INT(udfs_st_find(h, "s")->ndim, 0);
	CHECK_EQ_INT(udfs_st_find(h, "s")->nelems, 1);
	CHECK(udfs_st_find(h, "nope") == NULL);
	CHECK(udfs_st_find(h, "t") == NULL);
	CHECK(udfs_st_find(h, "__metadata__") == NULL);
	udfs_st_free(h);
	free(b);
}

static void test_minimal(void)
{
	udfs_st_header *h = NULL;
	unsigned char *b;
	size_t len;
	uint64_t need = 0;

	/* No tensors at all, no metadata: legal. */
	b = mk("{}", 0, &len);
	CHECK_EQ_INT(parse(b, len, &h), 0);
	CHECK(h && h->n_tensors == 0 && h->n_meta == 0 && h->data_len == 0);
	CHECK(udfs_st_find(h, "a") == NULL);
	udfs_st_free(h);
	free(b);

	/* Two zero-size tensors at offset 0 in an otherwise empty file. */
	b = mk("{" T("a", "F32", "[0]", 0, 0) "," T("b", "BF16", "[3,0]", 0,
						    0) "}",
	       0, &len);
	CHECK_EQ_INT(parse(b, len, &h), 0);
	CHECK(h && h->n_tensors == 2);
	udfs_st_free(h);
	free(b);

	/* The -EAGAIN protocol: 8 bytes first, then the whole header. */
	b = mk("{" T("a", "U8", "[4]", 0, 4) "}", 4, &len);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_st_parse("x", b, 3, len, &need, &h), -EAGAIN);
	CHECK_EQ_INT(need, 8);
	CHECK_EQ_INT(udfs_st_parse("x", b, 8, len, &need, &h), -EAGAIN);
	CHECK_EQ_INT(need, len - 4);
	CHECK_EQ_INT(udfs_st_parse("x", b, (size_t)need, len, &need, &h), 0);
	udfs_st_free(h);
	udfs_st_free(NULL);
	free(b);
}

static void test_read_fd(void)
{
	char path[] = "/tmp/udfs-test-st-XXXXXX";
	udfs_st_header *h = NULL;
	unsigned char *b;
	size_t len;
	int fd, err;

	b = mk("{" T("w", "F16", "[2,2]", 0, 8) "}  ", 8, &len);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_EQ_INT(udfs_write_full(fd, b, len), 0);
	udfs_error_clear();
	err = udfs_st_read_fd(path, fd, &h);
	CHECK_EQ_INT(err, 0);
	CHECK(h && h->n_tensors == 1 && memcmp(h->raw, b, len - 8) == 0);
	udfs_st_free(h);
	h = NULL;

	/* Truncated to the header: tensors go past the end. */
	CHECK_EQ_INT(ftruncate(fd, (off_t)(len - 1)), 0);
	udfs_error_clear();
	err = udfs_st_read_fd(path, fd, &h);
	CHECK_EQ_INT(err, -EINVAL);
	CHECK(strstr(udfs_error_msg(err), "past the end") != NULL);
	CHECK(strstr(udfs_error_msg(err), path) != NULL);
	CHECK_EQ_INT(ftruncate(fd, 5), 0);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_st_read_fd(path, fd, &h), -EINVAL);
	close(fd);
	unlink(path);
	free(b);
}

static void test_malformed(void)
{
	unsigned char *b;
	size_t len;
	unsigned char tiny[5] = {1, 0, 0, 0, 0};

	bad_img("truncated", tiny, sizeof(tiny), "too short");
	bad_img("empty", tiny, 0, "too short");

	/* Header length past the end of the file. */
	b = mk("{}", 0, &len);
	b[0] = 200;
	b[1] = 3;
	bad_img("length past end", b, len,
		"header length 968 exceeds file size 10");
	b[0] = 0;
	b[1] = 0;
	b[4] = 1; /* 2^32 > 100,000,000 */
	bad_img("length too big", b, len, "exceeds the limit");
	free(b);

	bad("{\"a\": ", 0, "not valid JSON");
	bad("{} x", 0, "not valid JSON");
	bad("{\"a\xff\": 1}", 0, "UTF-8");
	bad("{\"\xc3\x28\": 1}", 0, "UTF-8");
	b = mk_raw("{\"a\0\":{}}", 9, 0, &len);
	bad_img("NUL byte", b, len, "NUL");
	free(b);
	b = mk_raw("{}\0\0", 4, 0, &len);
	bad_img("NUL padding", b, len, "NUL");
	free(b);
	bad("[1,2]", 0, "not a JSON object");
	bad("  {}", 0, "not a JSON object");
	bad("\"str\"", 0, "not a JSON object");
	bad("{\"\\u0000\":1}", 0, "not valid JSON");

	bad("{\"__metadata__\":{\"a\":1}}", 0, "not a string");
	bad("{\"__metadata__\":{\"a\":null}}", 0, "not a string");
	bad("{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is not an object");
	bad("{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object");
	bad("{\"__metadata__\":null}", 0, "__metadata__ is not an object");

	bad("{" T("a", "F33", "[1]", 0, 4) "}", 4, "unknown dtype \"F33\"");
	bad("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
	    "dtype is not a string");
	bad("{" T("a", "F32", "[-1]", 0, 0) "}", 0, "non-negative integers");
	bad("{" T("a", "F32", "[2.0]", 0, 8) "}", 8, "non-negative integers");
	bad("{" T("a", "F32", "[\"2\"]", 0, 8) "}", 8, "non-negative integers");
	bad("{" T("a", "F32", "[[2]]", 0, 8) "}", 8, "non-negative integers");
	bad("{" T("a", "F32", "{}", 0, 8) "}", 8, "shape is not an array");
	bad("{" T("a", "U8", "[4294967296,4294967296]", 0, 8) "}", 8,
	    "overflows the element count");
	/* The running product overflows before the 0: still an error. */
	bad("{" T("a", "U8", "[4294967296,4294967296,0]", 0, 0) "}", 0,
	    "overflows");
	bad("{" T("a", "F64", "[2305843009213693952]", 0, 8) "}", 8,
	    "overflows the byte size");
	bad("{" T("a", "F32", "[99999999999999999999]", 0, 8) "}", 8,
	    "not valid JSON");

	bad("{" T("a", "U8", "[4]", 0, 4) "," T("b", "U8", "[4]", 6, 10) "}",
	    10, "hole");
	bad("{" T("a", "U8", "[4]", 2, 6) "}", 6, "hole");
	bad("{" T("a", "U8", "[4]", 0, 4) "," T("b", "U8", "[4]", 2, 6) "}", 6,
	    "overlap");
	bad("{" T("a", "U8", "[0]", 5, 4) "}", 5, "begin after end");
	bad("{" T("a", "U8", "[4]", 0, 4) "}", 3, "past the end");
	bad("{" T("a", "U8", "[4]", 0, 4) "}", 6, "2 trailing bytes");
	bad("{" T("a", "U8", "[0]", 0, 0) "}", 1, "trailing");
	bad("{" T("a", "F32", "[10,10]", 0, 400) "}", 399, "past the end");
	bad("{" T("a", "U8", "[1]", 0, 1) "," T("a", "U8", "[1]", 1, 2) "}", 2,
	    "duplicate");
	bad("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
	    "missing field \"dtype\"");
	bad("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
	    "missing field \"shape\"");
	bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1,
	    "missing field \"data_offsets\"");
	bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
	    "\"x\":1}}",
	    1, "unknown field \"x\"");
	bad("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
	    "\"data_offsets\":[0,1]}}",
	    1, "duplicate");
	bad("{\"a\":[1]}", 1, "tensor \"a\" is not an object");
	bad("{" T("a", "U8", "[1]", 0, 1) ",\"b\":{\"dtype\":\"U8\",\"shape\":"
					  "[1],\"data_offsets\":[1]}}",
	    2, "data_offsets must be");
	bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}",
	    1, "data_offsets must be");
	bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}",
	    1, "data_offsets must be");
	bad("{" T("a.weight", "F32", "[2, 3]", 0, 10) "}", 10,
	    "model.safetensors: tensor \"a.weight\": data_offsets [0, 10] "
	    "hold 10 bytes but shape [2, 3] of F32 needs 24");
	bad("{" T("a", "F4", "[3]", 0, 1) "}", 1, "misaligned");
	bad("{" T("a", "F6_E2M3", "[2]", 0, 1) "}", 1, "misaligned");
}

/* A header claiming 10^12 elements in a tiny file fails at once without
 * allocating anything of that size. */
static void test_huge_claims(void)
{
	double t0 = udfs_now();

	bad("{" T("a", "F32", "[1000000,1000000]", 0, 4000000000000) "}", 16,
	    "past the end");
	bad("{" T("a", "F32", "[1000000,1000000]", 0, 16) "}", 16,
	    "needs 4000000000000");
	bad("{" T("a", "U8", "[1]", 0, 1) "," T("b", "U8", "[1]", 999999999999,
						1000000000000) "}",
	    1, "hole");
	CHECK(udfs_now() - t0 < 1.0);
}

int main(void)
{
	test_every_dtype();
	test_minimal();
	test_read_fd();
	test_malformed();
	test_huge_claims();
	CHECK_DONE();
}

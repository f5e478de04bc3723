// SPDX-License-Identifier: MIT
/*
 * The safetensors parser when memory runs out. It runs in the mount daemon
 * (a catalog's headers are parsed when it is loaded), which must answer
 * ENOMEM and live, never abort. One chosen allocation of the parser
 * fails (failalloc.h): for every n until a parse needs fewer
 * than n allocations, failing the n-th must give -ENOMEM, no header, and
 * no leak (LeakSanitizer, under `make asan`); then the parse succeeds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "failalloc.h"
#include "format/safetensors.h"

static const char json[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"b\":\"c\"},"
    "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
    "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}";

/* The file image: length, header, 20 bytes of data. */
static unsigned char *image(size_t *len)
{
	size_t hl = sizeof(json) - 1;
	unsigned char *b = udfs_xcalloc(1, 8 + hl + 20);

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, json, hl);
	*len = 8 + hl + 20;
	return b;
}

/* Fail allocation n of parse(); returns its result, *h set on success. */
static int parse_failing(long n, const unsigned char *b, size_t len,
			 udfs_st_header **h)
{
	int err;

	failalloc_arm(n);
	err = udfs_st_parse("t.safetensors", b, len, len, NULL, h);
	failalloc_disarm();
	return err;
}

static int read_failing(long n, int fd, udfs_st_header **h)
{
	int err;

	failalloc_arm(n);
	err = udfs_st_read_fd("t.safetensors", fd, h);
	failalloc_disarm();
	return err;
}

int main(void)
{
	size_t len;
	unsigned char *b = image(&len);
	char path[] = "/tmp/udfs-st-nomem.XXXXXX";
	int fd = mkstemp(path), err = -ENOMEM, failed = 0;
	udfs_st_header *h = NULL;

	CHECK(fd >= 0);
	CHECK(udfs_write_full(fd, b, len) == 0);
	unlink(path);
	for (long n = 0; err == -ENOMEM && n < 100; n++) {
		err = parse_failing(n, b, len, &h);
		if (err == -ENOMEM) {
			CHECK(h == NULL);
			failed++;
		}
	}
	CHECK_EQ_INT(err, 0);
	CHECK(failed >= 6); /* header, raw, tensors, names, shapes, index */
	CHECK(h && h->n_tensors == 2 && h->n_meta == 2);
	udfs_st_free(h);
	err = -ENOMEM;
	for (long n = 0; err == -ENOMEM && n < 100; n++) {
		h = NULL;
		err = read_failing(n, fd, &h);
		if (err == -ENOMEM)
			CHECK(h == NULL);
	}
	CHECK_EQ_INT(err, 0);
	udfs_st_free(h);
	close(fd);
	free(b);
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the model.safetensors.index.json check: the input
 * is the index file, checked against a fixed set of two fake shards
 * (tensors a, b in model-00001-of-00002.safetensors, c in
 * model-00002-of-00002.safetensors).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "format/safetensors.h"
#include "format/source_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *names[2] = {
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
};
static const udfs_st_header *shards[2];

static const udfs_st_header *fake_shard(const char *json, size_t data_len)
{
	size_t hl = strlen(json), len = 8 + hl + data_len;
	unsigned char *img = calloc(1, len);
	udfs_st_header *h = NULL;

	if (!img)
		abort();
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, hl);
	if (udfs_st_parse("fake", img, len, len, NULL, &h))
		abort();
	free(img);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int err;

	if (!shards[0]) {
		shards[0] =
		    fake_shard("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],"
			       "\"data_offsets\":[0,4]},"
			       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],"
			       "\"data_offsets\":[4,8]}}",
			       8);
		shards[1] =
		    fake_shard("{\"c\":{\"dtype\":\"F32\",\"shape\":[1,1],"
			       "\"data_offsets\":[0,4]}}",
			       4);
	}
	udfs_error_clear();
	err = udfs_index_check("model.safetensors.index.json", data, size, 2,
			       names, shards);
	if (err && err != -EINVAL)
		abort();
	return 0;
}

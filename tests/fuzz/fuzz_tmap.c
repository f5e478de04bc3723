// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for a file's tensor map (udfs_tmap_decode in
 * src/format/tmap.c), the catalog's per-file byte string. Byte 0 bit 0
 * picks the file: a safetensors file of three tensors (one of five
 * chunks, one empty) or a verbatim file of 3 MiB; the rest is the map.
 * The decoder must answer 0 or -EIO and, on 0, give tensors that tile
 * the file with a chunk map of the right count each; a map it accepts
 * must encode back to the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "format/tmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char json[] =
    "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
    "\"b\":{\"dtype\":\"F32\",\"shape\":[1048579],\"data_offsets\":[12,"
    "4194328]},\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":["
    "4194328,4194328]}}";

static void make_file(udfs_file *f, int verbatim)
{
	size_t n = strlen(json);

	memset(f, 0, sizeof(*f));
	f->path = (char *)"model";
	if (verbatim) {
		f->kind = UDFS_FILE_VERBATIM;
		f->size = 3u << 20;
		return;
	}
	f->kind = UDFS_FILE_SAFETENSORS;
	f->data_offset = 8 + n;
	f->size = f->data_offset + 4194328;
	f->header = malloc(f->data_offset);
	for (int i = 0; i < 8; i++)
		f->header[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(f->header + 8, json, n);
}

static void check_tiling(const udfs_file *f)
{
	uint64_t at = 0;

	for (size_t i = 0; i < f->n_tensors; i++) {
		const udfs_tensor *t = &f->tensors[i];
		uint64_t want =
		    t->enc == UDFS_ENC_BASE || t->enc == UDFS_ENC_SAME
			? 0
			: (t->end - t->begin + UDFS_CHUNK_BYTES - 1) /
			      UDFS_CHUNK_BYTES;

		if (t->begin != at || t->n_chunks != want)
			abort();
		for (uint32_t k = 0; k < t->n_chunks; k++)
			if (t->chunks[k].length > UDFS_CHUNK_MAX_STORED)
				abort();
		at = t->end;
	}
	if (at != f->size - f->data_offset && f->n_tensors)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	udfs_file f;
	int err;

	if (size < 1)
		return 0;
	make_file(&f, data[0] & 1);
	udfs_error_clear();
	err = udfs_tmap_decode(&f, data + 1, size - 1, "fuzz");
	if (err && err != -EIO)
		abort();
	if (!err) {
		size_t len;
		unsigned char *map;

		check_tiling(&f);
		map = udfs_tmap_encode(&f, &len);
		if (len != size - 1 || memcmp(map, data + 1, len))
			abort();
		free(map);
	}
	udfs_tensors_free(f.tensors, f.n_tensors);
	free(f.header);
	return 0;
}

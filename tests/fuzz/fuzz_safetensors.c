// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the safetensors header parser: the input is a whole
 * file. A successful parse must satisfy the invariants the rest of udfs
 * relies on (tiling of the data area, raw header bytes, name lookup); any
 * failure must be a clean -EINVAL, never -EAGAIN for a complete file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	udfs_st_header *h = NULL;
	uint64_t need = 0, pos = 0;
	int err;

	udfs_error_clear();
	err = udfs_st_parse("fuzz.safetensors", data, size, size, &need, &h);
	if (err == -EAGAIN || (err && err != -EINVAL) || (err && h))
		abort();
	if (!err) {
		if (h->data_offset + h->data_len != size ||
		    memcmp(h->raw, data, h->data_offset))
			abort();
		for (size_t i = 0; i < h->n_tensors; i++) {
			const udfs_st_tensor *t = &h->tensors[i];

			if (t->begin != pos || t->end < t->begin ||
			    udfs_st_find(h, t->name) != t)
				abort();
			pos = t->end;
		}
		if (pos != h->data_len)
			abort();
	}
	udfs_st_free(h);

	/* The incremental protocol: only the first 8 bytes available. */
	if (size >= 8) {
		udfs_error_clear();
		err =
		    udfs_st_parse("fuzz.safetensors", data, 8, size, &need, &h);
		if (err == -EAGAIN && (need <= 8 || need > size))
			abort();
		udfs_st_free(h);
	}
	return 0;
}

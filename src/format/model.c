// SPDX-License-Identifier: MIT
/*
 * The name tables of the model types (model.h): what the catalog stores
 * (encodings) and what the commands print, each written once.
 */
#include "format/model.h"

#include <stdlib.h>
#include <string.h>

static const char *const enc_names[UDFS_ENC_COUNT] = {
    [UDFS_ENC_BASE] = "base",
    [UDFS_ENC_SAME] = "same",
    [UDFS_ENC_XOR] = "xor",
    [UDFS_ENC_RAW] = "raw",
    [UDFS_ENC_ULTRADELTA] = "ultradelta",
    [UDFS_ENC_DARE] = "dare",
    [UDFS_ENC_BITDELTA] = "bitdelta",
    [UDFS_ENC_MAGNITUDE] = "magnitude",
    [UDFS_ENC_ADAPTIVE] = "adaptive",
};

const char *udfs_encoding_name(int enc)
{
	return enc >= 0 && enc < UDFS_ENC_COUNT ? enc_names[enc] : NULL;
}

int udfs_encoding_parse(const char *name)
{
	for (int i = 0; name && i < UDFS_ENC_COUNT; i++)
		if (strcmp(name, enc_names[i]) == 0)
			return i;
	return -1;
}

bool udfs_encoding_is_lossy(int enc)
{
	return enc >= UDFS_ENC_ULTRADELTA && enc <= UDFS_ENC_ADAPTIVE;
}

const char *udfs_model_kind_name(int kind)
{
	return kind == UDFS_MODEL_BASE ? "base" : "delta";
}

const char *udfs_file_kind_name(int kind)
{
	return kind == UDFS_FILE_SAFETENSORS ? "safetensors" : "verbatim";
}

const char *udfs_mask_name(int mask)
{
	return mask == UDFS_MASK_SEEDED ? "seeded"
	       : mask == UDFS_MASK_NONE ? "none"
					: "explicit";
}

bool udfs_file_has_header(const udfs_file *f, const void *header, uint64_t len)
{
	return f && f->header && len && f->data_offset == len &&
	       memcmp(f->header, header, len) == 0;
}

void udfs_tensors_free(udfs_tensor *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++) {
		free(t[i].name);
		free(t[i].shape);
		free(t[i].chunks);
	}
	free(t);
}

void udfs_files_free(udfs_file *files, size_t n)
{
	for (size_t i = 0; files && i < n; i++) {
		udfs_file *f = &files[i];

		udfs_tensors_free(f->tensors, f->n_tensors);
		free(f->header);
		free(f->path);
	}
	free(files);
}

/* SPDX-License-Identifier: MIT */
/*
 * Strict safetensors header parser, as strict as the reference
 * implementation: u64 little-endian header length N with N <= 100,000,000
 * and 8 + N <= file size; the header is a UTF-8 JSON object; __metadata__
 * maps strings to strings; every other key is a tensor with a known dtype,
 * a shape of non-negative integers and data_offsets [begin, end] whose
 * length equals elements x dtype size (overflow-checked); the tensors,
 * sorted by begin, tile the data area from 0 with no hole and no overlap,
 * and the data area is exactly file size - 8 - N bytes.
 *
 * The header bytes are kept exactly as read, so the store can reproduce
 * them byte for byte. Every size is checked against the real file size
 * before anything is allocated from it.
 */
#ifndef UDFS_SAFETENSORS_H
#define UDFS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define UDFS_ST_MAX_HEADER 100000000ULL

typedef struct udfs_st_tensor {
	char *name; /* owned by the header */
	int dtype;  /* enum udfs_dtype */
	int ndim;
	uint64_t *shape; /* ndim entries; owned by the header */
	uint64_t nelems;
	uint64_t begin; /* byte offsets relative to the data area */
	uint64_t end;
} udfs_st_tensor;

typedef struct udfs_st_header {
	uint64_t header_len;  /* N, the JSON length */
	uint64_t data_offset; /* 8 + N */
	uint64_t data_len;    /* file size - 8 - N */
	unsigned char *raw;   /* the first 8 + N bytes of the file, verbatim */
	size_t n_tensors;
	udfs_st_tensor *tensors; /* sorted by begin */
	size_t n_meta;
	char **meta_keys; /* __metadata__, in file order */
	char **meta_values;
} udfs_st_header;

/*
 * Parse the first 8 + N bytes of a safetensors file of file_size bytes.
 * buf holds len bytes from the start of the file (len >= 8; the parser says
 * how many it needs through -EAGAIN and *need when len is too short).
 * label names the file in error messages. On success *out is a new header
 * the caller frees with udfs_st_free(). Errors: -EINVAL (malformed, with a
 * message naming label and tensor), -ENOMEM.
 */
int udfs_st_parse(const char *label, const void *buf, size_t len,
		  uint64_t file_size, uint64_t *need, udfs_st_header **out);

/* Read and parse the header of an open file; same contract as above. */
int udfs_st_read_fd(const char *label, int fd, udfs_st_header **out);

/* Find a tensor by name (binary search on a name index); NULL if absent.
 * The pointer is valid until udfs_st_free(). */
const udfs_st_tensor *udfs_st_find(const udfs_st_header *h, const char *name);

void udfs_st_free(udfs_st_header *h);

#endif

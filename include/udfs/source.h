/* SPDX-License-Identifier: MIT */
/*
 * A model source given to udfs-compress: one .safetensors file, or a
 * Hugging Face model directory (safetensors shards named as the source
 * names them, model.safetensors.index.json, config.json, tokenizer files,
 * every other regular file kept verbatim).
 *
 * Opening a source validates it completely before anything is written:
 * every safetensors header (safetensors.h), the index json's weight_map
 * against the shards (every tensor listed once, in the file it names; no
 * name escaping the directory), regular files only (a symlink is followed
 * only when it stays inside the directory; devices, fifos and sockets are
 * refused), hidden entries and subdirectories skipped.
 */
#ifndef UDFS_SOURCE_H
#define UDFS_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "udfs/safetensors.h"

typedef struct udfs_source_file {
	char *path; /* name inside the model directory */
	int kind;   /* enum udfs_file_kind (store.h) */
	uint64_t size;
	int fd;			  /* open read-only */
	const unsigned char *map; /* read-only mmap of the whole file, or NULL
				     for an empty file */
	udfs_st_header *st;	  /* safetensors files only */
} udfs_source_file;

typedef struct udfs_source {
	char *label; /* the SRC argument, for messages */
	size_t n_files;
	udfs_source_file *files; /* sorted by path */
	size_t n_tensors;	 /* over all safetensors files */
} udfs_source;

/* Open and validate a source. Caller closes with udfs_source_close().
 * Errors: -EINVAL/-ENOENT/-errno with one clear message. */
int udfs_source_open(const char *path, udfs_source **out);
void udfs_source_close(udfs_source *src);

/* Find a tensor by name across all shards; *file receives its file.
 * NULL when absent. */
const udfs_st_tensor *udfs_source_find(const udfs_source *src, const char *name,
				       const udfs_source_file **file);

#endif

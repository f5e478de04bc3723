/* SPDX-License-Identifier: MIT */
/*
 * A model source given to udfs-compress: one .safetensors file, or a
 * Hugging Face model directory (safetensors shards named as the source
 * names them, model.safetensors.index.json, config.json, tokenizer files,
 * and every other regular file kept verbatim, in subdirectories too).
 *
 * Opening a source validates it completely before anything is written:
 * every safetensors header (safetensors.h), the index json's weight_map
 * against the shards (every tensor listed once, in the file it names; no
 * name escaping the directory), regular files only (devices, fifos and
 * sockets are refused).
 *
 * Layout rules (README, udfs-compress(1)): subdirectories are kept
 * recursively as paths with '/', dotfiles are kept, only .git/ and .cache/
 * directories are skipped (with one note on stderr). A symlink is
 * followed when it resolves inside the directory or, for a Hugging Face
 * cache snapshot REPO/snapshots/REV, into REPO/blobs/; any other symlink
 * is refused with a hint to copy the model with cp -rL.
 *
 * A source holds no file descriptor: each file is mapped and its
 * descriptor closed, so sources of thousands of files fit the usual limit.
 */
#ifndef UDFS_SOURCE_H
#define UDFS_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "format/safetensors.h"

typedef struct udfs_source_file {
	char *path; /* path inside the model directory, '/'-separated */
	char *real; /* absolute path of the file read, symlinks resolved */
	int kind;   /* enum udfs_file_kind (model.h) */
	uint64_t size;
	unsigned mode;		  /* permission bits of the file read */
	uint64_t dev, ino;	  /* identity of the file read (fstat) */
	const unsigned char *map; /* read-only mmap of the whole file, or NULL
				     for an empty file */
	udfs_st_header *st;	  /* top-level .safetensors files only */
} udfs_source_file;

typedef struct udfs_source {
	char *label; /* the SRC argument, for messages */
	size_t n_files;
	udfs_source_file *files; /* sorted by path (strcmp) */
	size_t n_tensors;	 /* over all safetensors files */
	unsigned mode; /* permission bits for the stored copy: 0644 and
			  every file's mode (udfs(5), private weights) */
} udfs_source;

/* Open and validate a source. Caller closes with udfs_source_close().
 * Errors: -EINVAL/-ENOENT/-errno with one clear message. */
int udfs_source_open(const char *path, udfs_source **out);
void udfs_source_close(udfs_source *src);

/* Find a tensor by name across all shards; *file receives its file.
 * NULL when absent. */
const udfs_st_tensor *udfs_source_find(const udfs_source *src, const char *name,
				       const udfs_source_file **file);

/* The mapped bytes of tensor st of source file sf (valid while the source
 * is open). */
static inline const unsigned char *
udfs_source_tensor_bytes(const udfs_source_file *sf, const udfs_st_tensor *st)
{
	return sf->map + sf->st->data_offset + st->begin;
}

#endif

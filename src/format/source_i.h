/* SPDX-License-Identifier: MIT */
/*
 * Private to source.c and its fuzz target: the check of a Hugging Face
 * model.safetensors.index.json against the shards of a directory.
 */
#ifndef UDFS_SOURCE_I_H
#define UDFS_SOURCE_I_H

#include <stddef.h>

#include "format/safetensors.h"

#define UDFS_INDEX_NAME "model.safetensors.index.json"

/*
 * Check the index json in buf (len bytes; label names it in messages)
 * against n_shards safetensors files: names[i] is the file name of the
 * shard whose parsed header is shards[i]. The index must be an object with
 * a "weight_map" object mapping every tensor of every shard to the shard
 * holding it, and nothing else; shard names must be plain file names of
 * the given shards. Tensor names are assumed unique across shards (the
 * caller checks). Returns 0 or -EINVAL with one message.
 */
int udfs_index_check(const char *label, const void *buf, size_t len,
		     size_t n_shards, const char *const *names,
		     const udfs_st_header *const *shards);

#endif

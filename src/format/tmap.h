/* SPDX-License-Identifier: MIT */
/*
 * A file's tensor map: how each of its tensors is stored (encoding, base
 * tensor, lossy parameters, chunk map), packed into one byte string that
 * the catalog keeps in the file's row (udfs(5), files.tensor_map). What the
 * safetensors header already says (names, dtypes, shapes, byte ranges) is
 * not repeated: decoding takes it from the header, or from the file size
 * for the one pseudo-tensor of a verbatim file. On a small fine-tune
 * stored at 25x, rows of their own per tensor were a quarter of the bytes.
 */
#ifndef UDFS_TMAP_H
#define UDFS_TMAP_H

#include <stddef.h>
#include <stdint.h>

#include "format/model.h"
#include "format/safetensors.h"

#define UDFS_TMAP_VERSION 1

/* The tensor map of f's tensors, in a new buffer of *len bytes. */
unsigned char *udfs_tmap_encode(const udfs_file *f, size_t *len);

/*
 * Fill f->tensors (f->n_tensors of them) from map: f's path, kind, size,
 * data_offset and header must be set. Every byte is checked, against the
 * header too; -EIO when anything is malformed (the message names label),
 * with no tensor left in f. Lossy parameter values are checked where
 * chunks decode.
 */
int udfs_tmap_decode(udfs_file *f, const void *map, size_t len,
		     const char *label);

/* Bytes of t's record in its file's map; what udfs_encoded_bytes counts
 * for it besides the pack. */
size_t udfs_tmap_record_bytes(const udfs_tensor *t);

/*
 * What a record costs as the planners estimate it before the chunks
 * exist: a head and base reference, the lossy parameters (lossy
 * encodings) and a reference per chunk.
 */
#define UDFS_TENSOR_REC_BYTES 8
#define UDFS_LOSSY_PARAM_BYTES 18
#define UDFS_CHUNK_REF_BYTES 12

/* Bytes of v as a varint of the map. */
size_t udfs_tmap_varint_bytes(uint64_t v);

/* Bytes of the map's reference to a chunk of length stored bytes that
 * follows the one before it in the pack. */
size_t udfs_tmap_chunk_ref_bytes(uint32_t length);

/* Bytes t costs in the store: its pack chunks and its map record. Its
 * name, dtype and shape cost nothing more: the safetensors header holds
 * them whatever the encoding. */
uint64_t udfs_encoded_bytes(const udfs_tensor *t);

/* t described as the header describes st (name, dtype, shape, range).
 * 0 or -ENOMEM (what was allocated stays in t for udfs_tensors_free). */
int udfs_tensor_from_st(udfs_tensor *t, const udfs_st_tensor *st)
    __attribute__((warn_unused_result));

/* t as the pseudo-tensor of a verbatim file of size bytes (size > 0).
 * 0 or -ENOMEM, as udfs_tensor_from_st(). */
int udfs_tensor_verbatim(udfs_tensor *t, uint64_t size)
    __attribute__((warn_unused_result));

#endif

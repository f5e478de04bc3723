/* SPDX-License-Identifier: MIT */
/*
 * Reconstruction: the one code path that turns a store into the bytes of a
 * virtual file, shared by `udfs mount`, `udfs export`, `udfs verify` and
 * `udfs eval`. A read of any byte range decodes at most the chunks it
 * touches; header bytes come from the catalog, base-model bytes and SAME
 * tensors straight from the stored base file.
 */
#ifndef UDFS_RECON_H
#define UDFS_RECON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/store.h"

/* Output bytes of chunk ci of t (UDFS_CHUNK_BYTES but for the last). */
size_t udfs_chunk_out_len(const udfs_tensor *t, uint32_t ci);

/*
 * Decode chunk ci of tensor t (an encoding that has chunks) into out, which
 * holds udfs_chunk_out_len(t, ci) bytes: read the stored bytes from the
 * pack, check the checksum, decompress, combine with the base. A checksum
 * mismatch or malformed chunk is -EIO with a message naming model, file,
 * tensor and chunk. Thread-safe.
 */
int udfs_chunk_decode(const udfs_tensor *t, uint32_t ci, void *out);

/*
 * Where udfs_file_read gets decoded chunks. get() returns a pointer to the
 * chunk's output bytes and a handle given back to put() when the copy is
 * done. With no provider, chunks are decoded into a temporary buffer.
 */
typedef struct udfs_chunk_provider {
	int (*get)(void *ctx, const udfs_tensor *t, uint32_t ci,
		   const void **data, void **handle);
	void (*put)(void *ctx, void *handle);
	void *ctx;
} udfs_chunk_provider;

/*
 * Read up to size bytes of file f at off into buf. Returns the number of
 * bytes read (short only at end of file) or -errno (-EIO for a damaged
 * chunk: never wrong bytes).
 */
ssize_t udfs_file_read(const udfs_file *f, void *buf, size_t size, uint64_t off,
		       const udfs_chunk_provider *p);

/*
 * Where one piece of a read's bytes comes from: mem (header bytes, the
 * catalog's copy, valid while f is), or len bytes of file descriptor fd at
 * off (base files, SAME tensors), or (t set) bytes off.. of the decoded
 * chunk ci of tensor t.
 */
typedef struct udfs_piece {
	const unsigned char *mem;
	int fd;
	uint64_t off;
	const udfs_tensor *t;
	uint32_t ci;
	size_t len;
} udfs_piece;

/*
 * Cut the read of size bytes of f at off (clipped to the end of file, as
 * udfs_file_read() does) into pieces, in order, into p (room for max).
 * Returns the number of pieces, or -E2BIG when more than max are needed,
 * or -EIO (with a message) for a catalog that does not cover the range.
 * Lets a reader send decoded chunks from where they are, without a copy.
 */
int udfs_file_pieces(const udfs_file *f, uint64_t off, size_t size,
		     udfs_piece *p, size_t max);

/* Called for one chunk: chunk ci of tensor t. */
typedef void udfs_chunk_fn(void *ctx, const udfs_tensor *t, uint32_t ci);

/*
 * Call fn for each chunk that holds bytes of file f in [from, to), in
 * order. Header bytes and tensors read from the base have no chunks. Used
 * to decode ahead of a sequential reader.
 */
void udfs_file_each_chunk(const udfs_file *f, uint64_t from, uint64_t to,
			  udfs_chunk_fn *fn, void *ctx);

/* The tensor holding data-area byte off of f, or NULL (binary search). */
const udfs_tensor *udfs_file_tensor_at(const udfs_file *f, uint64_t off);

#endif

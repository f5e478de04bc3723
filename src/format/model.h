/* SPDX-License-Identifier: MIT */
/*
 * The model, file and tensor types, and every name table of them (the
 * names the catalog stores and the commands print: udfs(5)). A udfs_model
 * is built in two ways: as rows, by the add pipeline before it inserts
 * them (store/catalog.c), and as a live object, by store/store.c when it
 * loads a model from the catalog: then the fields under "live" below
 * (reference count, descriptors, pins) are the store's.
 */
#ifndef UDFS_MODEL_H
#define UDFS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/lossy.h"

/* Bytes of output per chunk. Multiple of every element size. */
#define UDFS_CHUNK_BYTES (1u << 20)
/* Upper bound of one stored chunk: what a catalog may claim before it is
 * malformed (every encoding stores at most a small multiple of its output). */
#define UDFS_CHUNK_MAX_STORED (4u << 20)

enum udfs_encoding {
	UDFS_ENC_BASE = 0, /* a base model's tensor, read from bases/ */
	UDFS_ENC_SAME,	   /* bits identical to the base tensor */
	UDFS_ENC_XOR,	   /* byte-exact delta against the base tensor */
	UDFS_ENC_RAW,	   /* own bytes, compressed; no base tensor */
	UDFS_ENC_ULTRADELTA,
	UDFS_ENC_DARE,
	UDFS_ENC_BITDELTA,
	UDFS_ENC_MAGNITUDE,
	UDFS_ENC_ADAPTIVE, /* per-tensor choice of code, composite chunks */
	UDFS_ENC_COUNT
};

enum udfs_file_kind {
	UDFS_FILE_SAFETENSORS = 0,
	UDFS_FILE_VERBATIM = 1, /* any other file: one raw pseudo-tensor */
};

enum udfs_model_kind { UDFS_MODEL_BASE = 0, UDFS_MODEL_DELTA = 1 };

/* "xor" for UDFS_ENC_XOR; NULL for an out-of-range value. */
const char *udfs_encoding_name(int enc);
/* Inverse of udfs_encoding_name; -1 when unknown. */
int udfs_encoding_parse(const char *name);
/* True for the lossy encodings (ultradelta, the baselines, adaptive). */
bool udfs_encoding_is_lossy(int enc);

/* "base" or "delta". */
const char *udfs_model_kind_name(int kind);
/* "safetensors" or "verbatim". */
const char *udfs_file_kind_name(int kind);
/* "explicit", "seeded" or "none" (enum udfs_mask_kind, codec/lossy.h). */
const char *udfs_mask_name(int mask);

typedef struct udfs_chunk_ref {
	uint64_t offset;   /* in the model's pack */
	uint32_t length;   /* stored bytes */
	uint64_t checksum; /* XXH3-64 of the stored bytes */
} udfs_chunk_ref;

struct udfs_file;
struct udfs_model;

typedef struct udfs_tensor {
	char *name; /* "" for the pseudo-tensor of a verbatim file */
	int dtype;  /* enum udfs_dtype */
	int ndim;
	uint64_t *shape;
	uint64_t nelems;
	uint64_t begin; /* byte range in the file's data area */
	uint64_t end;
	int enc;		      /* enum udfs_encoding */
	const struct udfs_file *file; /* the file holding this tensor */
	const struct udfs_file
	    *base_file;		/* SAME, XOR, lossy: base tensor's file */
	uint64_t base_begin;	/* ... and its offset there */
	int64_t base_file_id;	/* catalog id (the ino) of base_file */
	udfs_lossy_params lp;	/* lossy encodings only */
	uint64_t stored_bytes;	/* pack bytes of its chunks */
	uint32_t n_chunks;	/* of UDFS_CHUNK_BYTES output each */
	udfs_chunk_ref *chunks; /* NULL for BASE and SAME */
} udfs_tensor;

typedef struct udfs_file {
	char *path;	       /* relative name inside the model directory */
	int kind;	       /* enum udfs_file_kind */
	uint64_t size;	       /* of the virtual file */
	unsigned char *header; /* data_offset bytes: the safetensors prefix */
	uint64_t data_offset;  /* 8 + N, or 0 for verbatim files */
	size_t n_tensors;
	udfs_tensor *tensors; /* sorted by begin, tiling the data area */
	char sha256[65];      /* of the source file; "" when not recorded */
	uint64_t ino;	      /* stable number for FUSE: unique in the store */
	struct udfs_model *model;
	int fd; /* base models: the stored file, else -1 */
	/* Of the stored bytes (the pack, or the base file): what the mount
	 * serves the file with. Set at load. */
	unsigned mode; /* permission bits */
	unsigned uid, gid;
	uint64_t st_dev, st_ino; /* identity, checked when reopened */
} udfs_file;

typedef struct udfs_model {
	int64_t id;
	char *name;
	int kind;		 /* enum udfs_model_kind */
	struct udfs_model *base; /* delta models: their base (a reference) */
	char *method;		 /* "lossless", "ultradelta", ... ; "base" */
	char *params;		 /* JSON text of the add options */
	int64_t seed;
	int64_t created; /* unix seconds */
	uint64_t source_bytes;
	uint64_t stored_bytes;
	double sparsity; /* achieved drop fraction of lossy tensors */
	size_t n_files;
	udfs_file *files; /* sorted by path */

	/* Live: set and owned by store/store.c when it loads the model. */
	int pack_fd;	    /* delta models: packs/<id>.pack, else -1 */
	int refs;	    /* udfs_model_get/put, under the registry lock */
	int64_t generation; /* latest catalog generation that lists it */
	struct udfs_store *store;
	char *storage; /* catalog storage path, to reopen descriptors */
	unsigned pins; /* udfs_model_pin; under the store's fds lock */
	bool fds_open; /* pack_fd / every file's fd is open */
	bool idle;     /* on the store's idle list */
	struct udfs_model *idle_prev, *idle_next;
	size_t n_index;
	const udfs_tensor **index; /* every named tensor, sorted by name */
} udfs_model;

/* Brief row of `udfs ls`. */
typedef struct udfs_model_info {
	int64_t id;
	char name[256];
	char base[256]; /* "" for a base */
	int kind;
	char method[32];
	uint64_t source_bytes;
	uint64_t stored_bytes;
	int64_t created;
	size_t n_files;
} udfs_model_info;

/* f (NULL allowed) holds exactly the len-byte safetensors header: a
 * delta's file with its base file's header shares it (udfs(5), files). */
bool udfs_file_has_header(const udfs_file *f, const void *header, uint64_t len);

/* Free n tensors (names, shapes, chunk maps) and the array. */
void udfs_tensors_free(udfs_tensor *t, size_t n);

/* Free the rows of n files (tensors, chunk maps, header, path) and the
 * array: what the add pipeline builds and the store loads. */
void udfs_files_free(udfs_file *files, size_t n);

#endif

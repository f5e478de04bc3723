/* SPDX-License-Identifier: MIT */
/*
 * A udfs store opened for reading or writing, and its models loaded into
 * memory for serving: every file, tensor and chunk of a model as plain
 * arrays, so that the read path never touches SQLite.
 *
 * Layout on disk (DESIGN 3, man udfs(5)):
 *   STORE/catalog.db    SQLite catalog (catalog.h)
 *   STORE/bases/<id>/   base model files, verbatim
 *   STORE/packs/<id>.pack  immutable chunk files of delta models
 *   STORE/tmp/          packs being written
 *
 * A loaded model is reference counted and holds its own descriptors (pack,
 * base files), so it keeps reading correctly after `udfs rm` removed it
 * from the catalog and unlinked its pack. A store opened with
 * UDFS_STORE_LAZY_FDS (the mount, which may load thousands of models)
 * holds a model's descriptors only while it is pinned (udfs_model_pin) and
 * keeps a bounded number of idle ones open for reuse.
 */
#ifndef UDFS_STORE_H
#define UDFS_STORE_H

#include <pthread.h>
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
	UDFS_ENC_COUNT
};

enum udfs_file_kind {
	UDFS_FILE_SAFETENSORS = 0,
	UDFS_FILE_VERBATIM = 1, /* any other file: one raw pseudo-tensor */
};

enum udfs_model_kind { UDFS_MODEL_BASE = 0, UDFS_MODEL_DELTA = 1 };

/*
 * Bytes a tensor's encoding costs in the store: its pack chunks, their
 * chunk-map records (20 bytes each) and, for lossy encodings, the
 * per-tensor parameters (UDFS_LOSSY_PARAM_BYTES). Its name, dtype and shape
 * are not counted here: the safetensors header holds them whatever the
 * encoding, and the model's stored_bytes counts the whole catalog.
 */
#define UDFS_CHUNK_REF_BYTES 20
#define UDFS_LOSSY_PARAM_BYTES 32
uint64_t udfs_encoded_bytes(int enc, uint32_t n_chunks, uint64_t pack_bytes);

/* "xor" for UDFS_ENC_XOR; NULL for an out-of-range value. */
const char *udfs_encoding_name(int enc);
/* Inverse of udfs_encoding_name; -1 when unknown. */
int udfs_encoding_parse(const char *name);
/* True for the lossy encodings (ultradelta and the baselines). */
bool udfs_encoding_is_lossy(int enc);

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
	int pack_fd;	  /* delta models: packs/<id>.pack, else -1 */
	int refs;	  /* udfs_model_get/put, under the registry lock */
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

typedef struct udfs_store udfs_store;
typedef struct udfs_catalog udfs_catalog;

enum {
	UDFS_STORE_RDONLY = 1,	 /* open the catalog read-only (mount, ls) */
	UDFS_STORE_LAZY_FDS = 2, /* descriptors only while pinned (mount) */
};

/*
 * Open the store at dir. Errors: -ENOENT (not a store), -EPROTO (catalog
 * of another format version), -errno. Caller closes with
 * udfs_store_close(); loaded models must be put back first.
 */
int udfs_store_open(const char *dir, unsigned flags, udfs_store **out);
void udfs_store_close(udfs_store *s);

/* Create a new empty store at dir (which may exist if empty). */
int udfs_store_init(const char *dir);

const char *udfs_store_dir(const udfs_store *s);
udfs_catalog *udfs_store_catalog(udfs_store *s);

/* All models, sorted by name. Caller frees *list with free(). */
int udfs_store_list(udfs_store *s, udfs_model_info **list, size_t *n);

/*
 * Load a model (and its base) by name. Errors: -ENOENT with a message when
 * no such model. The caller releases it with udfs_model_put(). Concurrent
 * loads of one name share one object while it is alive.
 */
int udfs_model_load(udfs_store *s, const char *name, udfs_model **out);
void udfs_model_get(udfs_model *m);
void udfs_model_put(udfs_model *m);

/*
 * Make sure the descriptors of m (and of its base) are open and stay open
 * until the matching udfs_model_unpin(). Reads of m's files need a pin in
 * a UDFS_STORE_LAZY_FDS store; in other stores a loaded model is pinned
 * from load to its last put. The caller holds a reference on m. Errors:
 * -EIO with a message when a stored file is gone or was replaced.
 */
int udfs_model_pin(udfs_model *m);
/* Drop a pin. Idle descriptors stay open, up to a bound for the store. */
void udfs_model_unpin(udfs_model *m);

/* Models loaded now, those whose descriptors are open, and how many
 * descriptors they hold. */
void udfs_store_fd_stats(udfs_store *s, uint64_t *loaded, uint64_t *open_models,
			 uint64_t *open_fds);

/* File of a loaded model by path, or NULL (binary search). */
const udfs_file *udfs_model_file(const udfs_model *m, const char *path);

/* Tensor of a loaded model by name across its files, or NULL. */
const udfs_tensor *udfs_model_tensor(const udfs_model *m, const char *name);

/* True when a catalog storage path names an entry directly under packs/
 * or bases/ (what a store can hold); anything else is refused. */
bool udfs_storage_path_ok(const char *rel);

/* Change counter of the catalog: differs after any add or rm by anyone. */
int udfs_store_generation(udfs_store *s, int64_t *gen);

/* Bytes the store occupies on disk (catalog, bases, packs). */
int udfs_store_usage(udfs_store *s, uint64_t *bytes);

#endif

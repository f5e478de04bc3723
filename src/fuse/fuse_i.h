/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the FUSE glue (src/fuse_*.c): the mounted
 * filesystem's state, its inode table and the entry point called by
 * `udfs mount`. Only these files include a FUSE header.
 *
 * Inode numbers are stable across mounts: the root is 1, a model directory
 * is 2 * model id + 1 and a file is 2 * udfs_file.ino + 2 (catalog ids are
 * positive, so these ranges never meet). A directory inside a model is
 * its model directory's number plus ((first << 10 | depth) << 32), where
 * first is the index of its first file in the model and depth >= 1 its
 * depth (fuse/tree.c): odd, and above 2^32, so it meets neither.
 */
#ifndef UDFS_FUSE_I_H
#define UDFS_FUSE_I_H

#define FUSE_USE_VERSION 314

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "common/htable.h"
#include "common/list.h"
#include "read/cache.h"
#include "read/recon.h"
#include "store/store.h"

#define UDFS_ROOT_INO 1
#define UDFS_DIR_INO(model_id) ((fuse_ino_t)(model_id)*2 + 1)
#define UDFS_FILE_INO(file_ino) ((fuse_ino_t)(file_ino)*2 + 2)

enum udfs_node_kind {
	UDFS_NODE_ROOT,
	UDFS_NODE_MODEL, /* a model directory */
	UDFS_NODE_DIR,	 /* a directory inside a model */
	UDFS_NODE_FILE
};

/*
 * A directory inside a model (or the model directory: depth 0): the
 * model's files [lo, hi), whose paths all start with the same plen bytes
 * (its path and a '/').
 */
struct udfs_dir {
	size_t lo, hi;
	size_t plen;
	unsigned depth;
};

enum { UDFS_ENT_NONE, UDFS_ENT_FILE, UDFS_ENT_DIR };

/* One entry of a directory inside a model. */
struct udfs_dirent {
	int kind;	  /* UDFS_ENT_*; NONE: a path not to show */
	const char *name; /* inside a file's path: not NUL-ended */
	size_t len;	  /* of name */
	fuse_ino_t ino;
	const udfs_file *file; /* UDFS_ENT_FILE */
	struct udfs_dir sub;   /* UDFS_ENT_DIR */
};

/* One sequential stream through a file (readahead.c). */
#define UDFS_RA_STREAMS 8
struct udfs_ra_stream {
	uint64_t next;	 /* where its next read starts */
	uint64_t issued; /* decode-ahead was asked up to here */
	unsigned streak; /* consecutive sequential reads */
	unsigned used;	 /* ra_clock at its last read */
};

/* An inode the kernel knows (nlookup > 0) or that is open. */
struct udfs_node {
	fuse_ino_t ino;
	int kind;	       /* enum udfs_node_kind */
	udfs_model *model;     /* a reference owned by the node; NULL: root */
	const udfs_file *file; /* UDFS_NODE_FILE: inside model */
	struct udfs_dir dir;   /* UDFS_NODE_MODEL and UDFS_NODE_DIR */
	uint64_t nlookup;      /* kernel lookup count, under fs->lock */
	unsigned opens;	       /* open handles, under fs->lock */
	struct udfs_hnode hn;  /* in fs->nodes, keyed by ino */

	/* Sequential-read detection for decode-ahead (per inode, not per
	 * handle: the kernel spreads one stream over many requests), for
	 * up to UDFS_RA_STREAMS streams at once (readahead.c). */
	pthread_mutex_t ra_lock;
	struct udfs_ra_stream ra[UDFS_RA_STREAMS];
	unsigned ra_clock; /* ticks per read, for the least recent stream */
};

#define UDFS_BOUNCE_SLOTS 8 /* shared buffers for bytes of base files */

struct udfs_bounce {
	unsigned char *p; /* mmap-ed, cap bytes */
	size_t cap;
	bool busy; /* under fs->bounce_lock */
};

struct udfs_fs {
	/* Options. */
	char *store_dir;  /* absolute */
	char *mountpoint; /* absolute */
	uint64_t cache_bytes;
	unsigned threads;
	unsigned readahead_kb; /* 0: leave the bdi alone */
	char *notify_pipe;
	bool foreground;
	bool debug;
	bool allow_other;
	bool syslog;	  /* log to syslog (after daemonizing) */
	char *log_path;	  /* -o log=FILE, absolute */
	FILE *log_file;	  /* open from before the fork */
	bool log_to_file; /* log there (once the mount started) */

	udfs_store *store;
	udfs_cache *cache;
	udfs_chunk_provider provider;
	struct fuse_session *se;
	uid_t uid;
	gid_t gid;
	int64_t started; /* mount time: the root's mtime */

	pthread_mutex_t lock;	  /* the node table and the open handles */
	struct udfs_htable nodes; /* struct udfs_node but the root */
	struct udfs_node root;
	struct udfs_list handles; /* open files, freed at unmount */
	struct udfs_list dirs;	  /* open directories, likewise: the kernel
				     may unmount before their releasedir */

	pthread_mutex_t list_lock; /* the model list below */
	udfs_model_info *models;   /* sorted by name */
	size_t n_models;
	int64_t generation;
	double list_time; /* udfs_now() of the last generation check */

	pthread_t ready_thread;
	bool ready_started;

	/* fuse/read.c: what replies of base-file bytes are read into. */
	pthread_mutex_t bounce_lock;
	pthread_cond_t bounce_free;
	struct udfs_bounce bounce[UDFS_BOUNCE_SLOTS];

	/* What `udfs status` shows (user.udfs.stats); atomic adds. */
	uint64_t reads;
	uint64_t bytes_served;
	uint64_t read_errors;
	uint64_t open_files; /* under fs->lock */
};

struct udfs_dirh;

/* An open regular file (fi->fh). */
struct udfs_fh {
	struct udfs_node *node;
	udfs_model *model; /* a reference of the handle's own */
	bool pinned;	   /* ... and a pin (udfs_model_pin) */
	const udfs_file *file;
	struct udfs_list link; /* in fs->handles */
};

/* The lowlevel operations table (fuse/ops.c); userdata is a udfs_fs. */
extern const struct fuse_lowlevel_ops udfs_fuse_ops;

/*
 * Entry of `udfs mount STORE MOUNTPOINT [-f] [-o opts]` (argv[0] is
 * "mount"). Returns the process exit status: 0 after a clean unmount or
 * SIGTERM, 1 with one line on stderr for bad arguments, a bad store or a
 * bad mountpoint.
 */
int udfs_mount_main(int argc, char **argv);

/* Can name[0, len) be one directory entry? Not "", ".", "..", nor a name
 * with '/' or NUL, nor longer than 255 bytes. */
bool udfs_name_ok(const char *name, size_t len);

/* The tree inside a model (fuse/tree.c). d of the model directory: */
void udfs_dir_of_model(const udfs_model *m, struct udfs_dir *d);
/* Inode number of directory d of m; 0 when it has none (not served). */
fuse_ino_t udfs_dir_ino(const udfs_model *m, const struct udfs_dir *d);
/* The entry of d that starts at file index *i (begin with d->lo), and
 * advance *i past it; false past the end. Names point into m. */
bool udfs_dir_next(const udfs_model *m, const struct udfs_dir *d, size_t *i,
		   struct udfs_dirent *e);
/* The entry name of d (a file first, else a directory): 0, -ENOENT or
 * -ENOMEM. */
int udfs_dir_lookup(const udfs_model *m, const struct udfs_dir *d,
		    const char *name, struct udfs_dirent *e);
/* 2 + the number of subdirectories of d. */
unsigned udfs_dir_nlink(const udfs_model *m, const struct udfs_dir *d);

/* Log one line: to stderr in the foreground, to syslog once daemonized,
 * or to the -o log= file. */
void udfs_fs_log(const struct udfs_fs *fs, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Initialize the node table; free every node and handle (at unmount). */
void udfs_fs_nodes_init(struct udfs_fs *fs);
void udfs_fs_nodes_free(struct udfs_fs *fs);

/*
 * Answer a read of size bytes (already clipped to the end of the file) at
 * off of the open file fh (fuse/read.c): decoded chunks straight from the
 * cache, exactly one reply. direct: the reader opened the file O_DIRECT,
 * so the kernel keeps none of the reply in its page cache.
 */
void udfs_fs_read(fuse_req_t req, struct udfs_fs *fs, const struct udfs_fh *fh,
		  size_t size, off_t off, bool direct);
/* The shared bounce buffers of udfs_fs_read(): set up, free at unmount. */
void udfs_fs_bounce_init(struct udfs_fs *fs);
void udfs_fs_bounce_free(struct udfs_fs *fs);

/*
 * Decode-ahead (fuse/readahead.c): note a read of [off, off + size) of the
 * file node n; when reads of n arrive in increasing order, ask the cache
 * to decode the next chunks. Never blocks on a decode; call it without
 * holding fs->lock.
 */
void udfs_fs_readahead(struct udfs_fs *fs, struct udfs_node *n, uint64_t off,
		       size_t size);

#endif

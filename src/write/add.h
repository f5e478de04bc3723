/* SPDX-License-Identifier: MIT */
/*
 * Writing to a store: add a base, add delta models (lossless or lossy).
 * Every writer follows one protocol: all
 * new bytes go to STORE/tmp, are fsync-ed and renamed into place, and only
 * then is the catalog changed, in one transaction. A crash or an error at
 * any point leaves the store as it was, plus at most some unreferenced
 * files that udfs_store_gc() removes.
 */
#ifndef UDFS_ADD_H
#define UDFS_ADD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/admin.h"
#include "store/store.h"
#include "write/opts.h"

/* A model name is 1..200 printable ASCII characters, no '/', no
 * backslash, not starting with '.' or '-'. 0 or -EINVAL with a message. */
int udfs_name_check(const char *name);

/* udfs_name_check(), and no model of the store has the name (-EEXIST). */
int udfs_name_check_new(udfs_store *s, const char *name);

/*
 * Store the model at src (file or directory) as base model name, copying
 * its files into STORE/bases (hard links when link is set and the source
 * is on the same filesystem).
 */
int udfs_compress_add_base(udfs_store *s, const char *name, const char *src,
			   bool link, bool quiet);

/*
 * Add n models names[i] = srcs[i] as deltas against o->base, as one group
 * (the trace-norm factor is computed across the group) in one transaction.
 */
int udfs_compress_add(udfs_store *s, const udfs_add_opts *o, size_t n,
		      const char *const *names, const char *const *srcs);

#endif

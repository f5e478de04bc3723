/* SPDX-License-Identifier: MIT */
/*
 * The pack writer (udfs(5), "Pack file"): a pack is written under
 * STORE/tmp, locked so that gc leaves it alone, fsync-ed, and moved into
 * STORE/packs only inside the catalog transaction that references it.
 */
#ifndef UDFS_PACK_H
#define UDFS_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct udfs_pack {
	char *tmp_path;	 /* STORE/tmp/<name>.pack */
	char *final_rel; /* packs/<name>.pack */
	int fd;
	uint64_t off;
};

/* Open a new pack under tmp/ with permission bits mode. 0 or -errno. */
int udfs_pack_open(udfs_store *s, struct udfs_pack *pk, unsigned mode);
/* Append one chunk, filling its ref (offset, length, checksum). */
int udfs_pack_append(struct udfs_pack *pk, const void *buf, size_t len,
		     udfs_chunk_ref *ref);
/* fsync the pack, still in tmp/ and still locked. */
int udfs_pack_sync(struct udfs_pack *pk);
/* Move it into packs/ (never replacing one), inside the transaction. */
int udfs_pack_place(udfs_store *s, struct udfs_pack *pk);
/* Close and remove a pack that will not be referenced (error path). */
void udfs_pack_discard(struct udfs_pack *pk);

#endif

// SPDX-License-Identifier: MIT
/*
 * The pack writer (pack.h): a 16-byte header, then chunks appended in
 * order, each with an XXH3 checksum in its catalog ref.
 */
#include "write/pack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/util.h"
#include "store/cluster.h"

#define PACK_MAGIC "UDFSPAK1"
#define PACK_HEADER 16

/* Open a new pack under tmp/ with permission bits mode (the source's,
 * udfs_source.mode: private weights stay private). */
int udfs_pack_open(udfs_store *s, struct udfs_pack *pk, unsigned mode)
{
	char *name = udfs_random_name();
	char hdr[PACK_HEADER] = PACK_MAGIC;
	int err;

	pk->tmp_path =
	    udfs_xasprintf("%s/tmp/%s.pack", udfs_store_dir(s), name);
	pk->final_rel = udfs_xasprintf("packs/%s.pack", name);
	free(name);
	pk->fd = open(pk->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		      (mode_t)mode);
	if (pk->fd < 0)
		return udfs_error(-errno, "%s: %s", pk->tmp_path,
				  strerror(errno));
	/* gc, on any node, skips tmp files that a live writer holds. */
	err = udfs_cluster_tmp_lock(pk->fd);
	if (err)
		return udfs_error(err, "%s: cannot lock: %s", pk->tmp_path,
				  strerror(-err));
	err = udfs_write_full(pk->fd, hdr, sizeof(hdr));
	if (err)
		return udfs_error(err, "%s: %s", pk->tmp_path, strerror(-err));
	pk->off = PACK_HEADER;
	return 0;
}

int udfs_pack_append(struct udfs_pack *pk, const void *buf, size_t len,
		     udfs_chunk_ref *ref)
{
	int err = udfs_write_full(pk->fd, buf, len);

	if (err)
		return udfs_error(err, "%s: %s", pk->tmp_path, strerror(-err));
	ref->offset = pk->off;
	ref->length = (uint32_t)len;
	ref->checksum = XXH3_64bits(buf, len);
	pk->off += len;
	return 0;
}

/* Make the pack durable in tmp/. It moves into packs/ only inside the
 * catalog transaction (pack_place), so gc, which holds the writer lock
 * while it scans, never sees a placed pack that is not yet referenced. */
int udfs_pack_sync(struct udfs_pack *pk)
{
	int err = 0;

	/* The descriptor stays open, and locked, until the catalog commit. */
	if (fsync(pk->fd) < 0)
		err =
		    udfs_error(-errno, "%s: %s", pk->tmp_path, strerror(errno));
	return err;
}

int udfs_pack_place(udfs_store *s, struct udfs_pack *pk)
{
	char *final = udfs_xasprintf("%s/%s", udfs_store_dir(s), pk->final_rel);
	char *dir = udfs_xasprintf("%s/packs", udfs_store_dir(s));
	int err = 0;

	/* Never replace a pack that is there already (a name collision). */
	if (udfs_rename_noreplace(pk->tmp_path, final) < 0)
		err = udfs_error(-errno, "%s: %s", final, strerror(errno));
	if (!err) {
		free(pk->tmp_path);
		pk->tmp_path = final;
		final = NULL;
		err = udfs_fsync_dir(dir);
	}
	free(final);
	free(dir);
	return err;
}

/* Remove a pack that will not be referenced (error path). */
void udfs_pack_discard(struct udfs_pack *pk)
{
	if (pk->fd >= 0)
		close(pk->fd);
	if (pk->tmp_path)
		unlink(pk->tmp_path);
	free(pk->tmp_path);
	free(pk->final_rel);
	memset(pk, 0, sizeof(*pk));
	pk->fd = -1;
}

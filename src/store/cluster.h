/* SPDX-License-Identifier: MIT */
/*
 * Sharing one store among processes on many nodes of a shared filesystem
 * (NFS, GlusterFS, CephFS, Lustre) with nothing but POSIX files; udfs(5)
 * describes the files and README.md the deployment.
 *
 *   STORE/lock             writers serialize on an fcntl lock of this file,
 *                          which names the holder ("host pid")
 *   STORE/catalog.current  the pointer: the generation readers serve
 *   STORE/snapshots/G.db   immutable copy of the catalog at generation G
 *   STORE/leases/HOST.PID  the generations a mount still serves
 *
 * Readers never open the live catalog: they read the pointer (open, read,
 * close: close-to-open consistency on every network filesystem) and open
 * the snapshot it names immutable. Locks are fcntl locks on regular files,
 * which GlusterFS, NFS (lockd or v4), CephFS and Lustre share between
 * clients; flock and directory locks are not shared everywhere.
 *
 * Times compared with a file's mtime are read from the filesystem itself
 * (the mtime of a file just written), so that clocks of different nodes
 * never meet.
 */
#ifndef UDFS_CLUSTER_H
#define UDFS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UDFS_LOCK_FILE "lock"
#define UDFS_POINTER_FILE "catalog.current"
#define UDFS_SNAPSHOT_DIR "snapshots"
#define UDFS_LEASE_DIR "leases"
/* Default grace period on a shared filesystem, seconds (udfs(5)). */
#define UDFS_GRACE_SHARED 600.0

/*
 * Take the store's writer lock (STORE/lock, created when missing), waiting
 * for another writer with one message on stderr; records "host pid" in the
 * file. *fd receives the descriptor that holds the lock. -EINTR when
 * interrupted while waiting, -errno otherwise (with a message).
 */
int udfs_cluster_lock(const char *dir, int *fd);
/* Release the writer lock (fd from udfs_cluster_lock; -1 is ignored). */
void udfs_cluster_unlock(int fd);

/* The filesystem's "now" in seconds: the mtime of the lock file that
 * udfs_cluster_lock just wrote (fd is its descriptor). */
int udfs_cluster_now(int fd, double *now);

/*
 * Seconds after which an unrefreshed lease stops protecting, a superseded
 * snapshot may go and an unlocked tmp/ entry counts as abandoned: the
 * UDFS_GRACE environment variable when set, else 0 on a local filesystem
 * (ext4, xfs, btrfs, tmpfs, ...) and UDFS_GRACE_SHARED on any other.
 */
double udfs_cluster_grace(const char *dir);

/* Lock a tmp/ file being written (fd open for writing) so that gc on any
 * node leaves it alone; the lock lasts until fd is closed. */
int udfs_cluster_tmp_lock(int fd);
/* True when some process on some node holds path (a regular file) locked. */
bool udfs_cluster_tmp_busy(const char *path);

/*
 * The pointer file holds "GEN STAMP\n": the generation readers serve and
 * the live catalog's change counter when it was published (stamp), so that
 * a catalog changed without a publish (a writer killed between its commit
 * and its publish) is noticed and published by the next process.
 * -ENOENT (no message) when the store has no pointer (format 1), -EIO
 * with a message when it is malformed.
 */
int udfs_cluster_pointer_read(const char *dir, int64_t *gen, uint32_t *stamp);
/* Atomically replace the pointer (temp file in tmp/, fsync, rename). */
int udfs_cluster_pointer_write(const char *dir, int64_t gen, uint32_t stamp);

/* STORE/snapshots/<gen>.db into buf (len bytes; PATH_MAX will do), with
 * no allocation: readers build it in the mount daemon. 0 or
 * -ENAMETOOLONG. */
int udfs_cluster_snapshot_path(const char *dir, int64_t gen, char *buf,
			       size_t len);

typedef struct udfs_snapshot_info {
	int64_t gen;
	double mtime; /* when it was published */
} udfs_snapshot_info;

/* Every snapshot file of the store, sorted by generation. Caller frees
 * *list with free(). */
int udfs_cluster_snapshots(const char *dir, udfs_snapshot_info **list,
			   size_t *n);

/*
 * Must snapshot list[i] stay? Yes when it is the current generation, when
 * a live lease names it, or when it was current less than grace seconds
 * before now (a reader may have read the pointer then and not yet
 * written its lease): it was current until the next snapshot appeared.
 */
bool udfs_cluster_snapshot_needed(const udfs_snapshot_info *list, size_t n,
				  size_t i, int64_t current,
				  const int64_t *leased, size_t n_leased,
				  double now, double grace);

/* This process's lease name, "HOST.PID" (HOST made of [A-Za-z0-9._-]);
 * caller frees; NULL when out of memory. */
char *udfs_cluster_lease_name(void);
/* Write (or refresh) lease name naming gens (temp file, rename): its mtime
 * is the time of the refresh. */
int udfs_cluster_lease_write(const char *dir, const char *name,
			     const int64_t *gens, size_t n);
void udfs_cluster_lease_remove(const char *dir, const char *name);

/*
 * Generations named by the leases refreshed less than grace seconds before
 * now (sorted, duplicates kept). Expired leases are removed when
 * remove_expired. Caller frees *gens with free().
 */
int udfs_cluster_leases(const char *dir, double now, double grace,
			bool remove_expired, int64_t **gens, size_t *n);

#endif

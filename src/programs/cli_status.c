// SPDX-License-Identifier: MIT
/*
 * `udfs status MOUNTPOINT`: what a running mount is doing. The daemon
 * publishes its counters (cache hits and misses, bytes decoded and served,
 * errors, models loaded, open packs) as the extended attribute
 * user.udfs.stats of the mount's root, one "name value" line each; this
 * verb reads it and prints it. Nothing in the mount's layout changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "common/util.h"
#include "programs/cli_i.h"

#define STATS_XATTR "user.udfs.stats"
#define STATS_MAX 65536

int udfs_cli_status(const struct cli_opts *o)
{
	const char *mnt = o->args[0];
	char *buf;
	ssize_t n;

	buf = udfs_xmalloc(STATS_MAX);
	n = getxattr(mnt, STATS_XATTR, buf, STATS_MAX - 1);
	if (n < 0) {
		int e = errno;

		free(buf);
		if (e == ENOTCONN)
			udfs_die(
			    "%s: a FUSE mount whose daemon is gone (%s); unmount it with fusermount3 -u %s",
			    udfs_cli_str(mnt), strerror(e), udfs_cli_str(mnt));
		if (e == ENODATA || e == ENOTSUP)
			udfs_die(
			    "%s: not the mount point of a running udfs mount",
			    udfs_cli_str(mnt));
		udfs_die("%s: %s", udfs_cli_str(mnt), strerror(e));
	}
	fwrite(buf, 1, (size_t)n, stdout);
	free(buf);
	return fflush(stdout) == 0 ? 0 : 1;
}

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

#include "cli_i.h"
#include "udfs/util.h"

#define STATS_XATTR "user.udfs.stats"
#define STATS_MAX 65536

static const char usage[] = "udfs status MOUNTPOINT";

int udfs_cli_status(int argc, char **argv)
{
	const char *mnt = NULL;
	char *buf;
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("usage: %s\n", usage);
			return 0;
		}
		if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			continue; /* accepted by every verb */
		if (argv[i][0] == '-' || mnt) {
			fprintf(stderr, "%s: usage: %s\n", udfs_progname(),
				usage);
			return 2;
		}
		mnt = argv[i];
	}
	if (!mnt) {
		fprintf(stderr, "%s: usage: %s\n", udfs_progname(), usage);
		return 2;
	}
	buf = udfs_xmalloc(STATS_MAX);
	n = getxattr(mnt, STATS_XATTR, buf, STATS_MAX - 1);
	if (n < 0) {
		int e = errno;

		free(buf);
		if (e == ENOTCONN)
			udfs_die("%s: a FUSE mount whose daemon is gone (%s); "
				 "unmount it with fusermount3 -u %s",
				 mnt, strerror(e), mnt);
		if (e == ENODATA || e == ENOTSUP)
			udfs_die("%s: not the mount point of a running udfs "
				 "mount",
				 mnt);
		udfs_die("%s: %s", mnt, strerror(e));
	}
	fwrite(buf, 1, (size_t)n, stdout);
	free(buf);
	return fflush(stdout) == 0 ? 0 : 1;
}

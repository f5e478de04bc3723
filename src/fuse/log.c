// SPDX-License-Identifier: MIT
/*
 * The daemon's one log line function (fuse_i.h), apart from the
 * operations so that every part of fuse/ can log without calling into
 * another.
 */
#include "fuse/fuse_i.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

void udfs_fs_log(const struct udfs_fs *fs, int prio, const char *fmt, ...)
{
	char raw[1024], line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* Names in a line come from the catalog, which is input like any
	 * file: one log line must stay one line, free of escapes. */
	udfs_escape(line, sizeof(line), raw);
	if (fs->log_to_file) {
		char stamp[32];
		time_t now = time(NULL);
		struct tm tm;

		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ",
			 gmtime_r(&now, &tm));
		/* One fprintf per line: stdio locks the stream. */
		fprintf(fs->log_file, "%s udfs[%d]: %s\n", stamp, (int)getpid(),
			line);
	} else if (fs->syslog) {
		syslog(prio, "%s", line);
	} else {
		flockfile(stderr);
		fprintf(stderr, "%s: %s\n", udfs_progname(), line);
		funlockfile(stderr);
	}
}

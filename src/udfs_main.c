// SPDX-License-Identifier: MIT
/*
 * udfs: mount a store, and the admin verbs. Dispatch only.
 */
#include <stdio.h>
#include <string.h>

#include "cli_i.h"
#include "fuse_i.h"
#include "udfs/util.h"

static const char usage[] =
    "usage: udfs mount STORE MOUNTPOINT [-f] [-o allow_other,cache=SIZE,"
    "threads=N,\n"
    "                  readahead_kb=N,noreadahead,notify_pipe=FIFO,debug,ro]\n"
    "       udfs ls STORE [--json]\n"
    "       udfs info STORE NAME [--json]\n"
    "       udfs verify STORE [NAME]\n"
    "       udfs export STORE NAME DIR\n"
    "       udfs eval STORE NAME --against SRC [--json]\n"
    "       udfs rm STORE NAME\n"
    "       udfs gc STORE\n"
    "\n"
    "  -q, --quiet    no progress output (every command)\n"
    "  -h, --help     this text\n"
    "  -V, --version  print the version\n"
    "See udfs(1).\n";

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} verbs[] = {
    {"mount", udfs_mount_main},	 {"ls", udfs_cli_ls},
    {"info", udfs_cli_info},	 {"verify", udfs_cli_verify},
    {"export", udfs_cli_export}, {"eval", udfs_cli_eval},
    {"rm", udfs_cli_rm},	 {"gc", udfs_cli_gc},
};

int main(int argc, char **argv)
{
	udfs_set_progname(argv[0]);
	udfs_raise_nofile(); /* stores and sources of 1000+ files */
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		puts("udfs " UDFS_VERSION);
		return 0;
	}
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	udfs_die("unknown command \"%s\"; see udfs --help", argv[1]);
}

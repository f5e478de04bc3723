// SPDX-License-Identifier: MIT
/*
 * udfs: mount a store, and the admin verbs. Dispatch only: the table
 * below says what each admin verb takes, and cli_opts.c holds it to that.
 */
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "fuse/fuse_i.h"
#include "programs/cli_i.h"

static const struct cli_verb verbs[] = {
    {"ls", udfs_cli_ls, "STORE", 1, 1, CLI_QUIET | CLI_JSON, 0},
    {"info", udfs_cli_info, "STORE NAME", 2, 2, CLI_QUIET | CLI_JSON, 0},
    {"verify", udfs_cli_verify, "STORE [NAME]", 1, 2, CLI_QUIET | CLI_JSON, 0},
    {"export", udfs_cli_export, "STORE NAME DIR", 3, 3, CLI_QUIET, 0},
    {"eval", udfs_cli_eval, "STORE NAME", 2, 2,
     CLI_QUIET | CLI_AGAINST | CLI_JSON, CLI_AGAINST},
    {"rm", udfs_cli_rm, "STORE NAME", 2, 2, CLI_QUIET, 0},
    {"gc", udfs_cli_gc, "STORE", 1, 1, CLI_QUIET | CLI_DRY_RUN, 0},
    {"status", udfs_cli_status, "MOUNTPOINT", 1, 1, CLI_QUIET, 0},
};

static void usage(void)
{
	char syn[256];

	fputs(
	    "usage: udfs mount STORE MOUNTPOINT [-f] [-o allow_other,cache=SIZE,threads=N,\n"
	    "                  readahead_kb=N,noreadahead,notify_pipe=FIFO,log=FILE,\n"
	    "                  debug,ro]\n",
	    stdout);
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(verbs); i++) {
		udfs_cli_synopsis(&verbs[i], syn, sizeof(syn));
		printf("       %s\n", syn);
	}
	fputs("\n"
	      "  -q, --quiet    no progress output (every command)\n"
	      "  -h, --help     this text\n"
	      "  -V, --version  print the version\n"
	      "See udfs(1).\n",
	      stdout);
}

int main(int argc, char **argv)
{
	struct cli_opts o;

	udfs_set_progname(argv[0]);
	udfs_raise_nofile(); /* stores and sources of 1000+ files */
	if (argc < 2)
		udfs_usage_die(
		    "missing command (mount, ls, info, verify, export, eval, rm, gc or status); see udfs --help");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage();
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		puts("udfs " UDFS_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "mount"))
		return udfs_mount_main(argc - 1, argv + 1);
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(verbs); i++) {
		if (strcmp(argv[1], verbs[i].name))
			continue;
		udfs_cli_parse(&verbs[i], argc - 1, argv + 1, &o);
		return verbs[i].fn(&o);
	}
	udfs_usage_die("unknown command \"%s\"; see udfs --help", argv[1]);
}

/* SPDX-License-Identifier: MIT */
/*
 * The admin verbs of `udfs` (cli_admin.c, cli_eval.c). Each takes the
 * verb's own argv (argv[0] is the verb) and returns the exit status.
 */
#ifndef UDFS_CLI_I_H
#define UDFS_CLI_I_H

#define UDFS_VERSION "0.1.0"

int udfs_cli_ls(int argc, char **argv);
int udfs_cli_info(int argc, char **argv);
int udfs_cli_verify(int argc, char **argv);
int udfs_cli_export(int argc, char **argv);
int udfs_cli_rm(int argc, char **argv);
int udfs_cli_gc(int argc, char **argv);
int udfs_cli_eval(int argc, char **argv);
int udfs_cli_status(int argc, char **argv); /* cli_status.c */

/* Options shared by the verbs; parse_common leaves positionals in
 * argv[optind..]. */
struct cli_opts {
	int json;
	int quiet;
	const char *against; /* eval --against SRC */
};
int udfs_cli_parse(int argc, char **argv, struct cli_opts *o,
		   const char *usage);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The admin verbs of `udfs` (cli_admin.c, cli_eval.c) and their one
 * option parser (cli_opts.c). Which options and how many operands each
 * verb takes is data, in the verb table of programs/udfs.c: the parser refuses
 * anything else as a usage error (exit 2), so no verb checks its own.
 */
#ifndef UDFS_CLI_I_H
#define UDFS_CLI_I_H

#include <jansson.h>
#include <stdbool.h>

/* The options of the admin verbs, as bits of struct cli_verb.opts. */
enum {
	CLI_QUIET = 1u << 0,   /* -q, --quiet */
	CLI_JSON = 1u << 1,    /* --json */
	CLI_AGAINST = 1u << 2, /* --against SRC */
	CLI_DRY_RUN = 1u << 3, /* --dry-run */
};

/* What the parser found: options and operands. */
struct cli_opts {
	bool quiet, json, dry_run;
	const char *against; /* eval --against SRC */
	char **args;	     /* the operands (STORE first), borrowed argv */
	int n_args;
};

/* One admin verb. */
struct cli_verb {
	const char *name;
	int (*fn)(const struct cli_opts *o); /* returns the exit status */
	const char *operands;		     /* "STORE NAME [DIR]" */
	int min_args, max_args;
	unsigned opts;	   /* CLI_* bits the verb takes */
	unsigned required; /* CLI_* bits it must be given */
};

/*
 * Parse a verb's argv (argv[0] is the verb) into *o. -h/--help prints the
 * verb's usage and exits 0; an unknown option, an option the verb does not
 * take, a missing option argument or a wrong number of operands prints one
 * line and exits 2.
 */
void udfs_cli_parse(const struct cli_verb *v, int argc, char **argv,
		    struct cli_opts *o);

/* The synopsis line of v ("udfs ls STORE [--json]") into buf. */
void udfs_cli_synopsis(const struct cli_verb *v, char *buf, unsigned len);

/*
 * s made safe to print (udfs_escape: control characters as \xHH). Returns
 * s itself when nothing needs escaping, else a buffer that stays valid for
 * the next 7 calls. Single-threaded callers only.
 */
const char *udfs_cli_str(const char *s);

/* A new JSON string of s; escaped as above when s is not valid UTF-8
 * (file names need not be), which JSON cannot hold. */
json_t *udfs_cli_json_str(const char *s);

int udfs_cli_ls(const struct cli_opts *o);
int udfs_cli_info(const struct cli_opts *o);
int udfs_cli_verify(const struct cli_opts *o);
int udfs_cli_export(const struct cli_opts *o);
int udfs_cli_rm(const struct cli_opts *o);
int udfs_cli_gc(const struct cli_opts *o);
int udfs_cli_eval(const struct cli_opts *o);
int udfs_cli_status(const struct cli_opts *o); /* cli_status.c */

#endif

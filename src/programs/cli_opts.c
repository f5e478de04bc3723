// SPDX-License-Identifier: MIT
/*
 * The one option parser of the `udfs` admin verbs. Every option is known
 * here once; each verb's entry in the verb table (programs/udfs.c) says which
 * of them it takes and how many operands, and anything else is a usage
 * error: one line on stderr, exit status 2 (udfs(1), EXIT STATUS).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "programs/cli_i.h"

static const struct cli_option {
	const char *name; /* long name */
	unsigned bit;
	const char *arg; /* its argument, or NULL */
} options[] = {
    {"quiet", CLI_QUIET, NULL},
    {"against", CLI_AGAINST, "SRC"},
    {"json", CLI_JSON, NULL},
    {"dry-run", CLI_DRY_RUN, NULL},
};

#define OPT_HELP 0x100

static const struct option long_opts[] = {
    {"quiet", no_argument, NULL, CLI_QUIET},
    {"json", no_argument, NULL, CLI_JSON},
    {"against", required_argument, NULL, CLI_AGAINST},
    {"dry-run", no_argument, NULL, CLI_DRY_RUN},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const struct cli_option *option_of(unsigned bit)
{
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(options); i++)
		if (options[i].bit == bit)
			return &options[i];
	return NULL;
}

void udfs_cli_synopsis(const struct cli_verb *v, char *buf, unsigned len)
{
	int n = snprintf(buf, len, "udfs %s %s", v->name, v->operands);

	/* -q is taken by every verb and listed once, under the options. */
	for (size_t i = 0; i < UDFS_ARRAY_SIZE(options); i++) {
		const struct cli_option *p = &options[i];
		bool req = v->required & p->bit;

		if (!(v->opts & p->bit) || p->bit == CLI_QUIET || n < 0 ||
		    (unsigned)n >= len)
			continue;
		n += snprintf(buf + n, len - (unsigned)n, " %s--%s%s%s%s",
			      req ? "" : "[", p->name, p->arg ? " " : "",
			      p->arg ? p->arg : "", req ? "" : "]");
	}
}

static void help(const struct cli_verb *v)
{
	char syn[256];

	udfs_cli_synopsis(v, syn, sizeof(syn));
	printf("usage: %s\n"
	       "  -q, --quiet  no progress output\n"
	       "  -h, --help   this text\n"
	       "See udfs(1).\n",
	       syn);
	exit(0);
}

static noreturn void usage_error(const struct cli_verb *v, const char *what)
{
	char syn[256];

	udfs_cli_synopsis(v, syn, sizeof(syn));
	udfs_usage_die("%s; usage: %s", what, syn);
}

/* Record option bit (argument arg) in o, if v takes it. */
static void take(const struct cli_verb *v, unsigned bit, const char *arg,
		 struct cli_opts *o)
{
	char what[128];

	if (!(v->opts & bit)) {
		snprintf(what, sizeof(what), "%s does not take --%s", v->name,
			 option_of(bit)->name);
		usage_error(v, what);
	}
	if (bit == CLI_QUIET)
		o->quiet = true;
	else if (bit == CLI_JSON)
		o->json = true;
	else if (bit == CLI_DRY_RUN)
		o->dry_run = true;
	else if (bit == CLI_AGAINST)
		o->against = arg;
}

static void check_operands(const struct cli_verb *v, const struct cli_opts *o)
{
	char what[128];

	if (o->n_args < v->min_args) {
		usage_error(v, "missing operand");
	} else if (o->n_args > v->max_args) {
		snprintf(what, sizeof(what), "unexpected operand \"%.60s\"",
			 o->args[v->max_args]);
		usage_error(v, what);
	}
	if ((v->required & CLI_AGAINST) && !o->against)
		usage_error(v, "missing --against SRC");
}

void udfs_cli_parse(const struct cli_verb *v, int argc, char **argv,
		    struct cli_opts *o)
{
	char what[128];
	int c;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* one line of our own instead of getopt's */
	while ((c = getopt_long(argc, argv, ":qh", long_opts, NULL)) != -1) {
		if (c == 'q')
			c = CLI_QUIET;
		if (c == 'h' || c == OPT_HELP)
			help(v);
		if (c == ':') {
			snprintf(what, sizeof(what), "%.60s needs an argument",
				 argv[optind - 1]);
			usage_error(v, what);
		}
		if (c == '?') {
			if (optopt)
				snprintf(what, sizeof(what),
					 "unknown option -%c", optopt);
			else
				snprintf(what, sizeof(what),
					 "unknown option %.60s",
					 argv[optind - 1]);
			usage_error(v, what);
		}
		take(v, (unsigned)c, optarg, o);
	}
	o->args = argv + optind;
	o->n_args = argc - optind;
	check_operands(v, o);
}

const char *udfs_cli_str(const char *s)
{
	static char *ring[8];
	static size_t cap[8];
	static unsigned next;
	size_t n = udfs_escape(NULL, 0, s) + 1;
	unsigned i;

	if (n == strlen(s) + 1)
		return s;
	i = next++ % UDFS_ARRAY_SIZE(ring);
	if (n > cap[i]) {
		ring[i] = udfs_xrealloc(ring[i], n);
		cap[i] = n;
	}
	udfs_escape(ring[i], n, s);
	return ring[i];
}

json_t *udfs_cli_json_str(const char *s)
{
	json_t *j = json_string(s);

	return j ? j : json_string(udfs_cli_str(s));
}

// SPDX-License-Identifier: MIT
/*
 * udfs-compress: builds a store. Argument parsing and dispatch only; the
 * work is in write/ (add.c, add_base.c). Options may stand before or
 * after the positional arguments (GNU getopt_long order).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "store/store.h"
#include "write/add.h"
#include "write/add_i.h"

static const char usage[] =
    "usage: udfs-compress init STORE\n"
    "       udfs-compress add-base STORE NAME SRC [--link] [-q]\n"
    "       udfs-compress add STORE --base BASE NAME=SRC [NAME2=SRC2 ...] [options]\n"
    "\n"
    "SRC is one .safetensors file or a model directory.\n"
    "\n"
    "options of add:\n"
    "  --base BASE           base model the deltas are taken against\n"
    "  --lossless            byte-exact delta\n"
    "  --sparsity S          UltraDelta target sparsity (default 0.97)\n"
    "  --bits B              quantization bits, 1..8 (default 4)\n"
    "  --step D              mixed-sparsity step (default 0.01)\n"
    "  --ratio R             pick s so that the lossy tensors reach ratio R\n"
    "                        (adaptive: the whole model, real bytes)\n"
    "  --mask explicit|seeded  keep-mask kind (default explicit)\n"
    "  --method adaptive|ultradelta|dare|bitdelta|magnitude\n"
    "                        (default: adaptive without lossy options,\n"
    "                        ultradelta with --sparsity, --bits, ...)\n"
    "  --max-error E         adaptive: relative delta error of each tensor\n"
    "                        (default 0.1)\n"
    "  --codes LIST          adaptive: the code families it may choose,\n"
    "                        of lr,sign,q,rand,tcq (default: all)\n"
    "  --exact GLOB          store matching tensors losslessly (repeatable)\n"
    "  --min-elems N         smallest matrix made lossy (default 1024)\n"
    "  --seed N              all randomness derives from it (default 0)\n"
    "  --jobs N              worker threads (default: all cores)\n"
    "  --level N             zstd level of lossless planes (default 1)\n"
    "options of add-base:\n"
    "  --link                hard-link the files instead of copying\n"
    "common options:\n"
    "  -q, --quiet           no progress line\n"
    "  -h, --help            this text\n"
    "  -V, --version         print the version\n";

enum {
	OPT_BASE = 256,
	OPT_LOSSLESS,
	OPT_SPARSITY,
	OPT_BITS,
	OPT_STEP,
	OPT_RATIO,
	OPT_MASK,
	OPT_METHOD,
	OPT_MAX_ERROR,
	OPT_CODES,
	OPT_EXACT,
	OPT_MIN_ELEMS,
	OPT_SEED,
	OPT_JOBS,
	OPT_LEVEL,
	OPT_LINK,
};

/* The verbs, as bits of struct uc_option.verbs. */
enum {
	VERB_INIT = 1u << 0,
	VERB_ADD_BASE = 1u << 1,
	VERB_ADD = 1u << 2,
	VERB_ANY = VERB_INIT | VERB_ADD_BASE | VERB_ADD,
};

/* Every option and the verbs that take it: any other use is a usage
 * error (exit 2), whatever the position of the option. */
static const struct uc_option {
	const char *name;
	int has_arg;
	int val;
	unsigned verbs;
} uc_options[] = {
    {"base", required_argument, OPT_BASE, VERB_ADD},
    {"lossless", no_argument, OPT_LOSSLESS, VERB_ADD},
    {"sparsity", required_argument, OPT_SPARSITY, VERB_ADD},
    {"bits", required_argument, OPT_BITS, VERB_ADD},
    {"step", required_argument, OPT_STEP, VERB_ADD},
    {"ratio", required_argument, OPT_RATIO, VERB_ADD},
    {"mask", required_argument, OPT_MASK, VERB_ADD},
    {"method", required_argument, OPT_METHOD, VERB_ADD},
    {"max-error", required_argument, OPT_MAX_ERROR, VERB_ADD},
    {"codes", required_argument, OPT_CODES, VERB_ADD},
    {"exact", required_argument, OPT_EXACT, VERB_ADD},
    {"min-elems", required_argument, OPT_MIN_ELEMS, VERB_ADD},
    {"seed", required_argument, OPT_SEED, VERB_ADD},
    {"jobs", required_argument, OPT_JOBS, VERB_ADD},
    {"level", required_argument, OPT_LEVEL, VERB_ADD},
    {"link", no_argument, OPT_LINK, VERB_ADD_BASE},
    {"quiet", no_argument, 'q', VERB_ANY},
    {"help", no_argument, 'h', VERB_ANY},
    {"version", no_argument, 'V', VERB_ANY},
};

#define N_OPTIONS UDFS_ARRAY_SIZE(uc_options)

/* What the command line says, before the verb is known. */
struct args {
	udfs_add_opts o;
	const char **exact_v; /* the --exact globs */
	bool link, quiet;
	bool seen[N_OPTIONS]; /* options given, by index in uc_options */
};

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		udfs_usage_die("--%s: \"%s\" is not a number in [%g, %g]", opt,
			       s, lo, hi);
	return v;
}

static unsigned long long parse_ull(const char *opt, const char *s,
				    unsigned long long lo,
				    unsigned long long hi)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		udfs_usage_die(
		    "--%s: \"%s\" is not a whole number in [%llu, %llu]", opt,
		    s, lo, hi);
	return v;
}

/* The lossy-method options: their values, and that one was given. */
static void lossy_option(struct args *a, int c, const char *arg)
{
	udfs_add_opts *o = &a->o;

	o->given |= UDFS_ADD_GIVEN_LOSSY;
	if (c == OPT_SPARSITY || c == OPT_BITS || c == OPT_STEP ||
	    c == OPT_MASK)
		o->given |= UDFS_ADD_GIVEN_UD;
	if (c == OPT_SPARSITY) {
		o->sparsity =
		    parse_double("sparsity", arg, 0, UDFS_SPARSITY_MAX);
	} else if (c == OPT_BITS) {
		o->bits = (unsigned)parse_ull("bits", arg, 1, UDFS_BITS_MAX);
	} else if (c == OPT_STEP) {
		o->step = parse_double("step", arg, 0, UDFS_STEP_MAX);
	} else if (c == OPT_RATIO) {
		o->ratio =
		    parse_double("ratio", arg, UDFS_RATIO_MIN, UDFS_RATIO_MAX);
	} else if (c == OPT_MASK) {
		if (!strcmp(arg, "explicit"))
			o->mask = UDFS_MASK_EXPLICIT;
		else if (!strcmp(arg, "seeded"))
			o->mask = UDFS_MASK_SEEDED;
		else
			udfs_usage_die(
			    "--mask: \"%s\" is not explicit or seeded", arg);
		o->given |= UDFS_ADD_GIVEN_MASK;
	} else if (c == OPT_METHOD) {
		o->method = udfs_encoding_parse(arg);
		if (!udfs_encoding_is_lossy(o->method))
			udfs_usage_die(
			    "--method: \"%s\" is not adaptive, ultradelta, dare, bitdelta or magnitude",
			    arg);
		o->given |= UDFS_ADD_GIVEN_METHOD;
	} else if (c == OPT_MAX_ERROR) {
		o->max_error =
		    parse_double("max-error", arg, 0, UDFS_MAX_ERROR_MAX);
		o->given |= UDFS_ADD_GIVEN_MAX_ERROR;
	} else if (c == OPT_CODES) {
		int err = udfs_add_codes_parse(arg, &o->codes);

		if (err)
			udfs_usage_die("%s", udfs_error_msg(err));
		o->given |= UDFS_ADD_GIVEN_CODES;
	}
}

/* One option of the command line (getopt's c, its argument arg). */
static void take_option(struct args *a, int c, const char *arg)
{
	udfs_add_opts *o = &a->o;

	switch (c) {
	case OPT_BASE:
		o->base = arg;
		break;
	case OPT_LOSSLESS:
		o->lossless = true;
		break;
	case OPT_EXACT:
		a->exact_v = udfs_xrealloc(a->exact_v, (o->n_exact + 1) *
							   sizeof(*a->exact_v));
		a->exact_v[o->n_exact++] = arg;
		break;
	case OPT_MIN_ELEMS:
		o->min_elems = parse_ull("min-elems", arg, 1, UINT64_MAX);
		break;
	case OPT_SEED:
		o->seed = parse_ull("seed", arg, 0, INT64_MAX);
		break;
	case OPT_JOBS:
		o->jobs = (int)parse_ull("jobs", arg, 1, UDFS_JOBS_MAX);
		break;
	case OPT_LEVEL:
		o->level = (int)parse_ull("level", arg, 1, UDFS_LEVEL_MAX);
		break;
	case OPT_LINK:
		a->link = true;
		break;
	case 'q':
		a->quiet = true;
		break;
	default:
		lossy_option(a, c, arg);
	}
}

/* Parse every option into a; -h and -V print and exit 0, anything
 * unknown is a usage error. Leaves the operands at argv[optind..]. */
static void parse_options(struct args *a, int argc, char **argv)
{
	struct option long_opts[N_OPTIONS + 1] = {{0}};
	int c;

	for (size_t i = 0; i < N_OPTIONS; i++)
		long_opts[i] =
		    (struct option){uc_options[i].name, uc_options[i].has_arg,
				    NULL, uc_options[i].val};
	opterr = 0; /* one line of our own instead of getopt's */
	while ((c = getopt_long(argc, argv, ":qhV", long_opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage, stdout);
			exit(0);
		}
		if (c == 'V') {
			puts("udfs-compress " UDFS_VERSION);
			exit(0);
		}
		if (c == ':')
			udfs_usage_die("%s needs an argument; see --help",
				       argv[optind - 1]);
		if (c == '?' && optopt)
			udfs_usage_die("unknown option -%c; see --help",
				       optopt);
		if (c == '?')
			udfs_usage_die("unknown option %s; see --help",
				       argv[optind - 1]);
		for (size_t i = 0; i < N_OPTIONS; i++)
			if (uc_options[i].val == c)
				a->seen[i] = true;
		take_option(a, c, optarg);
	}
	a->o.quiet = a->quiet;
	a->o.exact = a->exact_v;
}

/* Refuse an option the verb does not take (exit 2). */
static void check_verb_options(const struct args *a, const char *verb,
			       unsigned bit)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (a->seen[i] && !(uc_options[i].verbs & bit))
			udfs_usage_die("%s does not take --%s; see --help",
				       verb, uc_options[i].name);
}

/* The lossy method the options mean, and the options of add that
 * contradict each other, by the library's rules (exit 2). Without a lossy
 * option, or with --max-error alone, the method is adaptive; UltraDelta's
 * options keep their meaning. */
static void check_add_options(struct args *a)
{
	int err;

	udfs_add_opts_resolve(&a->o);
	err = udfs_add_opts_check(&a->o);
	if (err)
		udfs_usage_die("%s", udfs_error_msg(err));
}

static void on_signal(int sig)
{
	(void)sig;
	udfs_interrupted = 1;
}

/*
 * Sources and the base are read through mmap; a read error there (a file
 * truncated under us, a failing disk or network filesystem) arrives as
 * SIGBUS. Nothing has been committed at that point (the pack is still in
 * tmp/, which gc removes), so one line and a non-zero exit is all that is
 * needed. Only async-signal-safe calls here. Threads reading the same
 * bad file fault together: the first one reports and exits, the others
 * wait for that exit (returning would fault again), so the line is
 * printed once.
 */
static void on_sigbus(int sig)
{
	static const char tail[] =
	    ": I/O error while reading a source or base file (changed or unreadable); nothing was added\n";
	static atomic_flag reported = ATOMIC_FLAG_INIT;
	const char *p = udfs_progname();

	(void)sig;
	if (atomic_flag_test_and_set(&reported))
		for (;;)
			pause();
	if (write(2, p, strlen(p)) < 0 || write(2, tail, sizeof(tail) - 1) < 0)
		_exit(1);
	_exit(1);
}

static void check(int err)
{
	if (err)
		udfs_die("%s", udfs_error_msg(err));
}

/* udfs-compress add STORE NAME=SRC...: operands in argv[0..argc). */
static int cmd_add(struct args *a, int argc, char **argv)
{
	size_t n = (size_t)(argc - 1);
	const char **names, **srcs;
	udfs_store *s = NULL;
	int err;

	check_add_options(a);
	if (argc < 2)
		udfs_usage_die(
		    "usage: udfs-compress add STORE --base BASE NAME=SRC ...");
	names = udfs_xcalloc(n, sizeof(*names));
	srcs = udfs_xcalloc(n, sizeof(*srcs));
	for (size_t i = 0; i < n; i++) {
		char *arg = argv[1 + i];
		char *eq = strchr(arg, '=');

		if (!eq || eq == arg || !eq[1])
			udfs_usage_die("\"%s\" is not NAME=SRC", arg);
		*eq = '\0';
		names[i] = arg;
		srcs[i] = eq + 1;
	}
	check(udfs_store_open(argv[0], 0, &s));
	err = udfs_compress_add(s, &a->o, n, names, srcs);
	udfs_store_close(s);
	free(names);
	free(srcs);
	return err;
}

/* Run verb with its operands argv[0..argc); returns 0 or -errno. */
static int run(struct args *a, const char *verb, int argc, char **argv)
{
	udfs_store *s = NULL;
	int err;

	if (!strcmp(verb, "init")) {
		check_verb_options(a, verb, VERB_INIT);
		if (argc != 1)
			udfs_usage_die("usage: udfs-compress init STORE");
		return udfs_store_init(argv[0]);
	}
	if (!strcmp(verb, "add-base")) {
		check_verb_options(a, verb, VERB_ADD_BASE);
		if (argc != 3)
			udfs_usage_die(
			    "usage: udfs-compress add-base STORE NAME SRC");
		check(udfs_store_open(argv[0], 0, &s));
		err = udfs_compress_add_base(s, argv[1], argv[2], a->link,
					     a->quiet);
		udfs_store_close(s);
		return err;
	}
	if (!strcmp(verb, "add")) {
		check_verb_options(a, verb, VERB_ADD);
		return cmd_add(a, argc, argv);
	}
	udfs_usage_die("unknown command \"%s\"; see --help", verb);
}

int main(int argc, char **argv)
{
	struct args a = {0};
	struct sigaction sa = {.sa_handler = on_signal};
	const char *verb;
	int err;

	udfs_set_progname(argv[0]);
	udfs_raise_nofile(); /* stores and sources of 1000+ files */
	udfs_add_opts_init(&a.o);
	parse_options(&a, argc, argv);
	if (optind >= argc)
		udfs_usage_die(
		    "missing command (init, add-base or add); see --help");
	verb = argv[optind++];
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	err = run(&a, verb, argc - optind, argv + optind);
	free(a.exact_v);
	check(err);
	return 0;
}

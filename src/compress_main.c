// SPDX-License-Identifier: MIT
/*
 * udfs-compress: builds a store. Argument parsing and dispatch only; the
 * work is in compress.c. Options may stand before or after the positional
 * arguments (GNU getopt_long order).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress_i.h"
#include "udfs/compress.h"
#include "udfs/store.h"
#include "udfs/util.h"

#define UDFS_VERSION "0.1.0"

static const char usage[] =
    "usage: udfs-compress init STORE\n"
    "       udfs-compress add-base STORE NAME SRC [--link] [-q]\n"
    "       udfs-compress add STORE --base BASE NAME=SRC [NAME2=SRC2 ...] "
    "[options]\n"
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
    "  --exact GLOB          store matching tensors losslessly (repeatable)\n"
    "  --min-elems N         smallest matrix made lossy (default 1024)\n"
    "  --seed N              all randomness derives from it (default 0)\n"
    "  --jobs N              worker threads (default: all cores)\n"
    "  --level N             zstd level of lossless planes (default 3)\n"
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
	OPT_EXACT,
	OPT_MIN_ELEMS,
	OPT_SEED,
	OPT_JOBS,
	OPT_LEVEL,
	OPT_LINK,
};

static const struct option long_opts[] = {
    {"base", required_argument, NULL, OPT_BASE},
    {"lossless", no_argument, NULL, OPT_LOSSLESS},
    {"sparsity", required_argument, NULL, OPT_SPARSITY},
    {"bits", required_argument, NULL, OPT_BITS},
    {"step", required_argument, NULL, OPT_STEP},
    {"ratio", required_argument, NULL, OPT_RATIO},
    {"mask", required_argument, NULL, OPT_MASK},
    {"method", required_argument, NULL, OPT_METHOD},
    {"max-error", required_argument, NULL, OPT_MAX_ERROR},
    {"exact", required_argument, NULL, OPT_EXACT},
    {"min-elems", required_argument, NULL, OPT_MIN_ELEMS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"level", required_argument, NULL, OPT_LEVEL},
    {"link", no_argument, NULL, OPT_LINK},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		udfs_die("--%s: \"%s\" is not a number in [%g, %g]", opt, s, lo,
			 hi);
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
		udfs_die("--%s: \"%s\" is not a whole number in [%llu, %llu]",
			 opt, s, lo, hi);
	return v;
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
 * needed. Only async-signal-safe calls here.
 */
static void on_sigbus(int sig)
{
	static const char tail[] = ": I/O error while reading a source or "
				   "base file (changed or unreadable); "
				   "nothing was added\n";
	const char *p = udfs_progname();

	(void)sig;
	if (write(2, p, strlen(p)) < 0 || write(2, tail, sizeof(tail) - 1) < 0)
		_exit(1);
	_exit(1);
}

static void check(int err)
{
	if (err)
		udfs_die("%s", udfs_error_msg(err));
}

int main(int argc, char **argv)
{
	udfs_add_opts o;
	json_t *params = json_object(), *exact = json_array();
	const char **exact_v = NULL;
	bool link = false, quiet = false, lossy_opt = false, mask_opt = false;
	bool method_opt = false, ud_opt = false, max_error_opt = false;
	struct sigaction sa = {.sa_handler = on_signal};
	udfs_store *s = NULL;
	const char *verb;
	int c, err = 0;

	udfs_set_progname(argv[0]);
	udfs_add_opts_init(&o);
	opterr = 0; /* one line of our own instead of getopt's */
	while ((c = getopt_long(argc, argv, ":qhV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_BASE:
			o.base = optarg;
			break;
		case OPT_LOSSLESS:
			o.lossless = true;
			break;
		case OPT_SPARSITY:
			o.sparsity = parse_double("sparsity", optarg, 0, 0.999);
			lossy_opt = ud_opt = true;
			break;
		case OPT_BITS:
			o.bits = (unsigned)parse_ull("bits", optarg, 1, 8);
			lossy_opt = ud_opt = true;
			break;
		case OPT_STEP:
			o.step = parse_double("step", optarg, 0, 0.5);
			lossy_opt = ud_opt = true;
			break;
		case OPT_RATIO:
			o.ratio = parse_double("ratio", optarg, 1.0001, 1e6);
			lossy_opt = true;
			break;
		case OPT_MASK:
			if (!strcmp(optarg, "explicit"))
				o.mask = UDFS_MASK_EXPLICIT;
			else if (!strcmp(optarg, "seeded"))
				o.mask = UDFS_MASK_SEEDED;
			else
				udfs_die("--mask: \"%s\" is not explicit or "
					 "seeded",
					 optarg);
			lossy_opt = mask_opt = ud_opt = true;
			break;
		case OPT_METHOD:
			o.method = udfs_encoding_parse(optarg);
			if (!udfs_encoding_is_lossy(o.method))
				udfs_die("--method: \"%s\" is not adaptive, "
					 "ultradelta, dare, bitdelta or "
					 "magnitude",
					 optarg);
			lossy_opt = method_opt = true;
			break;
		case OPT_MAX_ERROR:
			o.max_error = parse_double("max-error", optarg, 0, 10);
			lossy_opt = max_error_opt = true;
			break;
		case OPT_EXACT:
			exact_v = udfs_xrealloc(exact_v, (o.n_exact + 1) *
							     sizeof(*exact_v));
			exact_v[o.n_exact++] = optarg;
			json_array_append_new(exact, json_string(optarg));
			break;
		case OPT_MIN_ELEMS:
			o.min_elems =
			    parse_ull("min-elems", optarg, 1, UINT64_MAX);
			break;
		case OPT_SEED:
			o.seed = parse_ull("seed", optarg, 0, INT64_MAX);
			break;
		case OPT_JOBS:
			o.jobs = (int)parse_ull("jobs", optarg, 1, 64);
			break;
		case OPT_LEVEL:
			o.level = (int)parse_ull("level", optarg, 1, 22);
			break;
		case OPT_LINK:
			link = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(usage, stdout);
			goto done;
		case 'V':
			puts("udfs-compress " UDFS_VERSION);
			goto done;
		case ':':
			udfs_die("%s needs an argument; see --help",
				 argv[optind - 1]);
		default:
			if (optopt)
				udfs_die("unknown option -%c; see --help",
					 optopt);
			udfs_die("unknown option %s; see --help",
				 argv[optind - 1]);
		}
	}
	o.quiet = quiet;
	o.exact = exact_v;
	if (optind >= argc)
		udfs_die("missing command (init, add-base or add); see "
			 "--help");
	verb = argv[optind++];
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	if (!strcmp(verb, "init")) {
		if (argc - optind != 1)
			udfs_die("usage: udfs-compress init STORE");
		check(udfs_store_init(argv[optind]));
	} else if (!strcmp(verb, "add-base")) {
		if (argc - optind != 3)
			udfs_die(
			    "usage: udfs-compress add-base STORE NAME SRC");
		check(udfs_store_open(argv[optind], 0, &s));
		err = udfs_compress_add_base(s, argv[optind + 1],
					     argv[optind + 2], link, quiet);
	} else if (!strcmp(verb, "add")) {
		size_t n = (size_t)(argc - optind - 1);
		const char **names, **srcs;

		if (argc - optind < 2)
			udfs_die("usage: udfs-compress add STORE --base BASE "
				 "NAME=SRC ...");
		if (!o.base)
			udfs_die("add needs --base BASE");
		if (o.lossless && lossy_opt)
			udfs_die("--lossless cannot be combined with lossy "
				 "options (--sparsity, --bits, --method, ...)");
		/* Without a lossy option, or with --max-error alone, the
		 * adaptive method; UltraDelta's options keep their meaning. */
		if (!method_opt &&
		    (!lossy_opt || (max_error_opt && !ud_opt && o.ratio == 0)))
			o.method = UDFS_ENC_ADAPTIVE;
		if (o.method == UDFS_ENC_ADAPTIVE && ud_opt)
			udfs_die("--sparsity, --bits, --step and --mask do not "
				 "apply to --method adaptive");
		if (max_error_opt && o.method != UDFS_ENC_ADAPTIVE)
			udfs_die("--max-error applies to --method adaptive "
				 "only");
		if (max_error_opt && o.ratio > 0)
			udfs_die("--max-error and --ratio are two targets: "
				 "give one");
		if (mask_opt && o.method == UDFS_ENC_BITDELTA)
			udfs_die(
			    "--method bitdelta keeps every element: --mask "
			    "does not apply");
		if (o.mask == UDFS_MASK_SEEDED &&
		    o.method == UDFS_ENC_MAGNITUDE)
			udfs_die(
			    "--method magnitude needs an explicit mask: its "
			    "positions cannot be regenerated from a seed");
		names = udfs_xcalloc(n, sizeof(*names));
		srcs = udfs_xcalloc(n, sizeof(*srcs));
		for (size_t i = 0; i < n; i++) {
			char *arg = argv[optind + 1 + (int)i];
			char *eq = strchr(arg, '=');

			if (!eq || eq == arg || !eq[1])
				udfs_die("\"%s\" is not NAME=SRC", arg);
			*eq = '\0';
			names[i] = arg;
			srcs[i] = eq + 1;
		}
		json_object_set_new(
		    params, "method",
		    json_string(o.lossless ? "lossless"
					   : udfs_encoding_name(o.method)));
		if (!o.lossless && o.method == UDFS_ENC_ADAPTIVE) {
			if (o.ratio > 0)
				json_object_set_new(params, "ratio",
						    json_real(o.ratio));
			else
				json_object_set_new(params, "max_error",
						    json_real(o.max_error));
			json_object_set_new(
			    params, "min_elems",
			    json_integer((json_int_t)o.min_elems));
			json_object_set_new(params, "exact",
					    json_incref(exact));
		} else if (!o.lossless) {
			json_object_set_new(params, "sparsity",
					    json_real(o.sparsity));
			json_object_set_new(params, "bits",
					    json_integer(o.bits));
			json_object_set_new(params, "step", json_real(o.step));
			json_object_set_new(params, "ratio",
					    json_real(o.ratio));
			json_object_set_new(
			    params, "mask",
			    json_string(o.method == UDFS_ENC_BITDELTA ? "none"
					: o.mask == UDFS_MASK_SEEDED
					    ? "seeded"
					    : "explicit"));
			json_object_set_new(
			    params, "min_elems",
			    json_integer((json_int_t)o.min_elems));
			json_object_set_new(params, "exact",
					    json_incref(exact));
		}
		json_object_set_new(params, "seed",
				    json_integer((json_int_t)o.seed));
		o.argv_json = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
		check(udfs_store_open(argv[optind], 0, &s));
		err = udfs_compress_add(s, &o, n, names, srcs);
		free((void *)o.argv_json);
		free(names);
		free(srcs);
	} else {
		udfs_die("unknown command \"%s\"; see --help", verb);
	}
done:
	udfs_store_close(s);
	json_decref(params);
	json_decref(exact);
	free(exact_v);
	check(err);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * The options of an add (opts.h): defaults, checks, and the JSON record
 * the catalog keeps. The command line parses into udfs_add_opts and
 * leaves every rule to udfs_add_opts_check(), which the add pipeline
 * calls again, so a library caller cannot skip it.
 */
#include "write/opts.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "codec/lossy.h"
#include "codec/zstd.h"
#include "common/pool.h"
#include "common/util.h"
#include "store/store.h"

void udfs_add_opts_init(udfs_add_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->method = UDFS_ENC_ULTRADELTA;
	o->sparsity = 0.97;
	o->bits = 4;
	o->step = 0.01;
	o->mask = UDFS_MASK_EXPLICIT;
	o->min_elems = 1024;
	o->max_error = UDFS_ADAPTIVE_MAX_ERROR;
	o->codes = UDFS_CODES_ALL;
	o->jobs = udfs_ncpus();
	o->level = UDFS_ZSTD_LEVEL;
}

/* Every value in its range (the command line says which string it was). */
static int check_ranges(const udfs_add_opts *o)
{
	if (!(o->sparsity >= 0 && o->sparsity <= UDFS_SPARSITY_MAX))
		return udfs_error(-EINVAL, "sparsity %g is not in [0, %g]",
				  o->sparsity, UDFS_SPARSITY_MAX);
	if (o->bits < 1 || o->bits > UDFS_BITS_MAX)
		return udfs_error(-EINVAL, "bits %u is not in [1, %d]", o->bits,
				  UDFS_BITS_MAX);
	if (!(o->step >= 0 && o->step <= UDFS_STEP_MAX))
		return udfs_error(-EINVAL, "step %g is not in [0, %g]", o->step,
				  UDFS_STEP_MAX);
	if (o->ratio != 0 &&
	    !(o->ratio >= UDFS_RATIO_MIN && o->ratio <= UDFS_RATIO_MAX))
		return udfs_error(-EINVAL, "ratio %g is not in [%g, %g]",
				  o->ratio, UDFS_RATIO_MIN, UDFS_RATIO_MAX);
	if (!(o->max_error >= 0 && o->max_error <= UDFS_MAX_ERROR_MAX))
		return udfs_error(-EINVAL, "max-error %g is not in [0, %d]",
				  o->max_error, UDFS_MAX_ERROR_MAX);
	if (o->min_elems < 1 || o->seed > INT64_MAX)
		return udfs_error(-EINVAL, "min-elems or seed out of range");
	if (o->jobs < 1 || o->jobs > UDFS_JOBS_MAX)
		return udfs_error(-EINVAL, "jobs %d is not in [1, %d]", o->jobs,
				  UDFS_JOBS_MAX);
	if (o->level < 1 || o->level > UDFS_LEVEL_MAX)
		return udfs_error(-EINVAL, "level %d is not in [1, %d]",
				  o->level, UDFS_LEVEL_MAX);
	if (!udfs_encoding_is_lossy(o->method))
		return udfs_error(-EINVAL, "method %d is not a lossy method",
				  o->method);
	if (o->mask != UDFS_MASK_EXPLICIT && o->mask != UDFS_MASK_SEEDED)
		return udfs_error(-EINVAL, "mask %d is not explicit or seeded",
				  o->mask);
	return 0;
}

void udfs_add_opts_resolve(udfs_add_opts *o)
{
	unsigned g = o->given;

	if (g & UDFS_ADD_GIVEN_METHOD)
		return;
	if (!(g & UDFS_ADD_GIVEN_LOSSY) ||
	    ((g & UDFS_ADD_GIVEN_MAX_ERROR) && !(g & UDFS_ADD_GIVEN_UD) &&
	     !o->ratio) ||
	    ((g & UDFS_ADD_GIVEN_CODES) && !(g & UDFS_ADD_GIVEN_UD)))
		o->method = UDFS_ENC_ADAPTIVE;
}

static const char *const code_names[] = {"lr", "sign", "q", "rand", "tcq"};

int udfs_add_codes_parse(const char *list, unsigned *codes)
{
	const char *at = list;

	*codes = 0;
	for (;;) {
		size_t len = strcspn(at, ",");
		unsigned bit = 0;

		for (unsigned i = 0; i < 5 && !bit; i++)
			if (strlen(code_names[i]) == len &&
			    !strncmp(at, code_names[i], len))
				bit = 1u << i;
		if (!bit)
			return udfs_error(
			    -EINVAL,
			    "--codes: \"%.*s\" is not lr, sign, q, rand or tcq",
			    (int)len, at);
		*codes |= bit;
		if (!at[len])
			return 0;
		at += len + 1;
	}
}

/* The adaptive method's own options against the others. */
static int check_adaptive(const udfs_add_opts *o)
{
	bool max_error = o->given & UDFS_ADD_GIVEN_MAX_ERROR;

	if (o->lossless)
		return 0;
	if (o->method == UDFS_ENC_ADAPTIVE && (o->given & UDFS_ADD_GIVEN_UD))
		return udfs_error(
		    -EINVAL,
		    "--sparsity, --bits, --step and --mask do not apply to --method adaptive");
	if (max_error && o->method != UDFS_ENC_ADAPTIVE)
		return udfs_error(
		    -EINVAL, "--max-error applies to --method adaptive only");
	if ((o->given & UDFS_ADD_GIVEN_CODES) && o->method != UDFS_ENC_ADAPTIVE)
		return udfs_error(-EINVAL,
				  "--codes applies to --method adaptive only");
	if (max_error && o->ratio > 0)
		return udfs_error(
		    -EINVAL,
		    "--max-error and --ratio are two targets: give one");
	return 0;
}

int udfs_add_opts_check(const udfs_add_opts *o)
{
	int err = check_adaptive(o);

	if (err)
		return err;
	if (!o->base)
		return udfs_error(-EINVAL, "add needs --base BASE; see --help");
	if (o->lossless && (o->given & UDFS_ADD_GIVEN_LOSSY))
		return udfs_error(
		    -EINVAL,
		    "--lossless cannot be combined with lossy options (--sparsity, --bits, --method, ...)");
	if ((o->given & UDFS_ADD_GIVEN_MASK) && o->method == UDFS_ENC_BITDELTA)
		return udfs_error(
		    -EINVAL,
		    "--method bitdelta keeps every element: --mask does not apply");
	if (o->mask == UDFS_MASK_SEEDED && o->method == UDFS_ENC_MAGNITUDE)
		return udfs_error(
		    -EINVAL,
		    "--method magnitude needs an explicit mask: its positions cannot be regenerated from a seed");
	return check_ranges(o);
}

/* The adaptive method's options of o into the JSON object p: its target
 * (ratio or max error) instead of UltraDelta's parameters. */
static void adaptive_json(json_t *p, const udfs_add_opts *o, json_t *exact)
{
	if (o->ratio > 0)
		json_object_set_new(p, "ratio", json_real(o->ratio));
	else
		json_object_set_new(p, "max_error", json_real(o->max_error));
	json_object_set_new(p, "min_elems",
			    json_integer((json_int_t)o->min_elems));
	json_object_set_new(p, "exact", exact);
	if (o->codes != UDFS_CODES_ALL) {
		json_t *c = json_array();

		for (unsigned i = 0; i < 5; i++)
			if (o->codes & 1u << i)
				json_array_append_new(
				    c, json_string(code_names[i]));
		json_object_set_new(p, "families", c);
	}
}

/* The lossy options of o into the JSON object p. */
static void lossy_json(json_t *p, const udfs_add_opts *o, double sparsity)
{
	json_t *exact = json_array();

	for (size_t i = 0; i < o->n_exact; i++)
		json_array_append_new(exact, json_string(o->exact[i]));
	if (o->method == UDFS_ENC_ADAPTIVE) {
		adaptive_json(p, o, exact);
		return;
	}
	json_object_set_new(p, "sparsity", json_real(sparsity));
	json_object_set_new(p, "bits", json_integer(o->bits));
	json_object_set_new(p, "step", json_real(o->step));
	json_object_set_new(p, "ratio", json_real(o->ratio));
	/* bitdelta keeps every element, whatever o->mask says. */
	json_object_set_new(
	    p, "mask",
	    json_string(udfs_mask_name(
		o->method == UDFS_ENC_BITDELTA ? UDFS_MASK_NONE : o->mask)));
	json_object_set_new(p, "min_elems",
			    json_integer((json_int_t)o->min_elems));
	json_object_set_new(p, "exact", exact);
}

char *udfs_add_params_json(const udfs_add_opts *o, double sparsity,
			   json_t *codes)
{
	json_t *p = json_object();
	char *s;

	json_object_set_new(p, "method",
			    json_string(o->lossless
					    ? "lossless"
					    : udfs_encoding_name(o->method)));
	if (!o->lossless)
		lossy_json(p, o, sparsity);
	json_object_set_new(p, "seed", json_integer((json_int_t)o->seed));
	/* The adaptive method's choice per tensor (udfs info shows it). */
	if (codes)
		json_object_set(p, "codes", codes);
	s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(p);
	return s ? s : udfs_xstrdup("{}");
}

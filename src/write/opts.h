/* SPDX-License-Identifier: MIT */
/*
 * The options of an add (udfs-compress(1)): their defaults, their ranges,
 * the rules on which combine, and the record of them the catalog keeps
 * (models.params, udfs(5)). udfs_compress_add() checks them itself, so
 * every caller gets the same refusals as the command line.
 */
#ifndef UDFS_OPTS_H
#define UDFS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ranges of the numeric options. */
#define UDFS_SPARSITY_MAX 0.999
#define UDFS_BITS_MAX 8
#define UDFS_STEP_MAX 0.5
#define UDFS_RATIO_MIN 1.0001
#define UDFS_RATIO_MAX 1e6
#define UDFS_JOBS_MAX 64
#define UDFS_LEVEL_MAX 22
#define UDFS_MAX_ERROR_MAX 10

/* Default --max-error of the adaptive method: see udfs-compress(1). */
#define UDFS_ADAPTIVE_MAX_ERROR 0.1

/* Bits of udfs_add_opts.given: options set explicitly, which some
 * combinations refuse even at their default values. */
enum {
	UDFS_ADD_GIVEN_LOSSY = 1u << 0,	 /* any lossy option */
	UDFS_ADD_GIVEN_MASK = 1u << 1,	 /* the mask */
	UDFS_ADD_GIVEN_METHOD = 1u << 2, /* the method */
	/* an option of UltraDelta: sparsity, bits, step or mask */
	UDFS_ADD_GIVEN_UD = 1u << 3,
	UDFS_ADD_GIVEN_MAX_ERROR = 1u << 4, /* the adaptive error target */
	UDFS_ADD_GIVEN_CODES = 1u << 5,	    /* the adaptive code families */
};

/* Families of codes the adaptive method may choose (--codes); exact
 * storage and dropping a delta are always allowed. */
enum {
	UDFS_CODES_LR = 1u << 0,   /* a low-rank part (lr) */
	UDFS_CODES_SIGN = 1u << 1, /* sign codes with stored positions */
	UDFS_CODES_Q = 1u << 2,	   /* dead-zone codes of every element */
	UDFS_CODES_RAND = 1u << 3, /* codes on a seeded random share */
	UDFS_CODES_TCQ = 1u << 4,  /* trellis codes */
	UDFS_CODES_ALL = (1u << 5) - 1,
};

/* The family bits of a comma-separated list of lr, sign, q, rand and
 * tcq into *codes. 0 or -EINVAL with one message. */
int udfs_add_codes_parse(const char *list, unsigned *codes);

typedef struct udfs_add_opts {
	const char *base; /* name of the base model in the store */
	bool lossless;	  /* --lossless: byte-exact deltas */
	int method;	  /* UDFS_ENC_ULTRADELTA, _DARE, _BITDELTA, _MAGNITUDE,
			     _ADAPTIVE */
	double sparsity;  /* s */
	unsigned bits;	  /* b */
	double step;	  /* mixed-sparsity step */
	double ratio;	  /* > 0: choose s to reach this ratio */
	double max_error; /* adaptive: relative delta error of each tensor */
	unsigned codes;	  /* adaptive: UDFS_CODES_* families allowed */
	int mask;	  /* UDFS_MASK_EXPLICIT or UDFS_MASK_SEEDED */
	const char **exact; /* --exact globs, n_exact of them */
	size_t n_exact;
	uint64_t min_elems; /* smallest matrix made lossy */
	uint64_t seed;
	int jobs;	/* worker threads */
	int level;	/* zstd level of lossless planes */
	bool quiet;	/* no progress line */
	unsigned given; /* UDFS_ADD_GIVEN_* bits: what the caller set */
} udfs_add_opts;

/* The defaults of udfs-compress(1) (s 0.97, b 4, step 0.01, explicit
 * mask, max error 0.1, ...), method ultradelta until
 * udfs_add_opts_resolve() picks the command line's default. */
void udfs_add_opts_init(udfs_add_opts *o);

/*
 * The method the given options mean when none is given
 * (udfs-compress(1)): adaptive without a lossy option or with --max-error
 * alone; UltraDelta's options (and --ratio without --max-error) keep
 * their meaning, ultradelta. Call once the given bits are set.
 */
void udfs_add_opts_resolve(udfs_add_opts *o);

/*
 * Check o: every value in its range, and no two options that contradict
 * each other (--lossless with a lossy option, a mask for bitdelta, a
 * seeded mask for magnitude, UltraDelta's options or --ratio with the
 * adaptive method's --max-error). 0 or -EINVAL with one message.
 */
int udfs_add_opts_check(const udfs_add_opts *o);

struct json_t;

/* The options as the catalog records them (models.params: sorted JSON),
 * with sparsity the one really used (--ratio searches for it) and, for the
 * adaptive method, the code of each tensor (codes: NULL or the object
 * {tensor: {code, bytes, error}}, borrowed). Caller frees. */
char *udfs_add_params_json(const udfs_add_opts *o, double sparsity,
			   struct json_t *codes);

#endif

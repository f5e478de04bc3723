/* SPDX-License-Identifier: MIT */
/*
 * A tiny assertion header for the unit tests: each CHECK prints both values
 * and file:line on failure and counts it; main() ends with CHECK_DONE(),
 * which prints a summary and returns non-zero when anything failed.
 */
#ifndef UDFS_TEST_CHECK_H
#define UDFS_TEST_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                            \
	do {                                                                   \
		check_count++;                                                 \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, \
				__LINE__, #cond);                              \
			check_failures++;                                      \
		}                                                              \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                     \
	do {                                                                   \
		long long check_a_ = (long long)(a);                           \
		long long check_b_ = (long long)(b);                           \
		check_count++;                                                 \
		if (check_a_ != check_b_) {                                    \
			fprintf(stderr, "%s:%d: %s == %s: %lld != %lld\n",     \
				__FILE__, __LINE__, #a, #b, check_a_,          \
				check_b_);                                     \
			check_failures++;                                      \
		}                                                              \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                     \
	do {                                                                   \
		const char *check_a_ = (a);                                    \
		const char *check_b_ = (b);                                    \
		check_count++;                                                 \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_)) {    \
			fprintf(stderr, "%s:%d: %s == %s: \"%s\" != \"%s\"\n", \
				__FILE__, __LINE__, #a, #b,                    \
				check_a_ ? check_a_ : "(null)",                \
				check_b_ ? check_b_ : "(null)");               \
			check_failures++;                                      \
		}                                                              \
	} while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
	do {                                                                   \
		double check_a_ = (double)(a);                                 \
		double check_b_ = (double)(b);                                 \
		check_count++;                                                 \
		if (!(fabs(check_a_ - check_b_) <= (tol))) {                   \
			fprintf(stderr, "%s:%d: %s ~ %s: %.9g != %.9g\n",      \
				__FILE__, __LINE__, #a, #b, check_a_,          \
				check_b_);                                     \
			check_failures++;                                      \
		}                                                              \
	} while (0)

#define CHECK_DONE()                                                           \
	do {                                                                   \
		fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__,        \
			check_count, check_failures);                          \
		return check_failures ? 1 : 0;                                 \
	} while (0)

#endif

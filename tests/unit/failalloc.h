/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure on demand, for the tests of code that runs in the
 * mount daemon and must answer ENOMEM instead of aborting. A test that
 * includes this is linked with --wrap for malloc, calloc, realloc and
 * strdup (Makefile: FAILALLOC_LDFLAGS): the calls of the code under test
 * go through the wrappers below, and failalloc_arm(n) makes the n-th of
 * them (counted from 0) return NULL. Allocations inside shared libraries
 * (SQLite, libc's own) are not counted. Include once, after check.h.
 */
#ifndef UDFS_TEST_FAILALLOC_H
#define UDFS_TEST_FAILALLOC_H

#include <stdlib.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static long failalloc_at = -1; /* the allocation to fail, or -1: none */
static long failalloc_seen;    /* allocations since armed */

static int failalloc_now(void)
{
	return failalloc_at >= 0 && failalloc_seen++ == failalloc_at;
}

void *__wrap_malloc(size_t n)
{
	return failalloc_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return failalloc_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return failalloc_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return failalloc_now() ? NULL : __real_strdup(s);
}

/* Fail the n-th allocation from now on. */
static inline void failalloc_arm(long n)
{
	failalloc_seen = 0;
	failalloc_at = n;
}

static inline void failalloc_disarm(void) { failalloc_at = -1; }

#endif

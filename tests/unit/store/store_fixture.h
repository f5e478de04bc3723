/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the unit tests that build real stores (test_catalog.c,
 * test_store.c, ...): write a file, add one model against the base "base",
 * remove the scratch directory.
 * Include after check.h.
 */
#ifndef UDFS_TEST_STORE_FIXTURE_H
#define UDFS_TEST_STORE_FIXTURE_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"
#include "write/add.h"

static void write_bytes(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK_EQ_INT(udfs_write_full(fd, p, n), 0);
		close(fd);
	}
}

/* Remove the test's scratch directory top and all it holds. */
static inline void remove_tree(const char *top)
{
	char *cmd = udfs_xasprintf("rm -rf '%s'", top);

	CHECK_EQ_INT(system(cmd), 0);
	free(cmd);
}

/* Add model name from src against "base"; lossless or the lossy
 * defaults (seed 7). 0 or -errno; UDFS_TEST_VERBOSE shows the message. */
static int add_model(udfs_store *s, const char *name, const char *src,
		     bool lossless, int jobs)
{
	udfs_add_opts o;
	const char *names[] = {name}, *srcs[] = {src};
	int err;

	udfs_add_opts_init(&o);
	o.base = "base";
	o.lossless = lossless;
	o.quiet = true;
	o.jobs = jobs;
	o.seed = 7;
	udfs_error_clear();
	err = udfs_compress_add(s, &o, 1, names, srcs);
	if (err && getenv("UDFS_TEST_VERBOSE"))
		fprintf(stderr, "add %s: %s\n", name, udfs_error_msg(err));
	return err;
}

#endif

// SPDX-License-Identifier: MIT
/*
 * preadbench [-j THREADS] [-b BLOCK] [-m] FILE: time one whole read of
 * FILE, for bench/mount.sh.
 *
 *   default  THREADS threads (default 1), thread i preads the i-th of
 *            THREADS equal contiguous parts in BLOCK-byte reads (default
 *            1 MiB; a size as udfs options take it: 4096, 64K, 4M), in
 *            order
 *   -m       map FILE (MAP_SHARED, no advice, as safetensors does) and
 *            touch one byte of every page, in order, from THREADS threads
 *            splitting the file the same way
 *
 * Prints "BYTES SECONDS GB/s" (GB = 10^9 bytes) on one line, the time
 * counted from before open() to after close()/munmap(). Exits 1 with a
 * message on any error or short file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_THREADS 64

struct part {
	pthread_t th;
	int fd;
	const volatile unsigned char *map;
	uint64_t off, len;
	size_t block;
	uint64_t sum; /* of the bytes touched, so nothing is optimized out */
	int err;      /* errno, or -1 for a short read */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *read_part(void *arg)
{
	struct part *p = arg;
	unsigned char *buf = malloc(p->block);
	uint64_t pos = p->off, end = p->off + p->len;

	if (!buf) {
		p->err = ENOMEM;
		return NULL;
	}
	while (pos < end) {
		size_t want =
		    end - pos < p->block ? (size_t)(end - pos) : p->block;
		ssize_t n = pread(p->fd, buf, want, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			p->err = n < 0 ? errno : -1;
			break;
		}
		p->sum += buf[0];
		pos += (uint64_t)n;
	}
	free(buf);
	return NULL;
}

static void *scan_part(void *arg)
{
	struct part *p = arg;
	long page = sysconf(_SC_PAGESIZE);

	for (uint64_t pos = p->off; pos < p->off + p->len; pos += page)
		p->sum += p->map[pos];
	return NULL;
}

int main(int argc, char **argv)
{
	struct part parts[MAX_THREADS];
	unsigned threads = 1;
	uint64_t block = 1 << 20;
	int use_map = 0, c, fd;
	void *map = NULL;
	struct stat st;
	uint64_t size, sum = 0;
	double t0, t1;

	while ((c = getopt(argc, argv, "j:b:m")) != -1) {
		switch (c) {
		case 'j':
			threads = (unsigned)atoi(optarg);
			break;
		case 'b': /* "4M" is 4 MiB, not 4 bytes */
			if (udfs_parse_size(optarg, &block))
				goto usage;
			break;
		case 'm':
			use_map = 1;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1 || threads < 1 || threads > MAX_THREADS ||
	    block < 1 || block > SIZE_MAX / 2)
		goto usage;

	t0 = now();
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "preadbench: %s: %s\n", argv[optind],
			strerror(errno));
		return 1;
	}
	size = (uint64_t)st.st_size;
	if (use_map && size) {
		map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			fprintf(stderr, "preadbench: mmap %s: %s\n",
				argv[optind], strerror(errno));
			return 1;
		}
	}
	for (unsigned i = 0; i < threads; i++) {
		struct part *p = &parts[i];

		memset(p, 0, sizeof(*p));
		p->fd = fd;
		p->map = map;
		p->block = (size_t)block;
		p->off = size / threads * i;
		p->len = i + 1 == threads ? size - p->off : size / threads;
		if (pthread_create(&p->th, NULL,
				   use_map ? scan_part : read_part, p) != 0) {
			fprintf(stderr, "preadbench: cannot start a thread\n");
			return 1;
		}
	}
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(parts[i].th, NULL);
		sum += parts[i].sum;
		if (parts[i].err) {
			fprintf(stderr, "preadbench: %s at part %u: %s\n",
				argv[optind], i,
				parts[i].err < 0 ? "short read"
						 : strerror(parts[i].err));
			return 1;
		}
	}
	if (map)
		munmap(map, size);
	close(fd);
	t1 = now();
	printf("%llu %.4f %.3f\n", (unsigned long long)size, t1 - t0,
	       (double)size / 1e9 / (t1 - t0));
	/* The sum only keeps the reads alive; print it where nobody parses. */
	if (getenv("PREADBENCH_SUM"))
		fprintf(stderr, "sum %llu\n", (unsigned long long)sum);
	return 0;

usage:
	fprintf(
	    stderr,
	    "usage: preadbench [-j THREADS] [-b BLOCK (4096, 1M, ...)] [-m] FILE\n");
	return 2;
}

// SPDX-License-Identifier: MIT
/*
 * preader [-j N] [-t SECONDS] [-p] FILE REF [FILE REF ...]:
 * N workers (threads, or processes with -p) read ranges of the FILEs for
 * SECONDS (default 10), each read checked against the same range of REF.
 * Each worker mixes random pread ranges (1 byte .. 4 MiB), sequential
 * streams of 1 MiB preads and random ranges copied out of a shared mmap.
 * Prints "N bytes compared" and exits 0, or 1 on the first mismatch or
 * read error (naming file, offset and length).
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/prng.h"

#define MAX_FILES 64
#define MAX_READ (4u << 20)

struct target {
	const char *path;
	int fd;
	size_t size;
	const unsigned char *map; /* FILE, MAP_SHARED */
	const unsigned char *ref; /* REF, MAP_SHARED */
};

static struct target files[MAX_FILES];
static int nfiles;
static double seconds = 10;
static volatile uint64_t *counters; /* per worker: bytes, failures */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int check(const struct target *t, const unsigned char *got, size_t off,
		 size_t len, const char *how)
{
	if (memcmp(got, t->ref + off, len) == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (got[i] != t->ref[off + i]) {
			fprintf(stderr,
				"preader: %s: %s of %zu at %zu: byte "
				"%zu differs\n",
				t->path, how, len, off, off + i);
			break;
		}
	}
	return 1;
}

static int do_pread(const struct target *t, unsigned char *buf, size_t off,
		    size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
		    pread(t->fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr,
				"preader: %s: pread of %zu at %zu: %s\n",
				t->path, len, off, n ? strerror(errno) : "EOF");
			return 1;
		}
		done += (size_t)n;
	}
	return check(t, buf, off, len, "pread");
}

static void worker(int id)
{
	unsigned char *buf = malloc(MAX_READ);
	uint64_t seed = UDFS_GOLDEN64 * (uint64_t)(id + 1);
	double end = now() + seconds;
	uint64_t bytes = 0;
	int bad = 0;

	while (!bad && now() < end) {
		const struct target *t =
		    &files[udfs_splitmix64(&seed) % (uint64_t)nfiles];
		unsigned kind = (unsigned)(udfs_splitmix64(&seed) % 3);
		size_t off, len;

		if (!t->size)
			continue;
		off = (size_t)(udfs_splitmix64(&seed) % t->size);
		len = 1 + (size_t)(udfs_splitmix64(&seed) % MAX_READ);
		if (len > t->size - off)
			len = t->size - off;
		if (kind == 0) {
			bad = do_pread(t, buf, off, len);
			bytes += len;
		} else if (kind == 1) {
			/* A short sequential stream of 1 MiB reads. */
			for (int k = 0; k < 8 && !bad && off < t->size; k++) {
				len = t->size - off < (1u << 20) ? t->size - off
								 : (1u << 20);
				bad = do_pread(t, buf, off, len);
				bytes += len;
				off += len;
			}
		} else {
			memcpy(buf, t->map + off, len);
			bad = check(t, buf, off, len, "mmap read");
			bytes += len;
		}
	}
	counters[2 * id] = bytes;
	counters[2 * id + 1] = (uint64_t)bad;
	free(buf);
}

static void *thread_main(void *arg)
{
	worker((int)(intptr_t)arg);
	return NULL;
}

static const unsigned char *map_file(const char *path, int *fdp, size_t *size)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "preader: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	*size = (size_t)st.st_size;
	if (fdp)
		*fdp = fd;
	if (!st.st_size)
		return NULL;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "preader: %s: mmap: %s\n", path,
			strerror(errno));
		exit(2);
	}
	if (!fdp)
		close(fd);
	return p;
}

int main(int argc, char **argv)
{
	int jobs = 4, procs = 0, opt, bad = 0;
	uint64_t total = 0;
	pthread_t *th;

	while ((opt = getopt(argc, argv, "j:t:p")) != -1) {
		if (opt == 'j')
			jobs = atoi(optarg);
		else if (opt == 't')
			seconds = atof(optarg);
		else if (opt == 'p')
			procs = 1;
		else
			goto usage;
	}
	if (jobs < 1 || argc - optind < 2 || (argc - optind) % 2)
		goto usage;
	for (int i = optind; i < argc; i += 2) {
		struct target *t = &files[nfiles++];
		size_t rsize;

		if (nfiles > MAX_FILES)
			goto usage;
		t->path = argv[i];
		t->map = map_file(argv[i], &t->fd, &t->size);
		t->ref = map_file(argv[i + 1], NULL, &rsize);
		if (rsize != t->size) {
			fprintf(stderr,
				"preader: %s: size %zu, reference %zu\n",
				t->path, t->size, rsize);
			return 1;
		}
	}
	counters =
	    mmap(NULL, sizeof(uint64_t) * 2 * (size_t)jobs,
		 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counters == MAP_FAILED)
		return 2;
	if (procs) {
		for (int i = 0; i < jobs; i++) {
			pid_t pid = fork();

			if (pid == 0) {
				worker(i);
				_exit(0);
			}
			if (pid < 0)
				return 2;
		}
		for (int i = 0; i < jobs; i++) {
			int status;

			if (wait(&status) < 0 || !WIFEXITED(status) ||
			    WEXITSTATUS(status))
				bad = 1;
		}
	} else {
		th = calloc((size_t)jobs, sizeof(*th));
		for (int i = 0; i < jobs; i++)
			pthread_create(&th[i], NULL, thread_main,
				       (void *)(intptr_t)i);
		for (int i = 0; i < jobs; i++)
			pthread_join(th[i], NULL);
		free(th);
	}
	for (int i = 0; i < jobs; i++) {
		total += counters[2 * i];
		bad |= counters[2 * i + 1] != 0;
	}
	printf("%llu bytes compared\n", (unsigned long long)total);
	return bad ? 1 : 0;
usage:
	fprintf(stderr, "usage: preader [-j N] [-t SECONDS] [-p] FILE REF "
			"[FILE REF ...]\n");
	return 2;
}

// SPDX-License-Identifier: MIT
/*
 * mmapcmp FILE REF [RANGES [SEED]]: map FILE with MAP_SHARED and then with
 * MAP_PRIVATE and compare every byte with REF (read with pread), then
 * pread-compare RANGES (default 200) random ranges of FILE with REF. Used
 * by the mount tests: a FUSE file must map like any other file. Prints
 * the first differing offset and exits 1 on a mismatch, 2 on error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_all(int fd, unsigned char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int cmp_map(const char *file, int fd, const unsigned char *ref,
		   size_t size, int flags, const char *what)
{
	unsigned char *p;
	size_t i;

	if (size == 0)
		return 0;
	p = mmap(NULL, size,
		 PROT_READ | (flags == MAP_PRIVATE ? PROT_WRITE : 0), flags, fd,
		 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "mmapcmp: %s: mmap %s: %s\n", file, what,
			strerror(errno));
		return 2;
	}
	if (memcmp(p, ref, size) != 0) {
		for (i = 0; i < size && p[i] == ref[i]; i++)
			;
		fprintf(stderr, "mmapcmp: %s: %s mapping differs at byte %zu\n",
			file, what, i);
		munmap(p, size);
		return 1;
	}
	if (flags == MAP_PRIVATE) {
		/* Copy-on-write must stay private and not disturb later pages.
		 */
		p[0] ^= 0xff;
		if (size > 1 && memcmp(p + 1, ref + 1, size - 1) != 0) {
			fprintf(stderr, "mmapcmp: %s: private write leaked\n",
				file);
			munmap(p, size);
			return 1;
		}
	}
	munmap(p, size);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char *ref = NULL, *buf = NULL;
	long ranges = argc > 3 ? atol(argv[3]) : 200;
	unsigned seed = argc > 4 ? (unsigned)atol(argv[4]) : 1;
	struct stat st, rst;
	int fd, rfd, rc;

	if (argc < 3) {
		fprintf(stderr, "usage: mmapcmp FILE REF [RANGES [SEED]]\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	rfd = open(argv[2], O_RDONLY);
	if (fd < 0 || rfd < 0 || fstat(fd, &st) || fstat(rfd, &rst)) {
		fprintf(stderr, "mmapcmp: %s: %s\n", fd < 0 ? argv[1] : argv[2],
			strerror(errno));
		return 2;
	}
	if (st.st_size != rst.st_size) {
		fprintf(stderr, "mmapcmp: %s: size %lld, reference %lld\n",
			argv[1], (long long)st.st_size, (long long)rst.st_size);
		return 1;
	}
	ref = malloc((size_t)st.st_size + 1);
	buf = malloc((size_t)st.st_size + 1);
	if (!ref || !buf || read_all(rfd, ref, (size_t)st.st_size, 0)) {
		fprintf(stderr, "mmapcmp: %s: cannot read\n", argv[2]);
		return 2;
	}
	rc =
	    cmp_map(argv[1], fd, ref, (size_t)st.st_size, MAP_SHARED, "shared");
	if (!rc)
		rc = cmp_map(argv[1], fd, ref, (size_t)st.st_size, MAP_PRIVATE,
			     "private");
	for (long i = 0; !rc && i < ranges && st.st_size > 0; i++) {
		size_t off = (size_t)rand_r(&seed) * 7919u % (size_t)st.st_size;
		size_t len = 1 + (size_t)rand_r(&seed) % (3u << 20);

		if (len > (size_t)st.st_size - off)
			len = (size_t)st.st_size - off;
		if (read_all(fd, buf, len, (off_t)off)) {
			fprintf(stderr, "mmapcmp: %s: pread %zu at %zu: %s\n",
				argv[1], len, off, strerror(errno));
			rc = 2;
		} else if (memcmp(buf, ref + off, len) != 0) {
			fprintf(stderr,
				"mmapcmp: %s: pread %zu at %zu differs\n",
				argv[1], len, off);
			rc = 1;
		}
	}
	if (!rc)
		printf("%s: %lld bytes equal (shared, private, %ld ranges)\n",
		       argv[1], (long long)st.st_size, ranges);
	free(ref);
	free(buf);
	close(fd);
	close(rfd);
	return rc;
}

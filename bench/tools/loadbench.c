// SPDX-License-Identifier: MIT
/*
 * loadbench DIR: the CPU-only model loader of bench/speed.sh, timing what
 * `safetensors.safe_open` + `.to(device)` does to the page cache and the
 * filesystem. For every *.safetensors file at the top of DIR, in name
 * order: read the 8-byte little-endian header length and the JSON header,
 * find each tensor's data_offsets, map the file (MAP_SHARED, no advice,
 * as safetensors does) and copy every tensor, in header order, into an
 * anonymous buffer (the "device" memory, reused: one buffer of the
 * largest tensor so far).
 *
 * Prints "BYTES SECONDS GB/s TENSORS FILES" on one line (BYTES: tensor
 * bytes copied; GB = 10^9 bytes), the time counted from the first open()
 * to the last munmap(). Exits 1 with one message on any error: no
 * safetensors file, a malformed header, offsets past the end of a file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20) /* safetensors' own limit */

struct load {
	unsigned char *dev; /* the anonymous "device" buffer */
	size_t dev_size;
	uint64_t bytes, tensors, sum;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_safetensors(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 12 && !strcmp(d->d_name + n - 12, ".safetensors");
}

/* Grows the device buffer to at least N bytes; 0 or -ENOMEM. */
static int dev_reserve(struct load *l, size_t n)
{
	void *p;

	if (n <= l->dev_size)
		return 0;
	if (l->dev)
		munmap(l->dev, l->dev_size);
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	l->dev = p == MAP_FAILED ? NULL : p;
	l->dev_size = l->dev ? n : 0;
	return l->dev ? 0 : -ENOMEM;
}

/* Reads the JSON header of the open file FD; NULL with a message. */
static json_t *read_header(int fd, const char *path, uint64_t *hlen)
{
	unsigned char len8[8];
	json_error_t jerr;
	char *text;
	json_t *root = NULL;

	if (pread(fd, len8, 8, 0) != 8) {
		fprintf(stderr, "loadbench: %s: no header length\n", path);
		return NULL;
	}
	*hlen = 0;
	for (int i = 7; i >= 0; i--)
		*hlen = *hlen << 8 | len8[i];
	if (*hlen == 0 || *hlen > MAX_HEADER) {
		fprintf(stderr, "loadbench: %s: bad header length\n", path);
		return NULL;
	}
	text = malloc(*hlen);
	if (text && pread(fd, text, *hlen, 8) == (ssize_t)*hlen)
		root = json_loadb(text, *hlen, 0, &jerr);
	free(text);
	if (!json_is_object(root)) {
		fprintf(stderr, "loadbench: %s: bad JSON header\n", path);
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Copies every tensor of HEADER from the map DATA (SIZE bytes after the
 * header) into the device buffer; 0 or -1 with a message. */
static int copy_tensors(struct load *l, json_t *header,
			const unsigned char *data, uint64_t size,
			const char *path)
{
	const char *name;
	json_t *t;

	json_object_foreach(header, name, t)
	{
		json_t *off = json_object_get(t, "data_offsets");
		json_int_t b, e;

		if (!strcmp(name, "__metadata__"))
			continue;
		if (!json_is_array(off) || json_array_size(off) != 2)
			goto bad;
		b = json_integer_value(json_array_get(off, 0));
		e = json_integer_value(json_array_get(off, 1));
		if (b < 0 || e < b || (uint64_t)e > size)
			goto bad;
		if (dev_reserve(l, (size_t)(e - b)) != 0) {
			fprintf(stderr, "loadbench: out of memory\n");
			return -1;
		}
		memcpy(l->dev, data + b, (size_t)(e - b));
		if (e > b)
			l->sum += l->dev[e - b - 1];
		l->bytes += (uint64_t)(e - b);
		l->tensors++;
	}
	return 0;
bad:
	fprintf(stderr, "loadbench: %s: tensor %s: bad data_offsets\n", path,
		name);
	return -1;
}

/* Loads one safetensors file; 0 or -1 with a message. */
static int load_file(struct load *l, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
	json_t *header = NULL;
	void *map = MAP_FAILED;
	struct stat st;
	uint64_t hlen;

	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "loadbench: %s: %s\n", path, strerror(errno));
		goto out;
	}
	header = read_header(fd, path, &hlen);
	if (!header)
		goto out;
	if ((uint64_t)st.st_size < 8 + hlen) {
		fprintf(stderr, "loadbench: %s: short file\n", path);
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "loadbench: mmap %s: %s\n", path,
			strerror(errno));
		goto out;
	}
	rc = copy_tensors(l, header, (unsigned char *)map + 8 + hlen,
			  (uint64_t)st.st_size - 8 - hlen, path);
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	json_decref(header);
	if (fd >= 0)
		close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	struct dirent **names = NULL;
	struct load l = {0};
	char path[4096];
	int n, rc = 1;
	double t0, t1;

	if (argc != 2) {
		fprintf(stderr, "usage: loadbench DIR\n");
		return 2;
	}
	t0 = now();
	n = scandir(argv[1], &names, is_safetensors, alphasort);
	if (n <= 0) {
		fprintf(stderr, "loadbench: %s: %s\n", argv[1],
			n < 0 ? strerror(errno) : "no .safetensors file");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[1],
			 names[i]->d_name);
		if (load_file(&l, path) != 0)
			goto out;
	}
	t1 = now();
	printf("%llu %.4f %.3f %llu %d\n", (unsigned long long)l.bytes, t1 - t0,
	       (double)l.bytes / 1e9 / (t1 - t0), (unsigned long long)l.tensors,
	       n);
	/* The sum only keeps the copies alive; print it where nobody parses. */
	if (getenv("LOADBENCH_SUM"))
		fprintf(stderr, "sum %llu\n", (unsigned long long)l.sum);
	rc = 0;
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (l.dev)
		munmap(l.dev, l.dev_size);
	return rc;
}

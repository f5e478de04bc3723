// SPDX-License-Identifier: MIT
/*
 * Descriptor lifetime of a store opened with UDFS_STORE_LAZY_FDS (the
 * mount's): loading many models keeps at most a bounded number of idle
 * descriptors open; a pin opens them (the model's and its base's) and
 * keeps them until unpinned; a model pinned before `udfs rm` keeps
 * reading, one whose pack was closed and removed fails its pin with EIO.
 * A store opened without
 * the flag keeps every loaded model's descriptors open, as before.
 */
#include "check.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "read/recon.h"
#include "store/store.h"
#include "store_fixture.h"

#define N_MODELS 100

static char *top;

/* A one-tensor F32 safetensors file of 64 elements seeded by seed. */
static void write_model(const char *path, unsigned seed)
{
	const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[64],"
			   "\"data_offsets\":[0,256]}}";
	unsigned char buf[8 + 64 + 256];
	size_t hlen = 64;
	uint64_t h = hlen;
	float *w = (float *)(buf + 8 + hlen);

	memset(buf, ' ', sizeof(buf));
	memcpy(buf, &h, 8);
	memcpy(buf + 8, hdr, strlen(hdr));
	for (int i = 0; i < 64; i++)
		w[i] = (float)i * 0.25f + (float)(seed % 7) * 0.001f;
	write_bytes(path, buf, sizeof(buf));
}

static int read_all(const udfs_model *m, unsigned char *buf, size_t cap)
{
	const udfs_file *f = &m->files[0];

	if (f->size > cap)
		return -1;
	return (int)udfs_file_read(f, buf, f->size, 0, NULL);
}

static void test_pins(void)
{
	char *store = udfs_xasprintf("%s/S", top), *path;
	const char *names[N_MODELS], *srcs[N_MODELS];
	char *nbuf[N_MODELS];
	udfs_model *m[N_MODELS] = {0};
	udfs_store *s = NULL;
	uint64_t loaded, open_models, fds;
	unsigned char a[1024], b[1024];

	CHECK_EQ_INT(udfs_store_init(store), 0);
	CHECK_EQ_INT(udfs_store_open(store, 0, &s), 0);
	path = udfs_xasprintf("%s/base.safetensors", top);
	write_model(path, 0);
	CHECK_EQ_INT(udfs_compress_add_base(s, "base", path, false, true), 0);
	free(path);
	for (int i = 0; i < N_MODELS; i++) {
		nbuf[i] = udfs_xasprintf("m%03d", i);
		names[i] = nbuf[i];
		path = udfs_xasprintf("%s/%s.safetensors", top, nbuf[i]);
		write_model(path, (unsigned)i + 1);
		srcs[i] = path;
	}
	for (int i = 0; i < N_MODELS; i++)
		CHECK_EQ_INT(add_model(s, names[i], srcs[i], true, 1), 0);
	udfs_store_close(s);

	/* Lazy: every model loaded, few descriptors. */
	CHECK_EQ_INT(
	    udfs_store_open(store, UDFS_STORE_RDONLY | UDFS_STORE_LAZY_FDS, &s),
	    0);
	for (int i = 0; i < N_MODELS; i++)
		CHECK_EQ_INT(udfs_model_load(s, names[i], &m[i]), 0);
	udfs_store_fd_stats(s, &loaded, &open_models, &fds);
	CHECK_EQ_INT(loaded, N_MODELS + 1);
	CHECK(fds <= 64);
	/* Every model pinned at once: each pack and the base file. */
	for (int i = 0; i < N_MODELS; i++)
		CHECK_EQ_INT(udfs_model_pin(m[i]), 0);
	udfs_store_fd_stats(s, &loaded, &open_models, &fds);
	CHECK_EQ_INT(fds, N_MODELS + 1);
	CHECK_EQ_INT(read_all(m[0], a, sizeof(a)), 8 + 64 + 256);
	{
		size_t n = 0;
		unsigned char *src = NULL;
		FILE *f = fopen(srcs[0], "rb");

		if (f) {
			src = malloc(1024);
			n = fread(src, 1, 1024, f);
			fclose(f);
		}
		CHECK(n == 8 + 64 + 256 && src && !memcmp(a, src, n));
		free(src);
	}
	for (int i = 0; i < N_MODELS; i++)
		udfs_model_unpin(m[i]);
	udfs_store_fd_stats(s, &loaded, &open_models, &fds);
	CHECK(fds <= 64);
	CHECK(fds > 0); /* the most recent stay open for reuse */

	/* rm: a pinned model keeps reading; m[0], unpinned long ago and
	 * closed, cannot be pinned again once its pack is gone. */
	{
		udfs_store *w = NULL;

		CHECK_EQ_INT(udfs_model_pin(m[N_MODELS - 1]), 0);
		CHECK_EQ_INT(udfs_store_open(store, 0, &w), 0);
		CHECK_EQ_INT(udfs_store_rm(w, names[N_MODELS - 1]), 0);
		CHECK_EQ_INT(udfs_store_rm(w, names[0]), 0);
		udfs_store_close(w);
	}
	CHECK_EQ_INT(read_all(m[N_MODELS - 1], b, sizeof(b)), 8 + 64 + 256);
	udfs_model_unpin(m[N_MODELS - 1]);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_model_pin(m[0]), -EIO);
	CHECK(strstr(udfs_error_msg(-EIO), "pack") != NULL);
	for (int i = 0; i < N_MODELS; i++)
		udfs_model_put(m[i]);
	udfs_store_fd_stats(s, &loaded, &open_models, &fds);
	CHECK_EQ_INT(loaded, 0);
	CHECK_EQ_INT(fds, 0);
	udfs_store_close(s);

	/* Not lazy: a loaded model holds its descriptors. */
	CHECK_EQ_INT(udfs_store_open(store, UDFS_STORE_RDONLY, &s), 0);
	CHECK_EQ_INT(udfs_model_load(s, names[1], &m[1]), 0);
	udfs_store_fd_stats(s, &loaded, &open_models, &fds);
	CHECK_EQ_INT(fds, 2);
	udfs_model_put(m[1]);
	udfs_store_close(s);

	for (int i = 0; i < N_MODELS; i++) {
		free(nbuf[i]);
		free((char *)srcs[i]);
	}
	free(store);
}

int main(void)
{
	char tmpl[] = "/tmp/udfs-test-pins.XXXXXX";

	top = mkdtemp(tmpl);
	if (!top) {
		perror("mkdtemp");
		return 1;
	}
	test_pins();
	if (!getenv("UDFS_TEST_KEEP"))
		udfs_rm_tree(top);
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * Unit tests for stores end to end through the public API: a base and
 * lossless and lossy deltas added to a fresh store in a temporary
 * directory, written as small safetensors files by this test; then the
 * listing, the model registry (one object per live model), file and tensor
 * lookups, the encodings chosen per tensor, and udfs_file_read of every
 * interesting range (header/data boundary, tensor boundaries, the chunk
 * boundary of a tensor over 1 MiB, past the end) with and without a chunk
 * provider, compared with the source bytes; then rm (a base with deltas is
 * busy; a loaded model keeps reading after its pack is gone), gc of stray
 * files, and init of a non-empty directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"
#include "read/recon.h"
#include "store/cluster.h"
#include "store/store.h"
#include "store_fixture.h"
#include "write/add.h"

static char *top; /* the temporary directory of this run */

/* ---- writing sources -------------------------------------------------- */

struct tspec {
	const char *name;
	const char *dtype;
	int ndim;
	uint64_t shape[4];
	const unsigned char *data; /* elements x dtype size bytes */
};

static uint64_t spec_bytes(const struct tspec *t)
{
	uint64_t n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n * udfs_dtype_size(udfs_dtype_parse(t->dtype));
}

/* Write a valid safetensors file of the n tensors, in that order in the
 * data area; the header is padded with spaces to a multiple of 8. */
static void write_st(const char *path, const struct tspec *ts, size_t n)
{
	size_t cap = 4096 + 200 * n, len = 0, hl;
	char *json = udfs_xmalloc(cap);
	uint64_t off = 0, total;
	unsigned char *img;

	len += (size_t)snprintf(json + len, cap - len,
				"{\"__metadata__\":{\"format\":\"pt\"}");
	for (size_t i = 0; i < n; i++) {
		uint64_t b = spec_bytes(&ts[i]);

		len += (size_t)snprintf(json + len, cap - len,
					",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
					ts[i].name, ts[i].dtype);
		for (int d = 0; d < ts[i].ndim; d++)
			len += (size_t)snprintf(
			    json + len, cap - len, "%s%llu", d ? "," : "",
			    (unsigned long long)ts[i].shape[d]);
		len += (size_t)snprintf(
		    json + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
		    (unsigned long long)off, (unsigned long long)(off + b));
		off += b;
	}
	len += (size_t)snprintf(json + len, cap - len, "}");
	while (len % 8)
		json[len++] = ' ';
	hl = len;
	total = 8 + hl + off;
	img = udfs_xmalloc(total);
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(img + 8, json, hl);
	off = 8 + hl;
	for (size_t i = 0; i < n; i++) {
		uint64_t b = spec_bytes(&ts[i]);

		memcpy(img + off, ts[i].data, b);
		off += b;
	}
	write_bytes(path, img, total);
	free(img);
	free(json);
}

/* Whole contents of a file; *n gets its size. */
static unsigned char *slurp(const char *path, size_t *n)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	unsigned char *p;

	*n = 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		CHECK(0);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	p = udfs_xmalloc((size_t)st.st_size);
	CHECK_EQ_INT(udfs_pread_full(fd, p, (size_t)st.st_size, 0), 0);
	close(fd);
	*n = (size_t)st.st_size;
	return p;
}

static uint64_t rng = 1;

static uint32_t rnd(void) { return (uint32_t)(udfs_splitmix64(&rng) >> 16); }

static unsigned char *rand_bytes(size_t n)
{
	unsigned char *p = udfs_xmalloc(n ? n : 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)rnd();
	return p;
}

/* n BF16 weights of modest size. */
static unsigned char *rand_bf16(size_t n)
{
	unsigned char *p = udfs_xmalloc(2 * n);

	for (size_t i = 0; i < n; i++) {
		float f = ((float)(rnd() % 20001) - 10000.0f) * 1e-5f;

		udfs_dtype_store_f32(UDFS_DT_BF16, p, i, f);
	}
	return p;
}

static unsigned char *rand_f32(size_t n)
{
	unsigned char *p = udfs_xmalloc(4 * n);

	for (size_t i = 0; i < n; i++) {
		float f = ((float)(rnd() % 20001) - 10000.0f) * 1e-5f;

		memcpy(p + 4 * i, &f, 4);
	}
	return p;
}

/* A copy of p with every step-th BF16 element's low mantissa bit
 * flipped: a small fine-tune. */
static unsigned char *tweak(const unsigned char *p, size_t bytes, size_t step)
{
	unsigned char *q = udfs_xmalloc(bytes);

	memcpy(q, p, bytes);
	for (size_t i = 0; i < bytes; i += 2 * step)
		q[i] ^= 1;
	return q;
}

#define BIG_ELEMS 700000		   /* BF16: 1.4 MB, two chunks */
#define EXACT_ELEMS (UDFS_CHUNK_BYTES / 2) /* BF16: exactly one chunk */
#define TOK_BYTES (UDFS_CHUNK_BYTES + 4321)
#define W_ROWS 64 /* a lossy-eligible matrix */
#define W_COLS 64

struct fixture {
	char *store;
	char *base_dir, *ft_dir, *ft2_file, *lossy_dir;
	unsigned char *a, *b, *big, *c, *w, *ex;       /* base tensors */
	unsigned char *b2, *big2, *c2, *nw, *w2, *ex2; /* fine-tune tensors */
};

static const char config[] = "{\"model_type\":\"llama\",\"x\":1}\n";

static char *mkdir_in(const char *name)
{
	char *d = udfs_xasprintf("%s/%s", top, name);

	CHECK_EQ_INT(mkdir(d, 0755), 0);
	return d;
}

static void fixture_make(struct fixture *fx)
{
	char *p;

	fx->a = rand_f32(32);
	fx->b = rand_bf16(64);
	fx->big = rand_bf16(BIG_ELEMS);
	fx->c = rand_f32(16);
	fx->w = rand_bf16(W_ROWS * W_COLS);
	fx->b2 = tweak(fx->b, 128, 3);
	fx->big2 = tweak(fx->big, 2 * BIG_ELEMS, 5);
	fx->c2 = rand_f32(16);
	fx->nw = rand_bytes(33);
	fx->w2 = tweak(fx->w, 2 * W_ROWS * W_COLS, 1);
	fx->ex = rand_bf16(EXACT_ELEMS);
	fx->ex2 = tweak(fx->ex, 2 * EXACT_ELEMS, 7);

	const struct tspec base[] = {
	    {"a", "F32", 2, {4, 8}, fx->a},
	    {"b", "BF16", 1, {64}, fx->b},
	    {"big", "BF16", 1, {BIG_ELEMS}, fx->big},
	    {"c", "F32", 1, {16}, fx->c},
	    {"w", "BF16", 2, {W_ROWS, W_COLS}, fx->w},
	    {"e", "F32", 1, {0}, fx->a},
	    {"exact", "BF16", 1, {EXACT_ELEMS}, fx->ex},
	};
	/* Another order in the file than in the base, a new tensor, c
	 * reshaped. */
	const struct tspec ft[] = {
	    {"new", "U8", 1, {33}, fx->nw},
	    {"e", "F32", 1, {0}, fx->a},
	    {"exact", "BF16", 1, {EXACT_ELEMS}, fx->ex2},
	    {"big", "BF16", 1, {BIG_ELEMS}, fx->big2},
	    {"e2", "F32", 2, {0, 5}, fx->a},
	    {"a", "F32", 2, {4, 8}, fx->a},
	    {"c", "F32", 2, {4, 4}, fx->c2},
	    {"b", "BF16", 1, {64}, fx->b2},
	    {"w", "BF16", 2, {W_ROWS, W_COLS}, fx->w2},
	};

	fx->store = udfs_xasprintf("%s/store", top);
	fx->base_dir = mkdir_in("base");
	p = udfs_xasprintf("%s/model.safetensors", fx->base_dir);
	write_st(p, base, UDFS_ARRAY_SIZE(base));
	free(p);
	p = udfs_xasprintf("%s/config.json", fx->base_dir);
	write_bytes(p, config, strlen(config));
	free(p);

	fx->ft_dir = mkdir_in("ft");
	p = udfs_xasprintf("%s/model.safetensors", fx->ft_dir);
	write_st(p, ft, UDFS_ARRAY_SIZE(ft));
	free(p);
	p = udfs_xasprintf("%s/config.json", fx->ft_dir);
	write_bytes(p, "{\"model_type\":\"llama\",\"x\":2}\n", 29);
	free(p);
	p = udfs_xasprintf("%s/empty.txt", fx->ft_dir); /* verbatim, empty */
	write_bytes(p, "", 0);
	free(p);
	/* A verbatim file over one chunk. */
	p = udfs_xasprintf("%s/tokenizer.bin", fx->ft_dir);
	{
		unsigned char *tok = rand_bytes(TOK_BYTES);

		for (size_t i = 0; i < TOK_BYTES; i += 3)
			tok[i] = 'a'; /* partly compressible */
		write_bytes(p, tok, TOK_BYTES);
		free(tok);
	}
	free(p);

	/* A single file: only a and c changed in dtype. */
	fx->ft2_file = udfs_xasprintf("%s/ft2.safetensors", top);
	{
		const struct tspec ft2[] = {
		    {"a", "I32", 2, {4, 8}, fx->a},
		    {"b", "BF16", 1, {64}, fx->b},
		};

		write_st(fx->ft2_file, ft2, UDFS_ARRAY_SIZE(ft2));
	}
	fx->lossy_dir = mkdir_in("lossy");
	p = udfs_xasprintf("%s/model.safetensors", fx->lossy_dir);
	write_st(p, ft + 5, 4); /* a, c reshaped, b, w */
	free(p);
}

static void fixture_free(struct fixture *fx)
{
	free(fx->store);
	free(fx->base_dir);
	free(fx->ft_dir);
	free(fx->ft2_file);
	free(fx->lossy_dir);
	free(fx->a);
	free(fx->b);
	free(fx->big);
	free(fx->c);
	free(fx->w);
	free(fx->b2);
	free(fx->big2);
	free(fx->c2);
	free(fx->nw);
	free(fx->w2);
	free(fx->ex);
	free(fx->ex2);
}

/* ---- a fake chunk provider ------------------------------------------ */

struct counting {
	int gets, puts, live;
};

static int fake_get(void *ctx, const udfs_tensor *t, uint32_t ci,
		    const void **data, void **handle)
{
	struct counting *c = ctx;
	size_t len = udfs_chunk_out_len(t, ci);
	void *buf = udfs_xmalloc(len ? len : 1);
	int err = udfs_chunk_decode(t, ci, buf);

	if (err) {
		free(buf);
		return err;
	}
	c->gets++;
	c->live++;
	*data = buf;
	*handle = buf;
	return 0;
}

static void fake_put(void *ctx, void *handle)
{
	struct counting *c = ctx;

	c->puts++;
	c->live--;
	free(handle);
}

/* ---- checks --------------------------------------------------------- */

static int files_in(const char *store, const char *sub)
{
	char *path = udfs_xasprintf("%s/%s", store, sub);
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	free(path);
	return n;
}

/* Compare udfs_file_read of [off, off + len) with src (size n). */
static void check_range(const udfs_file *f, const unsigned char *src, size_t n,
			uint64_t off, size_t len, const udfs_chunk_provider *p)
{
	unsigned char *buf = udfs_xmalloc(len ? len : 1);
	size_t want = off >= n ? 0 : (size_t)UDFS_MIN((uint64_t)len, n - off);
	ssize_t got = udfs_file_read(f, buf, len, off, p);

	if (got != (ssize_t)want || (want && memcmp(buf, src + off, want))) {
		fprintf(stderr, "%s: read %zu at %llu: got %zd, want %zu%s\n",
			f->path, len, (unsigned long long)off, got, want,
			got == (ssize_t)want ? " (bytes differ)" : "");
		CHECK(0);
	} else {
		CHECK(1);
	}
	free(buf);
}

/* Every interesting range of a file, then random ones. */
static void check_file(const udfs_model *m, const char *path,
		       const char *src_path, const udfs_chunk_provider *p)
{
	const udfs_file *f = udfs_model_file(m, path);
	size_t n = 0;
	unsigned char *src = slurp(src_path, &n);

	CHECK(f != NULL);
	if (!f || !src) {
		free(src);
		return;
	}
	CHECK_EQ_INT(f->size, n);
	check_range(f, src, n, 0, n, p);       /* everything */
	check_range(f, src, n, 0, n + 100, p); /* short at the end */
	check_range(f, src, n, n - 5, 100, p);
	check_range(f, src, n, n, 10, p); /* at EOF: 0 */
	check_range(f, src, n, n + 100, 10, p);
	check_range(f, src, n, 1ull << 40, 10, p);
	check_range(f, src, n, 3, 0, p);
	if (f->data_offset) {
		/* Header/data boundary. */
		check_range(f, src, n, f->data_offset - 5, 10, p);
		check_range(f, src, n, f->data_offset - 1, 1, p);
		check_range(f, src, n, f->data_offset, 1, p);
		check_range(f, src, n, 0, f->data_offset + 1, p);
	}
	for (size_t i = 0; i < f->n_tensors; i++) {
		const udfs_tensor *t = &f->tensors[i];
		uint64_t b = f->data_offset + t->begin;

		/* Across each tensor boundary, and each tensor whole. */
		if (b >= 3)
			check_range(f, src, n, b - 3, 6, p);
		check_range(f, src, n, b, t->end - t->begin, p);
		check_range(f, src, n, b + 1, t->end - t->begin, p);
		/* Across each chunk boundary. */
		for (uint64_t c = UDFS_CHUNK_BYTES; c < t->end - t->begin;
		     c += UDFS_CHUNK_BYTES) {
			check_range(f, src, n, b + c - 7, 14, p);
			check_range(f, src, n, b + c - 1, 1, p);
			check_range(f, src, n, b + c, 1, p);
			check_range(f, src, n, b + c, UDFS_CHUNK_BYTES, p);
			check_range(f, src, n, b + c - UDFS_CHUNK_BYTES,
				    UDFS_CHUNK_BYTES, p);
		}
	}
	for (int r = 0; r < 100; r++) {
		uint64_t off = rnd() % (n + 10);
		size_t len = rnd() % (r % 4 ? 5000 : 1500000);

		check_range(f, src, n, off, len, p);
	}
	free(src);
}

/* Damage one stored byte of t's first chunk in its model's pack: reads
 * of t are -EIO with a message naming it, never wrong bytes; other
 * tensors still read; the byte restored, t reads again. */
static void check_damage(const udfs_model *m, const udfs_tensor *t)
{
	char *proc = udfs_xasprintf("/proc/self/fd/%d", m->pack_fd);
	int fd = open(proc, O_WRONLY);
	const udfs_file *f = t->file;
	unsigned char c = 0, buf[64];
	uint64_t at;

	free(proc);
	CHECK(fd >= 0 && t->n_chunks > 0);
	if (fd < 0 || !t->n_chunks) {
		if (fd >= 0)
			close(fd);
		return;
	}
	at = t->chunks[0].offset + t->chunks[0].length / 2;
	CHECK_EQ_INT(udfs_pread_full(m->pack_fd, &c, 1, at), 0);
	c ^= 0x40;
	CHECK_EQ_INT(pwrite(fd, &c, 1, (off_t)at), 1);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_file_read(f, buf, 8, f->data_offset + t->begin, NULL),
		     -EIO);
	CHECK(strstr(udfs_error_msg(-EIO), t->name) != NULL);
	CHECK(strstr(udfs_error_msg(-EIO), "checksum") != NULL);
	udfs_error_clear();
	/* The header still reads. */
	CHECK_EQ_INT(udfs_file_read(f, buf, 8, 0, NULL), 8);
	c ^= 0x40;
	CHECK_EQ_INT(pwrite(fd, &c, 1, (off_t)at), 1);
	CHECK_EQ_INT(udfs_file_read(f, buf, 8, f->data_offset + t->begin, NULL),
		     8);
	close(fd);
}

static void check_info(const udfs_model_info *i, const char *name,
		       const char *base, int kind, const char *method,
		       size_t n_files)
{
	CHECK_EQ_STR(i->name, name);
	CHECK_EQ_STR(i->base, base);
	CHECK_EQ_INT(i->kind, kind);
	CHECK_EQ_STR(i->method, method);
	CHECK_EQ_INT(i->n_files, n_files);
	CHECK(i->id > 0);
	CHECK(i->source_bytes > 0);
	CHECK(i->stored_bytes > 0);
	CHECK(i->created > time(NULL) - 3600 && i->created <= time(NULL));
}

static int add(udfs_store *s, const char *name, const char *src, bool lossless)
{
	return add_model(s, name, src, lossless, 2);
}

/* The state shared by the sections of test_store(). */
struct store_test {
	struct fixture *fx;
	udfs_store *s;
	udfs_model *base, *ft, *ft2, *lossy;
	struct counting cnt;
	udfs_chunk_provider prov;
};

/* init, open, add-base and add, and the listing. */
static bool test_open_add(struct store_test *c)
{
	struct fixture *fx = c->fx;
	udfs_store *s = NULL;
	udfs_model_info *list = NULL;
	size_t n = 0;
	char *p;
	int err;

	CHECK_EQ_INT(udfs_store_open(fx->store, 0, &s), -ENOENT);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_store_init(fx->store), 0);
	CHECK_EQ_INT(udfs_store_init(fx->store), -EEXIST); /* not empty */
	CHECK(strstr(udfs_error_msg(-EEXIST), "already a store") != NULL);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_store_init(fx->base_dir), -EEXIST);
	udfs_error_clear();
	{
		char *empty = mkdir_in("empty");

		CHECK_EQ_INT(udfs_store_init(empty), 0); /* empty: fine */
		free(empty);
	}
	CHECK_EQ_INT(udfs_store_open(fx->store, 0, &c->s), 0);
	s = c->s;
	if (!s)
		return false;
	CHECK_EQ_STR(udfs_store_dir(s), fx->store);

	/* An empty store lists nothing. */
	CHECK_EQ_INT(udfs_store_list(s, &list, &n), 0);
	CHECK_EQ_INT(n, 0);
	free(list);
	list = NULL;

	CHECK_EQ_INT(
	    udfs_compress_add_base(s, "base", fx->base_dir, false, true), 0);
	CHECK_EQ_INT(
	    udfs_compress_add_base(s, "base", fx->base_dir, false, true),
	    -EEXIST);
	udfs_error_clear();
	CHECK_EQ_INT(
	    udfs_compress_add_base(s, ".bad", fx->base_dir, false, true),
	    -EINVAL);
	udfs_error_clear();
	CHECK_EQ_INT(files_in(fx->store, "tmp"), 0);
	CHECK_EQ_INT(files_in(fx->store, "bases"), 1);
	CHECK_EQ_INT(add(s, "ft", fx->ft_dir, true), 0);
	CHECK_EQ_INT(add(s, "ft2", fx->ft2_file, true), 0);
	CHECK_EQ_INT(add(s, "ft", fx->ft_dir, true), -EEXIST);
	CHECK_EQ_INT(add(s, "a/b", fx->ft_dir, true), -EINVAL);
	CHECK_EQ_INT(files_in(fx->store, "packs"), 2);
	CHECK_EQ_INT(files_in(fx->store, "tmp"), 0);
	err = add(s, "lossy", fx->lossy_dir, false);
	CHECK_EQ_INT(err, 0);

	/* The listing: sorted by name, with every field. */
	CHECK_EQ_INT(udfs_store_list(s, &list, &n), 0);
	CHECK_EQ_INT(n, err ? 3 : 4);
	if (n >= 3) {
		check_info(&list[0], "base", "", UDFS_MODEL_BASE, "base", 2);
		check_info(&list[1], "ft", "base", UDFS_MODEL_DELTA, "lossless",
			   4);
		check_info(&list[2], "ft2", "base", UDFS_MODEL_DELTA,
			   "lossless", 1);
		CHECK(list[0].id != list[1].id && list[1].id != list[2].id);
		/* Source bytes are the files' sizes. */
		{
			size_t a = 0, b = 0;
			unsigned char *x;

			p = udfs_xasprintf("%s/model.safetensors",
					   fx->base_dir);
			x = slurp(p, &a);
			free(x);
			free(p);
			CHECK_EQ_INT(list[0].source_bytes, a + strlen(config));
			x = slurp(fx->ft2_file, &b);
			free(x);
			CHECK_EQ_INT(list[2].source_bytes, b);
			CHECK_EQ_INT(list[0].stored_bytes,
				     list[0].source_bytes);
		}
	}
	if (n == 4)
		check_info(&list[3], "lossy", "base", UDFS_MODEL_DELTA,
			   "ultradelta", 1);
	free(list);
	return true;
}

/* The registry of loaded models and the lookups of a model. */
static bool test_registry(struct store_test *c)
{
	udfs_store *s = c->s;
	udfs_model *base = NULL, *b2 = NULL, *ft = NULL;

	/* The registry: one object per live model. */
	CHECK_EQ_INT(udfs_model_load(s, "nope", &ft), -ENOENT);
	CHECK(strstr(udfs_error_msg(-ENOENT), "nope") != NULL);
	udfs_error_clear();
	CHECK_EQ_INT(udfs_model_load(s, "base", &c->base), 0);
	base = c->base;
	CHECK_EQ_INT(udfs_model_load(s, "base", &b2), 0);
	CHECK(base == b2);
	if (!base)
		return false;
	CHECK_EQ_INT(base->refs, 2);
	udfs_model_put(b2);
	CHECK_EQ_INT(base->refs, 1);
	CHECK_EQ_INT(udfs_model_load(s, "ft", &c->ft), 0);
	ft = c->ft;
	if (!ft)
		return false;
	CHECK(ft->base == base); /* the loaded base is shared */
	CHECK_EQ_INT(base->refs, 2);
	udfs_model_get(ft);
	CHECK_EQ_INT(ft->refs, 2);
	udfs_model_put(ft);
	CHECK_EQ_STR(ft->name, "ft");
	CHECK_EQ_STR(ft->method, "lossless");
	CHECK_EQ_INT(ft->kind, UDFS_MODEL_DELTA);
	CHECK_EQ_INT(base->kind, UDFS_MODEL_BASE);
	CHECK_EQ_INT(ft->n_files, 4);

	/* Lookups. */
	CHECK(udfs_model_file(ft, "model.safetensors") != NULL);
	CHECK(udfs_model_file(ft, "config.json") != NULL);
	CHECK(udfs_model_file(ft, "nope") == NULL);
	CHECK(udfs_model_file(ft, "") == NULL);
	CHECK(udfs_model_file(ft, "config.jso") == NULL);
	CHECK(udfs_model_tensor(ft, "zzz") == NULL);
	CHECK(udfs_model_tensor(ft, "") == NULL); /* verbatim: not indexed */
	CHECK(udfs_model_tensor(base, "new") == NULL);
	{
		static const struct {
			const char *name;
			int enc;
		} want[] = {
		    {"a", UDFS_ENC_SAME},    {"b", UDFS_ENC_XOR},
		    {"big", UDFS_ENC_XOR},   {"c", UDFS_ENC_RAW},
		    {"new", UDFS_ENC_RAW},   {"w", UDFS_ENC_XOR},
		    {"e", UDFS_ENC_SAME},    {"e2", UDFS_ENC_RAW},
		    {"exact", UDFS_ENC_XOR},
		};

		for (size_t i = 0; i < UDFS_ARRAY_SIZE(want); i++) {
			const udfs_tensor *t =
			    udfs_model_tensor(ft, want[i].name);
			const udfs_tensor *bt =
			    udfs_model_tensor(base, want[i].name);

			CHECK(t != NULL);
			if (!t)
				continue;
			CHECK_EQ_STR(t->name, want[i].name);
			if (t->enc != want[i].enc)
				fprintf(stderr, "tensor %s: encoding %s\n",
					t->name, udfs_encoding_name(t->enc));
			CHECK_EQ_INT(t->enc, want[i].enc);
			CHECK(t->file ==
			      udfs_model_file(ft, "model.safetensors"));
			if (bt)
				CHECK_EQ_INT(bt->enc, UDFS_ENC_BASE);
			if (t->enc == UDFS_ENC_SAME || t->enc == UDFS_ENC_XOR)
				CHECK(t->base_file == bt->file &&
				      t->base_begin == bt->begin);
		}
		{
			const udfs_tensor *big = udfs_model_tensor(ft, "big");

			if (big) {
				CHECK_EQ_INT(big->n_chunks, 2);
				CHECK_EQ_INT(udfs_chunk_out_len(big, 0),
					     UDFS_CHUNK_BYTES);
				CHECK_EQ_INT(udfs_chunk_out_len(big, 1),
					     2 * BIG_ELEMS - UDFS_CHUNK_BYTES);
				CHECK_EQ_INT(udfs_chunk_out_len(big, 2), 0);
			}
		}
		{
			const udfs_file *cf =
			    udfs_model_file(ft, "config.json");

			if (cf) {
				CHECK_EQ_INT(cf->kind, UDFS_FILE_VERBATIM);
				CHECK_EQ_INT(cf->n_tensors, 1);
				/* One byte from the base's config.json of the
				 * same size: a delta against it. */
				CHECK_EQ_INT(cf->tensors[0].enc, UDFS_ENC_XOR);
				CHECK(cf->tensors[0].base_file ==
				      udfs_model_file(base, "config.json"));
				CHECK_EQ_INT(cf->tensors[0].base_begin, 0);
				CHECK_EQ_INT(cf->data_offset, 0);
			}
		}
	}
	return true;
}

/* Reads of the base and of a lossless delta, with and without a
 * chunk provider. */
static void test_reads(struct store_test *c)
{
	struct fixture *fx = c->fx;
	udfs_model *base = c->base, *ft = c->ft;
	udfs_chunk_provider prov = c->prov;
	struct counting *cnt = &c->cnt;
	char *p;

	/* Reads: the base, then the delta without and with a provider;
	 * lossless reconstruction equals the source bytes. */
	p = udfs_xasprintf("%s/model.safetensors", fx->base_dir);
	check_file(base, "model.safetensors", p, NULL);
	free(p);
	p = udfs_xasprintf("%s/config.json", fx->base_dir);
	check_file(base, "config.json", p, NULL);
	free(p);
	p = udfs_xasprintf("%s/model.safetensors", fx->ft_dir);
	check_file(ft, "model.safetensors", p, NULL);
	check_file(ft, "model.safetensors", p, &prov);
	free(p);
	p = udfs_xasprintf("%s/config.json", fx->ft_dir);
	check_file(ft, "config.json", p, &prov);
	check_file(ft, "config.json", p, NULL);
	free(p);
	p = udfs_xasprintf("%s/tokenizer.bin", fx->ft_dir);
	check_file(ft, "tokenizer.bin", p, NULL);
	check_file(ft, "tokenizer.bin", p, &prov);
	free(p);
	{
		const udfs_file *tf = udfs_model_file(ft, "tokenizer.bin");

		CHECK(tf && tf->kind == UDFS_FILE_VERBATIM &&
		      tf->tensors[0].n_chunks == 2);
	}
	p = udfs_xasprintf("%s/empty.txt", fx->ft_dir);
	check_file(ft, "empty.txt", p, NULL);
	check_file(ft, "empty.txt", p, &prov);
	free(p);
	{
		const udfs_tensor *ex = udfs_model_tensor(ft, "exact");

		CHECK(ex && ex->n_chunks == 1);
	}
	CHECK(cnt->gets > 0);
	CHECK_EQ_INT(cnt->gets, cnt->puts);
	CHECK_EQ_INT(cnt->live, 0);
}

/* A dtype change, an identical tensor, and a lossy model. */
static void test_ft2_lossy(struct store_test *c)
{
	struct fixture *fx = c->fx;
	udfs_store *s = c->s;
	udfs_model *base = c->base, *b2 = NULL, *ft2 = NULL, *lossy = NULL;
	udfs_chunk_provider prov = c->prov;
	char *p;

	/* ft2: a dtype change is raw, an identical tensor same. */
	CHECK_EQ_INT(udfs_model_load(s, "ft2", &ft2), 0);
	if (ft2) {
		const udfs_tensor *t = udfs_model_tensor(ft2, "a");

		CHECK(t && t->enc == UDFS_ENC_RAW);
		t = udfs_model_tensor(ft2, "b");
		CHECK(t && t->enc == UDFS_ENC_SAME);
		CHECK(ft2->base == base);
		CHECK_EQ_INT(base->refs, 3);
		check_file(ft2, "ft2.safetensors", fx->ft2_file, NULL);
		if (t)
			check_damage(ft2, udfs_model_tensor(ft2, "a"));
		/* The last put frees it (ASan checks), and the next load
		 * builds a fresh object with one reference. */
		CHECK_EQ_INT(udfs_model_load(s, "ft2", &b2), 0);
		CHECK(b2 == ft2);
		CHECK_EQ_INT(ft2->refs, 2);
		udfs_model_put(b2);
		udfs_model_put(ft2);
		CHECK_EQ_INT(base->refs, 2);
		ft2 = NULL;
		CHECK_EQ_INT(udfs_model_load(s, "ft2", &ft2), 0);
		if (ft2) {
			CHECK_EQ_INT(ft2->refs, 1);
			CHECK(ft2->base == base);
			check_file(ft2, "ft2.safetensors", fx->ft2_file, &prov);
		}
	}

	/* The lossy model: same size and header; exact tensors exact. */
	if (udfs_model_load(s, "lossy", &lossy) == 0) {
		const udfs_file *f =
		    udfs_model_file(lossy, "model.safetensors");
		size_t sn = 0;
		unsigned char *src, *buf;

		p = udfs_xasprintf("%s/model.safetensors", fx->lossy_dir);
		src = slurp(p, &sn);
		free(p);
		CHECK(f != NULL);
		if (f && src) {
			const udfs_tensor *w = udfs_model_tensor(lossy, "w");
			const udfs_tensor *a = udfs_model_tensor(lossy, "a");

			CHECK_EQ_INT(f->size, sn);
			buf = udfs_xmalloc(sn);
			CHECK_EQ_INT(udfs_file_read(f, buf, sn, 0, NULL),
				     (ssize_t)sn);
			CHECK(memcmp(buf, src, f->data_offset) == 0);
			CHECK(w && udfs_encoding_is_lossy(w->enc));
			CHECK(a && a->enc == UDFS_ENC_SAME);
			if (a)
				CHECK(memcmp(buf + f->data_offset + a->begin,
					     src + f->data_offset + a->begin,
					     a->end - a->begin) == 0);
			free(buf);
		}
		free(src);
	}
	c->ft2 = ft2;
	c->lossy = lossy;
}

/* rm. */
static void test_rm(struct store_test *c)
{
	struct fixture *fx = c->fx;
	udfs_store *s = c->s;
	udfs_model *ft = c->ft, *lossy = c->lossy, *b2 = NULL;
	udfs_model_info *list = NULL;
	size_t n = 0;
	char *p;

	/* rm: a base with deltas is busy; a delta goes with its pack, and
	 * a loaded copy keeps reading. */
	{
		int64_t g0 = 0, g1 = 0;
		int packs = files_in(fx->store, "packs");

		CHECK_EQ_INT(udfs_store_generation(s, &g0), 0);
		CHECK_EQ_INT(udfs_store_rm(s, "base"), -EBUSY);
		CHECK(strstr(udfs_error_msg(-EBUSY), "base") != NULL);
		udfs_error_clear();
		CHECK_EQ_INT(udfs_store_rm(s, "nope"), -ENOENT);
		udfs_error_clear();
		CHECK_EQ_INT(udfs_store_generation(s, &g1), 0);
		CHECK(g1 == g0); /* failed rms change nothing */
		CHECK_EQ_INT(udfs_store_rm(s, "ft"), 0);
		CHECK_EQ_INT(files_in(fx->store, "packs"), packs - 1);
		CHECK_EQ_INT(udfs_store_generation(s, &g1), 0);
		CHECK(g1 > g0);
		p = udfs_xasprintf("%s/model.safetensors", fx->ft_dir);
		check_file(ft, "model.safetensors", p, NULL);
		free(p);
		CHECK_EQ_INT(udfs_model_load(s, "ft", &b2), -ENOENT);
		udfs_error_clear();
		CHECK_EQ_INT(udfs_store_rm(s, "ft2"), 0);
		if (lossy)
			CHECK_EQ_INT(udfs_store_rm(s, "lossy"), 0);
		CHECK_EQ_INT(files_in(fx->store, "packs"), 0);
		CHECK_EQ_INT(udfs_store_list(s, &list, &n), 0);
		CHECK_EQ_INT(n, 1);
		free(list);
	}
}

/* gc. */
static void test_gc(struct store_test *c)
{
	struct fixture *fx = c->fx;
	udfs_store *s = c->s;
	udfs_model *base = c->base;
	char *p;

	/* gc: stray files in tmp/ and packs/ and a stray base directory;
	 * the live base stays. */
	{
		uint64_t freed = 12345;
		size_t files = 99;
		unsigned char junk[10000] = {1};
		int lock_fd;

		p = udfs_xasprintf("%s/tmp/junk", fx->store);
		write_bytes(p, junk, 4096);
		free(p);
		p = udfs_xasprintf("%s/packs/00000000deadbeef.pack", fx->store);
		write_bytes(p, junk, 10000);
		free(p);
		p = udfs_xasprintf("%s/bases/stray", fx->store);
		CHECK_EQ_INT(mkdir(p, 0755), 0);
		free(p);
		p = udfs_xasprintf("%s/bases/stray/x.safetensors", fx->store);
		write_bytes(p, junk, 8192);
		free(p);
		/* A fifo (gc must not hang on it) and a tmp file a running
		 * writer holds locked (gc must leave it). */
		p = udfs_xasprintf("%s/tmp/fifo", fx->store);
		CHECK_EQ_INT(mkfifo(p, 0600), 0);
		free(p);
		p = udfs_xasprintf("%s/tmp/busy", fx->store);
		write_bytes(p, junk, 100);
		lock_fd = open(p, O_RDWR);
		CHECK(lock_fd >= 0 && udfs_cluster_tmp_lock(lock_fd) == 0);
		free(p);
		sync();
		CHECK_EQ_INT(
		    udfs_store_gc(s, false, NULL, NULL, &freed, &files), 0);
		CHECK_EQ_INT(files_in(fx->store, "tmp"), 1);
		close(lock_fd);
		CHECK_EQ_INT(files, 4);
		CHECK(freed >= 4096 + 10000 + 8192);
		CHECK(freed < 1 << 20);
		CHECK_EQ_INT(files_in(fx->store, "packs"), 0);
		CHECK_EQ_INT(files_in(fx->store, "bases"), 1);
		/* The lock is gone: the file goes now; then nothing is
		 * left to collect. */
		CHECK_EQ_INT(
		    udfs_store_gc(s, false, NULL, NULL, &freed, &files), 0);
		CHECK_EQ_INT(files, 1);
		CHECK_EQ_INT(files_in(fx->store, "tmp"), 0);
		CHECK_EQ_INT(
		    udfs_store_gc(s, false, NULL, NULL, &freed, &files), 0);
		CHECK_EQ_INT(files, 0);
		CHECK_EQ_INT(freed, 0);
		p = udfs_xasprintf("%s/model.safetensors", fx->base_dir);
		check_file(base, "model.safetensors", p, NULL);
		free(p);
	}
}

/* With no deltas left the base goes; a loaded copy still reads. */
static void test_rm_base(struct store_test *c)
{
	struct fixture *fx = c->fx;
	udfs_store *s = c->s;
	udfs_model *base = c->base;
	char *p;

	/* With no deltas left the base goes too. */
	CHECK_EQ_INT(udfs_store_rm(s, "base"), 0);
	CHECK_EQ_INT(files_in(fx->store, "bases"), 0);
	/* The loaded base still reads from its open descriptors. */
	p = udfs_xasprintf("%s/config.json", fx->base_dir);
	check_file(base, "config.json", p, NULL);
	free(p);
}

static void test_store(struct fixture *fx)
{
	struct store_test c = {.fx = fx};

	c.prov = (udfs_chunk_provider){fake_get, fake_put, &c.cnt};
	if (test_open_add(&c) && test_registry(&c)) {
		test_reads(&c);
		test_ft2_lossy(&c);
		test_rm(&c);
		test_gc(&c);
		udfs_model_put(c.ft2);
		c.ft2 = NULL;
		udfs_model_put(c.lossy);
		c.lossy = NULL;
		udfs_model_put(c.ft);
		c.ft = NULL;
		CHECK_EQ_INT(c.base->refs, 1);
		test_rm_base(&c);
	}
	udfs_model_put(c.ft2);
	udfs_model_put(c.lossy);
	udfs_model_put(c.ft);
	udfs_model_put(c.base);
	udfs_store_close(c.s);
}

int main(void)
{
	char tmpl[] = "/tmp/udfs-test-store.XXXXXX";
	struct fixture fx = {0};

	top = mkdtemp(tmpl);
	if (!top) {
		perror("mkdtemp");
		return 1;
	}
	fixture_make(&fx);
	test_store(&fx);
	fixture_free(&fx);
	if (!getenv("UDFS_TEST_KEEP"))
		udfs_rm_tree(top);
	CHECK_DONE();
}

// SPDX-License-Identifier: MIT
/*
 * gen_model: deterministic safetensors fixtures for the CLI tests, mount
 * tests and benchmarks, so that none of them needs a downloaded checkpoint.
 *
 *   model     a LLaMA-shaped model of about SIZE MiB, weights N(0, 0.02)
 *   finetune  base + a realistic delta (low-rank + heavy-tailed noise),
 *             same header bytes, streamed row by row
 *   shard     split a file into a Hugging Face directory with an index
 *   dtypes    one small tensor of every dtype, including sub-byte ones
 *
 * Everything derives from --seed and the tensor name (each tensor has its
 * own generator), so output bytes are the same on every machine. Generation
 * is built for gigabyte models: xoshiro256** and an Irwin-Hall normal
 * approximation, one buffered write stream, no whole-model buffers. Files
 * are written to NAME.tmp and renamed; they are not fsync-ed (fixtures).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"
#include "format/safetensors.h"

/* ---- random numbers ---------------------------------------------------- */

/* One generator per (seed, stream, tensor name). */
static void rng_init(udfs_rng *r, uint64_t seed, uint64_t stream,
		     const char *name)
{
	uint64_t x =
	    seed ^ (stream * 0xd1b54a32d192ed03ull) ^ udfs_hash_str(name);

	for (int i = 0; i < 4; i++)
		r->s[i] = udfs_splitmix64(&x);
}

/* Standard normal, approximately: Irwin-Hall sum of four 16-bit uniforms
 * from one 64-bit draw (variance 1, tails cut at 3.46). */
static inline float rng_normal(udfs_rng *r)
{
	uint64_t x = udfs_rng_next(r);
	uint32_t s = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) +
		     (uint32_t)((x >> 32) & 0xffff) + (uint32_t)(x >> 48);

	return ((float)s - 131070.0f) * (1.0f / 37837.23f);
}

/* Standard Laplace (scale 1) by table inversion: 16 bits of quantile plus
 * a sign bit. */
static float lap_tab[65536];

static void lap_init(void)
{
	for (int i = 0; i < 65536; i++)
		lap_tab[i] = -logf(((float)i + 0.5f) / 65536.0f);
}

static inline float lap_from(uint64_t bits)
{
	float v = lap_tab[bits & 0xffff];

	return bits & 0x10000 ? -v : v;
}

/* ---- output ------------------------------------------------------------ */

static char *tmp_path; /* removed at exit unless renamed */

static void cleanup_tmp(void)
{
	if (tmp_path)
		unlink(tmp_path);
}

static void on_signal(int sig)
{
	if (tmp_path)
		unlink(tmp_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

struct out {
	int fd;
	char *path;
	unsigned char *buf;
	size_t len, cap;
	uint64_t total;
};

static void out_open(struct out *o, const char *path)
{
	o->path = udfs_xstrdup(path);
	free(tmp_path);
	tmp_path = udfs_xasprintf("%s.tmp", path);
	o->fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o->fd < 0)
		udfs_die("%s: %s", tmp_path, strerror(errno));
	o->cap = 4 << 20;
	o->buf = udfs_xmalloc(o->cap);
	o->len = 0;
	o->total = 0;
}

static void out_flush(struct out *o)
{
	int err = udfs_write_full(o->fd, o->buf, o->len);

	if (err)
		udfs_die("%s: write: %s", tmp_path, strerror(-err));
	o->len = 0;
}

static void out_put(struct out *o, const void *p, size_t n)
{
	const unsigned char *c = p;

	o->total += n;
	while (n) {
		size_t k = UDFS_MIN(n, o->cap - o->len);

		memcpy(o->buf + o->len, c, k);
		o->len += k;
		c += k;
		n -= k;
		if (o->len == o->cap)
			out_flush(o);
	}
}

/* Room for n bytes at the end of the buffer (n <= cap). */
static unsigned char *out_reserve(struct out *o, size_t n)
{
	if (o->cap - o->len < n)
		out_flush(o);
	return o->buf + o->len;
}

static void out_commit(struct out *o, size_t n)
{
	o->len += n;
	o->total += n;
}

static void out_close(struct out *o)
{
	out_flush(o);
	if (close(o->fd) < 0)
		udfs_die("%s: close: %s", tmp_path, strerror(errno));
	if (rename(tmp_path, o->path) < 0)
		udfs_die("rename %s: %s", o->path, strerror(errno));
	free(tmp_path);
	tmp_path = NULL;
	free(o->buf);
	free(o->path);
}

static void write_text(const char *path, const char *text)
{
	struct out o;

	out_open(&o, path);
	out_put(&o, text, strlen(text));
	out_close(&o);
}

/* ---- safetensors headers ----------------------------------------------- */

struct spec {
	char *name;
	int dtype;
	int ndim;
	uint64_t shape[4];
	uint64_t nbytes;
	uint64_t begin;
	const void *src; /* shard: source bytes */
};

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len)
			break;
		b->cap = b->cap ? 2 * b->cap + (size_t)n : 4096;
		b->p = udfs_xrealloc(b->p, b->cap);
	}
	b->len += (size_t)n;
}

static uint64_t spec_bytes(const struct spec *s)
{
	uint64_t n = 1;

	for (int i = 0; i < s->ndim; i++)
		n *= s->shape[i];
	return n * udfs_dtype_bits(s->dtype) / 8;
}

/* Assign offsets in array order and return the 8-byte length plus the
 * compact JSON header, padded with spaces to a multiple of 8 like the
 * reference writer. Names are plain ASCII (no escaping needed). */
static unsigned char *make_header(struct spec *t, size_t n, size_t *len)
{
	struct sbuf b = {0};
	uint64_t off = 0, hl;

	sb_printf(&b, "%8s", "");
	sb_printf(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (size_t i = 0; i < n; i++) {
		t[i].nbytes = spec_bytes(&t[i]);
		t[i].begin = off;
		sb_printf(&b, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
			  t[i].name, udfs_dtype_name(t[i].dtype));
		for (int d = 0; d < t[i].ndim; d++)
			sb_printf(&b, "%s%" PRIu64, d ? "," : "",
				  t[i].shape[d]);
		sb_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
			  off, off + t[i].nbytes);
		off += t[i].nbytes;
	}
	sb_printf(&b, "}");
	while ((b.len - 8) % 8)
		sb_printf(&b, " ");
	hl = b.len - 8;
	for (int i = 0; i < 8; i++)
		b.p[i] = (char)(hl >> (8 * i));
	*len = b.len;
	return (unsigned char *)b.p;
}

static int cmp_spec(const void *a, const void *b)
{
	return strcmp(((const struct spec *)a)->name,
		      ((const struct spec *)b)->name);
}

static void free_specs(struct spec *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

/* An input safetensors file, mapped. */
struct input {
	udfs_st_header *h;
	const unsigned char *map;
	uint64_t size;
	int fd;
};

static void input_open(const char *path, struct input *in)
{
	struct stat st;
	int err;

	in->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0)
		udfs_die("%s: %s", path, strerror(errno));
	err = udfs_st_read_fd(path, in->fd, &in->h);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (fstat(in->fd, &st) < 0)
		udfs_die("%s: %s", path, strerror(errno));
	in->size = (uint64_t)st.st_size;
	in->map = mmap(NULL, in->size, PROT_READ, MAP_SHARED, in->fd, 0);
	if (in->map == MAP_FAILED)
		udfs_die("%s: mmap: %s", path, strerror(errno));
	madvise((void *)in->map, in->size, MADV_SEQUENTIAL);
}

/* Unmap the pages of a range already consumed, so that streaming a large
 * model keeps a small resident set (the page cache keeps the data). */
static void drop_pages(const struct input *in, const unsigned char *p,
		       uint64_t n)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)p & ~(pg - 1);

	if (n)
		madvise((void *)a, (uintptr_t)p + n - a, MADV_DONTNEED);
	(void)in;
}

static void input_close(struct input *in)
{
	munmap((void *)in->map, in->size);
	close(in->fd);
	udfs_st_free(in->h);
}

/* ---- model ------------------------------------------------------------- */

static uint64_t ffn_dim(uint64_t h) { return (h * 11 / 4 + 15) / 16 * 16; }

static uint64_t layer_params(uint64_t h)
{
	return 4 * h * h + 3 * ffn_dim(h) * h + 2 * h;
}

static void add_spec(struct spec *t, size_t *n, int dt, uint64_t rows,
		     uint64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void add_spec(struct spec *t, size_t *n, int dt, uint64_t rows,
		     uint64_t cols, const char *fmt, ...)
{
	struct spec *s = &t[(*n)++];
	va_list ap;
	char name[256];

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	memset(s, 0, sizeof(*s));
	s->name = udfs_xstrdup(name);
	s->dtype = dt;
	s->ndim = cols ? 2 : 1;
	s->shape[0] = rows;
	s->shape[1] = cols;
}

/* Fill one tensor: weights N(0, 0.02), norms (1-D) 1.0. */
static void gen_tensor(struct out *o, const struct spec *s, uint64_t seed)
{
	unsigned esize = udfs_dtype_size(s->dtype);
	uint64_t n = s->nbytes / esize, done = 0;
	size_t blk = (size_t)(o->cap / esize);
	udfs_rng r;

	rng_init(&r, seed, 1, s->name);
	while (done < n) {
		size_t k = (size_t)UDFS_MIN(n - done, (uint64_t)blk);
		unsigned char *p = out_reserve(o, k * esize);

		for (size_t i = 0; i < k; i++)
			udfs_dtype_store_f32(
			    s->dtype, p, i,
			    s->ndim == 1 ? 1.0f : 0.02f * rng_normal(&r));
		out_commit(o, k * esize);
		done += k;
	}
}

static int parse_dtype_opt(const char *s)
{
	if (!strcasecmp(s, "bf16"))
		return UDFS_DT_BF16;
	if (!strcasecmp(s, "f16"))
		return UDFS_DT_F16;
	if (!strcasecmp(s, "f32"))
		return UDFS_DT_F32;
	udfs_die("--dtype must be bf16, f16 or f32, not \"%s\"", s);
}

static void cmd_model(const char *path, int dt, double mb, uint64_t seed)
{
	unsigned esize = udfs_dtype_size(dt);
	uint64_t p = (uint64_t)(mb * 1048576.0) / esize;
	uint64_t h = 64, v, l, rest, used;
	size_t n = 0;
	struct spec *t;
	unsigned char *hdr;
	size_t hlen;
	struct out o;
	double t0 = udfs_now();

	if (!(mb > 0) || mb > 1 << 20)
		udfs_die("--mb must be a size in MiB, > 0");
	/* The largest power-of-two width that leaves room for 8 layers. */
	while (8 * layer_params(2 * h) + 8 * (2 * h) * (2 * h) <= p && h < 8192)
		h *= 2;
	if (mb >= 64 && h < 1024)
		h = 1024;
	/* Embeddings of at least ~1.06 MiB so that small models still have
	 * tensors larger than a chunk. */
	v = UDFS_MAX(8 * h, ((uint64_t)17 << 16) / (h * esize) + 1);
	used = 2 * v * h + h;
	l = used < p ? (p - used) / layer_params(h) : 0;
	l = UDFS_MAX(l, 1);
	rest = p > l * layer_params(h) + h ? p - l * layer_params(h) - h : 0;
	v = UDFS_MAX(rest / (2 * h), 256);

	t = udfs_xcalloc(12 * l + 3, sizeof(*t));
	add_spec(t, &n, dt, v, h, "model.embed_tokens.weight");
	add_spec(t, &n, dt, v, h, "lm_head.weight");
	add_spec(t, &n, dt, h, 0, "model.norm.weight");
	for (uint64_t i = 0; i < l; i++) {
		const char *pfx = "model.layers";
		uint64_t f = ffn_dim(h);

		add_spec(t, &n, dt, h, 0,
			 "%s.%" PRIu64 ".input_layernorm.weight", pfx, i);
		add_spec(t, &n, dt, h, 0,
			 "%s.%" PRIu64 ".post_attention_layernorm.weight", pfx,
			 i);
		add_spec(t, &n, dt, h, h,
			 "%s.%" PRIu64 ".self_attn.q_proj.weight", pfx, i);
		add_spec(t, &n, dt, h, h,
			 "%s.%" PRIu64 ".self_attn.k_proj.weight", pfx, i);
		add_spec(t, &n, dt, h, h,
			 "%s.%" PRIu64 ".self_attn.v_proj.weight", pfx, i);
		add_spec(t, &n, dt, h, h,
			 "%s.%" PRIu64 ".self_attn.o_proj.weight", pfx, i);
		add_spec(t, &n, dt, f, h, "%s.%" PRIu64 ".mlp.gate_proj.weight",
			 pfx, i);
		add_spec(t, &n, dt, f, h, "%s.%" PRIu64 ".mlp.up_proj.weight",
			 pfx, i);
		add_spec(t, &n, dt, h, f, "%s.%" PRIu64 ".mlp.down_proj.weight",
			 pfx, i);
	}
	qsort(t, n, sizeof(*t), cmp_spec);
	hdr = make_header(t, n, &hlen);

	out_open(&o, path);
	out_put(&o, hdr, hlen);
	for (size_t i = 0; i < n; i++)
		gen_tensor(&o, &t[i], seed);
	out_close(&o);
	fprintf(stderr,
		"gen_model: %s: %zu tensors, H=%" PRIu64 " F=%" PRIu64
		" V=%" PRIu64 " layers=%" PRIu64 ", %.1f MiB in %.2f s\n",
		path, n, h, ffn_dim(h), v, l, (double)o.total / 1048576.0,
		udfs_now() - t0);
	free(hdr);
	free_specs(t, n);
}

/* ---- finetune ---------------------------------------------------------- */

#define FT_RANK 8

/* --lora: the delta of every matrix is the rank-8 product alone, as a
 * merged LoRA's is. */
static int ft_lora;

typedef float v4f __attribute__((vector_size(16)));

/* row += sum_k u[k] * vt[k][.]: the rank-8 product, four lanes at a time
 * (GCC/clang vector extension; -O2 does not vectorize the plain loop). */
static void add_lowrank(float *row, const float *vt, const float *u, uint64_t n)
{
	uint64_t j = 0;

	for (; j + 4 <= n; j += 4) {
		v4f acc, x;

		memcpy(&acc, row + j, sizeof(acc));
		for (int k = 0; k < FT_RANK; k++) {
			memcpy(&x, vt + (uint64_t)k * n + j, sizeof(x));
			acc += u[k] * x;
		}
		memcpy(row + j, &acc, sizeof(acc));
	}
	for (; j < n; j++)
		for (int k = 0; k < FT_RANK; k++)
			row[j] += u[k] * vt[(uint64_t)k * n + j];
}

/* base + (rank-8 product + Laplace noise), each half of the delta energy,
 * row by row. */
static void ft_matrix(struct out *o, const udfs_st_tensor *t,
		      const unsigned char *src, double rel, udfs_rng *r)
{
	int dt = t->dtype;
	unsigned esize = udfs_dtype_size(dt);
	uint64_t m = t->shape[0], n = t->shape[1];
	double norm2 = 0, target, lr, lb;
	float *vt, *row;
	float u[FT_RANK];

	for (uint64_t i = 0; i < t->nelems; i++) {
		double x = udfs_dtype_load_f32(dt, src, i);

		norm2 += x * x;
	}
	if (!(norm2 > 0))
		norm2 = 4e-4 * (double)t->nelems;
	target = rel * sqrt(norm2) / sqrt(2.0);
	lr = target / sqrt((double)FT_RANK * (double)m * (double)n);
	lb = target / sqrt(2.0 * (double)m * (double)n);
	if (ft_lora) {
		lr *= sqrt(2.0);
		lb = 0;
	}

	vt = udfs_xmalloc(FT_RANK * n * sizeof(float));
	row = udfs_xmalloc(n * sizeof(float));
	for (uint64_t j = 0; j < FT_RANK * n; j++)
		vt[j] = rng_normal(r);
	for (uint64_t i = 0; i < m; i++) {
		const unsigned char *in = src + i * n * esize;
		unsigned char *p;
		uint64_t j = 0;

		for (int k = 0; k < FT_RANK; k++)
			u[k] = (float)lr * rng_normal(r);
		/* Three Laplace draws per 64-bit number. */
		for (; j + 3 <= n; j += 3) {
			uint64_t x = udfs_rng_next(r);

			row[j] = (float)lb * lap_from(x);
			row[j + 1] = (float)lb * lap_from(x >> 17);
			row[j + 2] = (float)lb * lap_from(x >> 34);
		}
		for (; j < n; j++)
			row[j] = (float)lb * lap_from(udfs_rng_next(r));
		add_lowrank(row, vt, u, n);
		/* Rows are written in pieces no larger than the buffer. */
		for (j = 0; j < n;) {
			size_t k = (size_t)UDFS_MIN(n - j, o->cap / esize);

			p = out_reserve(o, k * esize);
			for (size_t c = 0; c < k; c++)
				udfs_dtype_store_f32(
				    dt, p, c,
				    udfs_dtype_load_f32(dt, in, j + c) +
					row[j + c]);
			out_commit(o, k * esize);
			j += k;
		}
	}
	free(row);
	free(vt);
}

/* base + N(0, 0.01) element by element. */
static void ft_vector(struct out *o, const udfs_st_tensor *t,
		      const unsigned char *src, udfs_rng *r)
{
	int dt = t->dtype;
	unsigned esize = udfs_dtype_size(dt);
	uint64_t done = 0;

	while (done < t->nelems) {
		size_t k = (size_t)UDFS_MIN(t->nelems - done, o->cap / esize);
		unsigned char *p = out_reserve(o, k * esize);

		for (size_t c = 0; c < k; c++)
			udfs_dtype_store_f32(
			    dt, p, c,
			    udfs_dtype_load_f32(dt, src, done + c) +
				0.01f * rng_normal(r));
		out_commit(o, k * esize);
		done += k;
	}
}

static void cmd_finetune(const char *base, const char *path, double rel,
			 uint64_t seed)
{
	struct input in;
	struct out o;
	double t0 = udfs_now();

	if (!(rel >= 0))
		udfs_die("--rel must be >= 0");
	lap_init();
	input_open(base, &in);
	out_open(&o, path);
	out_put(&o, in.h->raw, in.h->data_offset);
	for (size_t i = 0; i < in.h->n_tensors; i++) {
		const udfs_st_tensor *t = &in.h->tensors[i];
		const unsigned char *src =
		    in.map + in.h->data_offset + t->begin;
		udfs_rng r;

		rng_init(&r, seed, 2, t->name);
		if (!udfs_dtype_is_lossy_float(t->dtype) || !t->nelems ||
		    strcmp(t->name, "model.norm.weight") == 0)
			out_put(&o, src, t->end - t->begin);
		else if (t->ndim == 2)
			ft_matrix(&o, t, src, rel, &r);
		else
			ft_vector(&o, t, src, &r);
		drop_pages(&in, src, t->end - t->begin);
	}
	out_close(&o);
	fprintf(stderr, "gen_model: %s: %.1f MiB in %.2f s\n", path,
		(double)o.total / 1048576.0, udfs_now() - t0);
	input_close(&in);
}

/* ---- shard ------------------------------------------------------------- */

static int cmp_tensor_ptr(const void *a, const void *b)
{
	return strcmp((*(const udfs_st_tensor *const *)a)->name,
		      (*(const udfs_st_tensor *const *)b)->name);
}

static void write_shard(const char *path, struct spec *t, size_t n)
{
	unsigned char *hdr;
	size_t hlen;
	struct out o;

	hdr = make_header(t, n, &hlen);
	out_open(&o, path);
	out_put(&o, hdr, hlen);
	for (size_t i = 0; i < n; i++)
		out_put(&o, t[i].src, t[i].nbytes);
	out_close(&o);
	free(hdr);
}

static void write_config(const char *dir, const struct input *in)
{
	uint64_t hsz = 64, f = 172, v = 512, layers = 0;
	const char *dtype = "bfloat16";
	char *path, *text;

	for (size_t i = 0; i < in->h->n_tensors; i++) {
		const udfs_st_tensor *t = &in->h->tensors[i];

		if (strcmp(t->name, "model.embed_tokens.weight") == 0 &&
		    t->ndim == 2) {
			v = t->shape[0];
			hsz = t->shape[1];
			dtype = t->dtype == UDFS_DT_F32	  ? "float32"
				: t->dtype == UDFS_DT_F16 ? "float16"
							  : "bfloat16";
		}
		if (strstr(t->name, ".mlp.gate_proj.weight") && t->ndim == 2)
			f = t->shape[0];
		if (strstr(t->name, ".input_layernorm.weight"))
			layers++;
	}
	text =
	    udfs_xasprintf("{\n  \"architectures\": [\"LlamaForCausalLM\"],\n"
			   "  \"model_type\": \"llama\",\n"
			   "  \"hidden_size\": %" PRIu64 ",\n"
			   "  \"intermediate_size\": %" PRIu64 ",\n"
			   "  \"num_hidden_layers\": %" PRIu64 ",\n"
			   "  \"num_attention_heads\": %" PRIu64 ",\n"
			   "  \"num_key_value_heads\": %" PRIu64 ",\n"
			   "  \"vocab_size\": %" PRIu64 ",\n"
			   "  \"max_position_embeddings\": 2048,\n"
			   "  \"rms_norm_eps\": 1e-05,\n"
			   "  \"tie_word_embeddings\": false,\n"
			   "  \"torch_dtype\": \"%s\"\n}\n",
			   hsz, f, layers, UDFS_MAX(hsz / 64, 1),
			   UDFS_MAX(hsz / 64, 1), v, dtype);
	path = udfs_xasprintf("%s/config.json", dir);
	write_text(path, text);
	free(path);
	free(text);
	path = udfs_xasprintf("%s/tokenizer.json", dir);
	write_text(path,
		   "{\n  \"version\": \"1.0\",\n  \"added_tokens\": [],\n"
		   "  \"model\": {\n    \"type\": \"BPE\",\n"
		   "    \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, "
		   "\"a\": 3, \"b\": 4, \"ab\": 5},\n"
		   "    \"merges\": [\"a b\"]\n  }\n}\n");
	free(path);
}

static void cmd_shard(const char *inpath, const char *dir, long k)
{
	struct input in;
	const udfs_st_tensor **by_name;
	struct spec *t;
	json_t *root, *wm;
	uint64_t total, cum = 0;
	size_t n, first = 0;
	long shard = 0;
	char *path, *text;

	input_open(inpath, &in);
	n = in.h->n_tensors;
	total = in.h->data_len;
	if (k < 1 || (size_t)k > UDFS_MAX(n, 1))
		udfs_die("--shards must be between 1 and the number of "
			 "tensors (%zu)",
			 n);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		udfs_die("%s: %s", dir, strerror(errno));

	by_name = udfs_xcalloc(n + 1, sizeof(*by_name));
	for (size_t i = 0; i < n; i++)
		by_name[i] = &in.h->tensors[i];
	qsort(by_name, n, sizeof(*by_name), cmp_tensor_ptr);
	t = udfs_xcalloc(n + 1, sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		const udfs_st_tensor *x = by_name[i];

		t[i].name = udfs_xstrdup(x->name);
		t[i].dtype = x->dtype;
		t[i].ndim = x->ndim;
		if (x->ndim > 4)
			udfs_die("%s: tensor %s has more than 4 dimensions",
				 inpath, x->name);
		memcpy(t[i].shape, x->shape, (size_t)x->ndim * 8);
		t[i].src = in.map + in.h->data_offset + x->begin;
	}

	root = json_object();
	wm = json_object();
	json_object_set_new(root, "metadata",
			    json_pack("{sI}", "total_size", (json_int_t)total));
	json_object_set_new(root, "weight_map", wm);
	for (size_t i = 0; i <= n; i++) {
		/* Tensor i goes to the shard its middle byte falls in (of K
		 * equal parts of the data), but never skips a shard and leaves
		 * one tensor for each shard still to come. */
		long s = shard;

		if (i < n) {
			uint64_t sz = by_name[i]->end - by_name[i]->begin;

			if (total)
				s = (long)(((double)cum + (double)sz / 2) *
					   (double)k / (double)total);
			s = UDFS_MAX(UDFS_MIN(s, shard + 1), shard);
			if (i == first)
				s = shard;
			if ((long)(n - i) <= k - 1 - shard)
				s = shard + 1;
			cum += sz;
		}
		if (i == n || s != shard) {
			path = k == 1
				   ? udfs_xasprintf("%s/model.safetensors", dir)
				   : udfs_xasprintf("%s/model-%05ld-of-%05ld"
						    ".safetensors",
						    dir, shard + 1, k);
			for (size_t j = first; j < i; j++)
				json_object_set_new(
				    wm, t[j].name,
				    json_string(strrchr(path, '/') + 1));
			write_shard(path, t + first, i - first);
			free(path);
			first = i;
			shard = s;
		}
	}
	if (k > 1) {
		text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
		path = udfs_xasprintf("%s/model.safetensors.index.json", dir);
		write_text(path, text);
		free(path);
		free(text);
	}
	write_config(dir, &in);
	json_decref(root);
	free_specs(t, n);
	free(by_name);
	input_close(&in);
}

/* ---- dtypes ------------------------------------------------------------ */

static void cmd_dtypes(const char *path, uint64_t seed)
{
	struct spec *t = udfs_xcalloc(UDFS_DT_COUNT + 1, sizeof(*t));
	unsigned char *hdr;
	size_t n = 0, hlen;
	struct out o;

	for (int dt = 0; dt < UDFS_DT_COUNT; dt++) {
		char name[64];
		const char *dn = udfs_dtype_name(dt);
		size_t i;

		for (i = 0; dn[i] && i < sizeof(name) - 1; i++)
			name[i] = (char)(dn[i] >= 'A' && dn[i] <= 'Z'
					     ? dn[i] - 'A' + 'a'
					     : dn[i]);
		name[i] = '\0';
		/* F4: 6 elements (even); F6: 8 (a multiple of 4). */
		add_spec(t, &n, dt, 2, udfs_dtype_bits(dt) == 6 ? 4 : 3, "t.%s",
			 name);
	}
	add_spec(t, &n, UDFS_DT_F32, 0, 4, "t.empty");
	qsort(t, n, sizeof(*t), cmp_spec);
	hdr = make_header(t, n, &hlen);
	out_open(&o, path);
	out_put(&o, hdr, hlen);
	for (size_t i = 0; i < n; i++) {
		udfs_rng r;

		rng_init(&r, seed, 3, t[i].name);
		for (uint64_t b = 0; b < t[i].nbytes; b++) {
			unsigned char c = (unsigned char)udfs_rng_next(&r);

			if (t[i].dtype == UDFS_DT_BOOL)
				c &= 1;
			out_put(&o, &c, 1);
		}
	}
	out_close(&o);
	free(hdr);
	free_specs(t, n);
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gen_model model OUT.safetensors [--dtype bf16|f16|f32] "
		"[--mb SIZE] [--seed N]\n"
		"       gen_model finetune BASE.safetensors OUT.safetensors "
		"[--rel 0.04] [--lora] [--seed N]\n"
		"       gen_model shard IN.safetensors OUTDIR --shards K\n"
		"       gen_model dtypes OUT.safetensors [--seed N]\n"
		"\n"
		"Deterministic safetensors fixtures: a LLaMA-shaped model of\n"
		"about SIZE MiB (default 4, dtype bf16), a fine-tune of it\n"
		"(relative delta norm --rel; --lora: a rank-8 delta only), a\n"
		"Hugging Face sharded directory,\n"
		"or one small tensor of every dtype.\n");
}

static double parse_num(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end)
		udfs_die("%s: not a number: \"%s\"", opt, s);
	return v;
}

static uint64_t parse_seed(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		udfs_die("--seed: not an integer: \"%s\"", s);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"dtype", required_argument, NULL, 'd'},
	    {"mb", required_argument, NULL, 'm'},
	    {"seed", required_argument, NULL, 's'},
	    {"rel", required_argument, NULL, 'r'},
	    {"shards", required_argument, NULL, 'k'},
	    {"lora", no_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int dt = UDFS_DT_BF16, c;
	double mb = 4, rel = 0.04, k = 0;
	uint64_t seed = 1;
	const char *cmd;
	int npos;

	udfs_set_progname(argv[0]);
	atexit(cleanup_tmp);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dt = parse_dtype_opt(optarg);
			break;
		case 'm':
			mb = parse_num("--mb", optarg);
			break;
		case 's':
			seed = parse_seed(optarg);
			break;
		case 'r':
			rel = parse_num("--rel", optarg);
			break;
		case 'k':
			k = parse_num("--shards", optarg);
			break;
		case 'l':
			ft_lora = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	npos = argc - optind;
	if (npos < 1) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (!strcmp(cmd, "model") && npos == 2)
		cmd_model(argv[optind + 1], dt, mb, seed);
	else if (!strcmp(cmd, "finetune") && npos == 3)
		cmd_finetune(argv[optind + 1], argv[optind + 2], rel, seed);
	else if (!strcmp(cmd, "shard") && npos == 3)
		cmd_shard(argv[optind + 1], argv[optind + 2], (long)k);
	else if (!strcmp(cmd, "dtypes") && npos == 2)
		cmd_dtypes(argv[optind + 1], seed);
	else {
		usage(stderr);
		return 2;
	}
	return 0;
}

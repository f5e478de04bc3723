// SPDX-License-Identifier: MIT
/*
 * The tensor map of a file (tmap.h; layout in udfs(5), files.tensor_map):
 * one version byte, then one record per tensor in data-offset order (for
 * a verbatim file, its pseudo-tensor; none in a base model):
 *
 *   u8      bits 0-4 encoding, bit 7 set when a base tensor follows
 *   varint  base file id, varint base offset         (bit 7 only)
 *   u8 mask | value kind << 2 | code bits << 4, u8 flags, then f32 lo,
 *   f32 step, f32 gain, the rate (f32, or f64 where f32 would round it)
 *   and varint mask seed, each only where the flags say it is not its
 *   usual value (0, 0, 1, -, 0 or the model's key of the tensor name)
 *                                                    (lossy encodings)
 *   per chunk: varint zigzag(offset - end of the previous chunk of the
 *   map, 0 before the first), varint length, u64 XXH3-64 checksum
 *
 * Integers are little-endian, varints LEB128 of up to 64 bits. The chunk
 * count is not stored: it follows from the tensor's byte range. Chunks
 * of one model are written one after another, so an offset costs a byte.
 */
#include "format/tmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"

#define HEAD_BASE 0x80
#define HEAD_ENC 0x1f
#define LOSSY_FIXED 22 /* kinds, flags, three f32, one f64 */
/* Flags of the lossy parameters: which follow the flags byte. */
#define LP_LO 0x01	 /* f32 lo (else 0) */
#define LP_STEP 0x02	 /* f32 step (else 0) */
#define LP_GAIN 0x04	 /* f32 gain (else 1) */
#define LP_RATE64 0x08	 /* the rate as f64 (else as f32) */
#define LP_SEED 0x10	 /* varint mask seed (else 0) */
#define LP_SEED_KEY 0x20 /* the seed is the model's key of the name */

/* Room for the longest record of t. */
static size_t record_max(const udfs_tensor *t)
{
	return 1 + 20 + LOSSY_FIXED + 10 + (size_t)t->n_chunks * (20 + 8);
}

static size_t put_varint(unsigned char *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

static size_t put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
	return (size_t)n;
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static bool has_chunks(const udfs_tensor *t)
{
	return t->enc != UDFS_ENC_BASE && t->enc != UDFS_ENC_SAME &&
	       t->end > t->begin;
}

/* The key a seeded mask of t derives from its model's seed. */
static uint64_t derived_seed(const udfs_file *f, const char *name)
{
	return udfs_seeded_key(f && f->model ? (uint64_t)f->model->seed : 0,
			       name ? name : "");
}

static bool f32_is(float v, uint32_t bits)
{
	uint32_t u;

	memcpy(&u, &v, 4);
	return u == bits;
}

/* The flags of t's lossy parameters: which of them follow. */
static unsigned lossy_flags(const udfs_tensor *t)
{
	const udfs_lossy_params *lp = &t->lp;
	unsigned fl = 0;

	fl |= f32_is(lp->lo, 0) ? 0 : LP_LO;
	fl |= f32_is(lp->step, 0) ? 0 : LP_STEP;
	fl |= f32_is(lp->gain, 0x3f800000) ? 0 : LP_GAIN;
	fl |= (double)(float)lp->rate == lp->rate ? 0 : LP_RATE64;
	if (lp->seed && lp->seed == derived_seed(t->file, t->name))
		fl |= LP_SEED_KEY;
	else if (lp->seed)
		fl |= LP_SEED;
	return fl;
}

static size_t put_f32(unsigned char *p, float v)
{
	uint32_t u;

	memcpy(&u, &v, 4);
	return put_le(p, u, 4);
}

/* t's lossy parameters: kinds, flags, then what the flags name. */
static size_t put_lossy(unsigned char *p, const udfs_tensor *t)
{
	const udfs_lossy_params *lp = &t->lp;
	unsigned fl = lossy_flags(t);
	size_t n = 0;

	p[n++] = (unsigned char)(lp->mask | lp->values << 2 | lp->bits << 4);
	p[n++] = (unsigned char)fl;
	if (fl & LP_LO)
		n += put_f32(p + n, lp->lo);
	if (fl & LP_STEP)
		n += put_f32(p + n, lp->step);
	if (fl & LP_GAIN)
		n += put_f32(p + n, lp->gain);
	if (fl & LP_RATE64) {
		uint64_t r;

		memcpy(&r, &lp->rate, 8);
		n += put_le(p + n, r, 8);
	} else {
		n += put_f32(p + n, (float)lp->rate);
	}
	if (fl & LP_SEED)
		n += put_varint(p + n, lp->seed);
	return n;
}

/* Write t's record at p; *prev is the end of the previous chunk. */
static size_t put_record(unsigned char *p, const udfs_tensor *t, uint64_t *prev)
{
	size_t n = 0;

	p[n++] = (unsigned char)(t->enc | (t->base_file_id ? HEAD_BASE : 0));
	if (t->base_file_id) {
		n += put_varint(p + n, (uint64_t)t->base_file_id);
		n += put_varint(p + n, t->base_begin);
	}
	if (udfs_encoding_is_lossy(t->enc))
		n += put_lossy(p + n, t);
	for (uint32_t i = 0; has_chunks(t) && i < t->n_chunks; i++) {
		const udfs_chunk_ref *c = &t->chunks[i];

		n += put_varint(p + n, zigzag((int64_t)(c->offset - *prev)));
		n += put_varint(p + n, c->length);
		n += put_le(p + n, c->checksum, 8);
		*prev = c->offset + c->length;
	}
	return n;
}

unsigned char *udfs_tmap_encode(const udfs_file *f, size_t *len)
{
	size_t cap = 1, n = 0;
	uint64_t prev = 0;
	unsigned char *p;

	for (size_t i = 0; i < f->n_tensors; i++)
		cap += record_max(&f->tensors[i]);
	p = udfs_xmalloc(cap);
	p[n++] = UDFS_TMAP_VERSION;
	for (size_t i = 0; i < f->n_tensors; i++)
		n += put_record(p + n, &f->tensors[i], &prev);
	*len = n;
	return p;
}

size_t udfs_tmap_record_bytes(const udfs_tensor *t)
{
	unsigned char buf[1 + 20 + LOSSY_FIXED + 10];
	udfs_tensor head = *t;
	uint64_t prev = t->n_chunks ? t->chunks[0].offset : 0;
	size_t n;

	/* The head and parameters as written; each chunk as one of a run
	 * (offset in one byte), which is what a model's chunks are. */
	head.n_chunks = 0;
	n = put_record(buf, &head, &prev);
	for (uint32_t i = 0; has_chunks(t) && i < t->n_chunks; i++) {
		const udfs_chunk_ref *c = &t->chunks[i];

		n += udfs_tmap_varint_bytes(
			 zigzag((int64_t)(c->offset - prev))) +
		     udfs_tmap_varint_bytes(c->length) + 8;
		prev = c->offset + c->length;
	}
	return n;
}

size_t udfs_tmap_varint_bytes(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t udfs_tmap_chunk_ref_bytes(uint32_t length)
{
	return 1 + udfs_tmap_varint_bytes(length) + 8;
}

uint64_t udfs_encoded_bytes(const udfs_tensor *t)
{
	return t->stored_bytes + udfs_tmap_record_bytes(t);
}

int udfs_tensor_from_st(udfs_tensor *t, const udfs_st_tensor *st)
{
	t->name = strdup(st->name);
	t->dtype = st->dtype;
	t->ndim = st->ndim;
	t->shape = calloc((size_t)st->ndim + 1, sizeof(uint64_t));
	if (!t->name || !t->shape)
		return udfs_error(-ENOMEM, "out of memory");
	memcpy(t->shape, st->shape, (size_t)st->ndim * sizeof(uint64_t));
	t->nelems = st->nelems;
	t->begin = st->begin;
	t->end = st->end;
	return 0;
}

int udfs_tensor_verbatim(udfs_tensor *t, uint64_t size)
{
	t->name = strdup("");
	t->dtype = UDFS_DT_U8;
	t->ndim = 1;
	t->shape = calloc(1, sizeof(uint64_t));
	if (!t->name || !t->shape)
		return udfs_error(-ENOMEM, "out of memory");
	t->shape[0] = t->nelems = t->end = size;
	return 0;
}

/* A reader of the map: in[pos..len). */
struct rd {
	const unsigned char *in;
	size_t len, pos;
	bool nomem; /* a false return was out of memory, not a bad map */
};

static bool get_bytes(struct rd *r, void *out, size_t n)
{
	if (r->len - r->pos < n)
		return false;
	memcpy(out, r->in + r->pos, n);
	r->pos += n;
	return true;
}

static bool get_le(struct rd *r, uint64_t *v, int n)
{
	unsigned char b[8];

	if (!get_bytes(r, b, (size_t)n))
		return false;
	*v = 0;
	for (int i = 0; i < n; i++)
		*v |= (uint64_t)b[i] << (8 * i);
	return true;
}

/* A varint of at most 64 bits with no redundant zero byte at its end. */
static bool get_varint(struct rd *r, uint64_t *v)
{
	*v = 0;
	for (unsigned i = 0; i < 10 && r->pos < r->len; i++) {
		uint64_t b = r->in[r->pos++];

		if (i == 9 && b > 1)
			return false;
		*v |= (b & 0x7f) << (7 * i);
		if (!(b & 0x80))
			return !(i && b == 0);
	}
	return false;
}

static bool get_f32(struct rd *r, float *f)
{
	uint64_t v;
	uint32_t u;

	if (!get_le(r, &v, 4))
		return false;
	u = (uint32_t)v;
	memcpy(f, &u, 4);
	return true;
}

/* The lossy parameters of t; false unless written as put_lossy writes
 * them (nothing stored that the flags would leave out). */
static bool get_lossy(struct rd *r, udfs_tensor *t)
{
	udfs_lossy_params *lp = &t->lp;
	unsigned char kinds, fl;
	float rate32 = 0;
	bool ok;

	if (!get_bytes(r, &kinds, 1) || !get_bytes(r, &fl, 1) || (fl & 0xc0) ||
	    (fl & LP_SEED && fl & LP_SEED_KEY))
		return false;
	lp->mask = kinds & 3;
	lp->values = kinds >> 2 & 3;
	lp->bits = kinds >> 4;
	lp->gain = 1.0f;
	ok = (!(fl & LP_LO) || get_f32(r, &lp->lo)) &&
	     (!(fl & LP_STEP) || get_f32(r, &lp->step)) &&
	     (!(fl & LP_GAIN) || get_f32(r, &lp->gain));
	if (ok && fl & LP_RATE64) {
		uint64_t v = 0;

		ok = get_le(r, &v, 8);
		memcpy(&lp->rate, &v, 8);
	} else if (ok) {
		ok = get_f32(r, &rate32);
		lp->rate = rate32;
	}
	if (ok && fl & LP_SEED)
		ok = get_varint(r, &lp->seed);
	if (ok && fl & LP_SEED_KEY)
		lp->seed = derived_seed(t->file, t->name);
	return ok && lossy_flags(t) == fl;
}

static bool get_chunks(struct rd *r, udfs_tensor *t, uint64_t *prev)
{
	uint64_t n =
	    (t->end - t->begin + UDFS_CHUNK_BYTES - 1) / UDFS_CHUNK_BYTES;

	/* Each chunk takes at least 10 bytes: a count the map cannot hold
	 * is malformed before anything is allocated for it. */
	if (n > (r->len - r->pos) / 10)
		return false;
	t->n_chunks = (uint32_t)n;
	t->chunks = calloc(n ? n : 1, sizeof(*t->chunks));
	if (!t->chunks) {
		t->n_chunks = 0;
		r->nomem = true;
		return false;
	}
	for (uint32_t i = 0; i < t->n_chunks; i++) {
		udfs_chunk_ref *c = &t->chunks[i];
		uint64_t zz, len;
		int64_t gap;

		if (!get_varint(r, &zz) || !get_varint(r, &len) ||
		    !get_le(r, &c->checksum, 8))
			return false;
		gap = (int64_t)(zz >> 1) ^ -(int64_t)(zz & 1);
		c->offset = *prev + (uint64_t)gap;
		if (len > UDFS_CHUNK_MAX_STORED || c->offset > INT64_MAX ||
		    (gap < 0 && (uint64_t)-gap > *prev))
			return false;
		c->length = (uint32_t)len;
		t->stored_bytes += len;
		*prev = c->offset + len;
	}
	return true;
}

/* The record of t (its name and range already set). */
static bool get_record(struct rd *r, udfs_tensor *t, uint64_t *prev)
{
	unsigned char head;
	uint64_t id = 0;

	if (!get_bytes(r, &head, 1) || (head & ~(HEAD_BASE | HEAD_ENC)) ||
	    (head & HEAD_ENC) >= UDFS_ENC_COUNT)
		return false;
	t->enc = head & HEAD_ENC;
	if (head & HEAD_BASE) {
		if (!get_varint(r, &id) || !id || id > INT64_MAX ||
		    !get_varint(r, &t->base_begin) || t->base_begin > INT64_MAX)
			return false;
		t->base_file_id = (int64_t)id;
	} else if (t->enc == UDFS_ENC_SAME || t->enc == UDFS_ENC_XOR ||
		   udfs_encoding_is_lossy(t->enc)) {
		return false; /* they are read against a base tensor */
	}
	if (udfs_encoding_is_lossy(t->enc) && !get_lossy(r, t))
		return false;
	return !has_chunks(t) || get_chunks(r, t, prev);
}

/* The tensors of f as its header or size describes them, encodings
 * unset. A verbatim file has its pseudo-tensor when has_records (a base
 * model's is read from its file as it is, without one). */
static int describe(udfs_file *f, bool has_records, const char *label)
{
	udfs_st_header *h = NULL;
	uint64_t need = 0;
	int err;

	if (f->kind != UDFS_FILE_SAFETENSORS) {
		f->tensors = calloc(1, sizeof(*f->tensors));
		if (!f->tensors)
			return udfs_error(-ENOMEM, "out of memory");
		f->n_tensors = f->size && has_records ? 1 : 0;
		return f->n_tensors ? udfs_tensor_verbatim(f->tensors, f->size)
				    : 0;
	}
	err = f->header && f->data_offset >= 8
		  ? udfs_st_parse(label, f->header, f->data_offset, f->size,
				  &need, &h)
		  : -EAGAIN;
	if (!err && h->data_offset != f->data_offset)
		err = -EAGAIN;
	if (err == -EAGAIN)
		err = udfs_error(-EIO,
				 "%s: the header is not %" PRIu64 " bytes long",
				 label, f->data_offset);
	if (err) {
		udfs_st_free(h);
		return err == -ENOMEM ? err : -EIO;
	}
	f->tensors = calloc(h->n_tensors + 1, sizeof(*f->tensors));
	if (!f->tensors)
		err = udfs_error(-ENOMEM, "out of memory");
	else
		f->n_tensors = h->n_tensors;
	for (size_t i = 0; !err && i < h->n_tensors; i++)
		err = udfs_tensor_from_st(&f->tensors[i], &h->tensors[i]);
	udfs_st_free(h);
	return err;
}

static void drop_tensors(udfs_file *f)
{
	udfs_tensors_free(f->tensors, f->n_tensors);
	f->tensors = NULL;
	f->n_tensors = 0;
}

int udfs_tmap_decode(udfs_file *f, const void *map, size_t len,
		     const char *label)
{
	struct rd r = {.in = map, .len = len};
	unsigned char version;
	uint64_t prev = 0;
	bool ok;
	int err = describe(f, len > 1, label);

	if (err) {
		drop_tensors(f);
		return err;
	}
	ok = get_bytes(&r, &version, 1) && version == UDFS_TMAP_VERSION;
	for (size_t i = 0; ok && i < f->n_tensors; i++) {
		f->tensors[i].file = f;
		ok = get_record(&r, &f->tensors[i], &prev);
	}
	if (ok && r.pos == r.len)
		return 0;
	drop_tensors(f);
	if (r.nomem)
		return udfs_error(-ENOMEM, "out of memory");
	return udfs_error(-EIO, "%s: malformed tensor map at byte %zu of %zu",
			  label, r.pos, len);
}

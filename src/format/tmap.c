// SPDX-License-Identifier: MIT
/*
 * The tensor map of a file (tmap.h; layout in udfs(5), files.tensor_map):
 * one version byte, then one record per tensor in data-offset order (for
 * a verbatim file, its pseudo-tensor; none in a base model):
 *
 *   u8      bits 0-4 encoding, bit 7 set when a base tensor follows
 *   varint  base file id, varint base offset         (bit 7 only)
 *   u8 mask, u8 value kind, u8 bits, f32 lo, f32 step, f32 gain,
 *   f64 rate, varint mask seed                       (lossy encodings)
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
#include "common/util.h"

#define HEAD_BASE 0x80
#define HEAD_ENC 0x1f
#define LOSSY_FIXED 23 /* mask, kind, bits, three f32, one f64 */

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

/* Write t's record at p; *prev is the end of the previous chunk. */
static size_t put_record(unsigned char *p, const udfs_tensor *t, uint64_t *prev)
{
	size_t n = 0;
	uint32_t u;

	p[n++] = (unsigned char)(t->enc | (t->base_file_id ? HEAD_BASE : 0));
	if (t->base_file_id) {
		n += put_varint(p + n, (uint64_t)t->base_file_id);
		n += put_varint(p + n, t->base_begin);
	}
	if (udfs_encoding_is_lossy(t->enc)) {
		const udfs_lossy_params *lp = &t->lp;
		uint64_t rate;

		p[n++] = lp->mask;
		p[n++] = lp->values;
		p[n++] = lp->bits;
		memcpy(&u, &lp->lo, 4);
		n += put_le(p + n, u, 4);
		memcpy(&u, &lp->step, 4);
		n += put_le(p + n, u, 4);
		memcpy(&u, &lp->gain, 4);
		n += put_le(p + n, u, 4);
		memcpy(&rate, &lp->rate, 8);
		n += put_le(p + n, rate, 8);
		n += put_varint(p + n, lp->seed);
	}
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

		n += put_varint(buf, zigzag((int64_t)(c->offset - prev))) +
		     put_varint(buf, c->length) + 8;
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

uint64_t udfs_encoded_bytes(const udfs_tensor *t)
{
	return t->stored_bytes + udfs_tmap_record_bytes(t);
}

void udfs_tensor_from_st(udfs_tensor *t, const udfs_st_tensor *st)
{
	t->name = udfs_xstrdup(st->name);
	t->dtype = st->dtype;
	t->ndim = st->ndim;
	t->shape = udfs_xcalloc((size_t)st->ndim + 1, sizeof(uint64_t));
	memcpy(t->shape, st->shape, (size_t)st->ndim * sizeof(uint64_t));
	t->nelems = st->nelems;
	t->begin = st->begin;
	t->end = st->end;
}

void udfs_tensor_verbatim(udfs_tensor *t, uint64_t size)
{
	t->name = udfs_xstrdup("");
	t->dtype = UDFS_DT_U8;
	t->ndim = 1;
	t->shape = udfs_xcalloc(1, sizeof(uint64_t));
	t->shape[0] = t->nelems = t->end = size;
}

/* A reader of the map: in[pos..len). */
struct rd {
	const unsigned char *in;
	size_t len, pos;
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

static bool get_lossy(struct rd *r, udfs_lossy_params *lp)
{
	uint64_t rate;

	if (!get_bytes(r, &lp->mask, 1) || !get_bytes(r, &lp->values, 1) ||
	    !get_bytes(r, &lp->bits, 1) || !get_f32(r, &lp->lo) ||
	    !get_f32(r, &lp->step) || !get_f32(r, &lp->gain) ||
	    !get_le(r, &rate, 8) || !get_varint(r, &lp->seed))
		return false;
	memcpy(&lp->rate, &rate, 8);
	return true;
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
	t->chunks = udfs_xcalloc(n, sizeof(*t->chunks));
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
	if (udfs_encoding_is_lossy(t->enc) && !get_lossy(r, &t->lp))
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
		f->n_tensors = f->size && has_records ? 1 : 0;
		f->tensors = udfs_xcalloc(1, sizeof(*f->tensors));
		if (f->n_tensors)
			udfs_tensor_verbatim(f->tensors, f->size);
		return 0;
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
	f->n_tensors = h->n_tensors;
	f->tensors = udfs_xcalloc(h->n_tensors + 1, sizeof(*f->tensors));
	for (size_t i = 0; i < h->n_tensors; i++)
		udfs_tensor_from_st(&f->tensors[i], &h->tensors[i]);
	udfs_st_free(h);
	return 0;
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
	return udfs_error(-EIO, "%s: malformed tensor map at byte %zu of %zu",
			  label, r.pos, len);
}

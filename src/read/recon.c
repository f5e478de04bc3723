// SPDX-License-Identifier: MIT
/*
 * Reconstruction of virtual file bytes from a store (recon.h): header bytes
 * from the catalog copy, SAME tensors and base models straight from the
 * stored base file with pread (no mmap: a base file truncated under us is
 * an EIO, not a SIGBUS in the daemon), every other tensor chunk by chunk.
 *
 * Each chunk is verified before it is used: XXH3-64 of the stored bytes
 * against the catalog, exact decompressed sizes, and the lossy decoder's
 * own bounds checks. A failure is -EIO, never wrong bytes.
 */
#include "read/recon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec/lossy.h"
#include "codec/plane.h"
#include "common/dtype.h"
#include "common/util.h"

size_t udfs_chunk_out_len(const udfs_tensor *t, uint32_t ci)
{
	uint64_t len = t->end - t->begin,
		 start = (uint64_t)ci * UDFS_CHUNK_BYTES;

	if (start >= len)
		return 0;
	return (size_t)UDFS_MIN((uint64_t)UDFS_CHUNK_BYTES, len - start);
}

/* Element size the plane codec cuts a dtype with: sub-byte types and
 * verbatim files are plain bytes. */
static unsigned plane_es(int dtype)
{
	unsigned es = udfs_dtype_size(dtype);

	return es ? es : 1;
}

static int chunk_fail(const udfs_tensor *t, uint32_t ci, int err,
		      const char *what)
{
	const udfs_file *f = t->file;

	return udfs_error(err, "model %s: file %s: tensor \"%s\": chunk %u: %s",
			  f->model->name, f->path, t->name, ci, what);
}

int udfs_chunk_decode(const udfs_tensor *t, uint32_t ci, void *out)
{
	const udfs_model *m = t->file->model;
	const udfs_chunk_ref *ref;
	size_t len = udfs_chunk_out_len(t, ci);
	unsigned char *in = NULL, *base = NULL;
	int err;

	if (!t->chunks || ci >= t->n_chunks || !len)
		return chunk_fail(t, ci, -EIO, "no such chunk");
	ref = &t->chunks[ci];
	in = udfs_scratch(UDFS_SCRATCH_STORED, ref->length ? ref->length : 1);
	if (!in)
		return -ENOMEM;
	err = udfs_pread_full(m->pack_fd, in, ref->length, ref->offset);
	if (err) {
		err = chunk_fail(t, ci, err == -EIO ? -EIO : err,
				 "cannot read the pack");
		goto out;
	}
	if (XXH3_64bits(in, ref->length) != ref->checksum) {
		err = chunk_fail(t, ci, -EIO, "checksum mismatch");
		goto out;
	}
	if (t->enc != UDFS_ENC_RAW) {
		const udfs_file *bf = t->base_file;

		/* The base goes straight into out and is decoded in place:
		 * both decoders read element i of the base before writing
		 * element i, and this saves a 1 MiB copy per chunk. */
		base = out;
		err = udfs_pread_full(bf->fd, base, len,
				      bf->data_offset + t->base_begin +
					  (uint64_t)ci * UDFS_CHUNK_BYTES);
		if (err) {
			err = chunk_fail(t, ci, -EIO, "cannot read the base");
			goto out;
		}
	}
	switch (t->enc) {
	case UDFS_ENC_XOR:
	case UDFS_ENC_RAW:
		err = udfs_plane_decode(in, ref->length, base, len,
					plane_es(t->dtype), out);
		break;
	default:
		if (!udfs_encoding_is_lossy(t->enc)) {
			err = -EIO;
			break;
		}
		err = udfs_lossy_decode_chunk(
		    &t->lp, t->dtype,
		    (uint64_t)ci * UDFS_CHUNK_BYTES / udfs_dtype_size(t->dtype),
		    (uint32_t)(len / udfs_dtype_size(t->dtype)), in,
		    ref->length, base, out);
	}
	if (err) {
		udfs_error_clear();
		err = chunk_fail(t, ci, -EIO, "malformed chunk");
	}
out:
	return err;
}

const udfs_tensor *udfs_file_tensor_at(const udfs_file *f, uint64_t off)
{
	size_t lo = 0, hi = f->n_tensors;

	/* Last tensor with begin <= off, then past any empty ones. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->tensors[mid].begin <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	for (size_t i = lo - 1; i < f->n_tensors; i++) {
		if (f->tensors[i].begin > off)
			break;
		if (off < f->tensors[i].end)
			return &f->tensors[i];
	}
	return NULL;
}

static int read_chunk(const udfs_tensor *t, uint32_t ci, size_t coff, size_t n,
		      unsigned char *dst, const udfs_chunk_provider *p)
{
	unsigned char *buf;
	const void *data;
	void *handle;
	int err;

	if (p) {
		err = p->get(p->ctx, t, ci, &data, &handle);
		if (err)
			return err;
		memcpy(dst, (const unsigned char *)data + coff, n);
		p->put(p->ctx, handle);
		return 0;
	}
	/* A whole chunk decodes straight into the caller's buffer. */
	if (coff == 0 && n == udfs_chunk_out_len(t, ci))
		return udfs_chunk_decode(t, ci, dst);
	buf = udfs_scratch(UDFS_SCRATCH_CHUNK, UDFS_CHUNK_BYTES);
	if (!buf)
		return -ENOMEM;
	err = udfs_chunk_decode(t, ci, buf);
	if (!err)
		memcpy(dst, buf + coff, n);
	return err;
}

/* The piece of a data-area range of f that starts at pos: within one
 * tensor and, for a tensor stored in chunks, within one chunk. */
struct span {
	const udfs_tensor *t;
	uint64_t tpos; /* offset in the tensor */
	size_t len;    /* bytes of the range in this piece */
	bool chunked;  /* chunk ci of t, from byte coff; else read from base */
	uint32_t ci;
	size_t coff;
};

/*
 * The one offset -> tensor -> chunk walk: the span of data-area bytes
 * [pos, end) of f that starts at pos. 0, or -EIO (with a message) when no
 * tensor holds pos.
 */
static int span_at(const udfs_file *f, uint64_t pos, uint64_t end,
		   struct span *s)
{
	const udfs_tensor *t = udfs_file_tensor_at(f, pos);

	if (!t)
		return udfs_error(
		    -EIO,
		    "model %s: file %s: no tensor at data offset %" PRIu64,
		    f->model->name, f->path, pos);
	s->t = t;
	s->tpos = pos - t->begin;
	s->len = (size_t)UDFS_MIN(end - pos, t->end - pos);
	s->chunked = t->enc != UDFS_ENC_SAME;
	if (s->chunked) {
		s->ci = (uint32_t)(s->tpos / UDFS_CHUNK_BYTES);
		s->coff = (size_t)(s->tpos % UDFS_CHUNK_BYTES);
		s->len =
		    UDFS_MIN(s->len, udfs_chunk_out_len(t, s->ci) - s->coff);
	}
	return 0;
}

/* Read span s (data-area bytes of f) into dst. */
static int read_span(const udfs_file *f, const struct span *s,
		     unsigned char *dst, const udfs_chunk_provider *p)
{
	const udfs_tensor *t = s->t;
	const udfs_file *bf = t->base_file;

	if (s->chunked)
		return read_chunk(t, s->ci, s->coff, s->len, dst, p);
	if (udfs_pread_full(bf->fd, dst, s->len,
			    bf->data_offset + t->base_begin + s->tpos))
		return udfs_error(
		    -EIO,
		    "model %s: file %s: tensor \"%s\": cannot read the base",
		    f->model->name, f->path, t->name);
	return 0;
}

/* Copy data-area bytes [pos, pos + n) of f into dst. */
static int read_data(const udfs_file *f, unsigned char *dst, uint64_t pos,
		     size_t n, const udfs_chunk_provider *p)
{
	uint64_t end = pos + n;
	struct span s;
	int err = 0;

	while (pos < end) {
		err = span_at(f, pos, end, &s);
		if (!err)
			err = read_span(f, &s, dst, p);
		if (err)
			break;
		dst += s.len;
		pos += s.len;
	}
	return err;
}

void udfs_file_each_chunk(const udfs_file *f, uint64_t from, uint64_t to,
			  udfs_chunk_fn *fn, void *ctx)
{
	uint64_t pos = UDFS_MAX(from, f->data_offset) - f->data_offset;
	uint64_t end;
	struct span s;

	if (to <= f->data_offset)
		return;
	end = UDFS_MIN(to, f->size) - f->data_offset;
	while (pos < end) {
		if (span_at(f, pos, end, &s) < 0) {
			udfs_error_clear(); /* a read of these bytes will say */
			break;
		}
		if (s.chunked && s.t->chunks) {
			if (s.ci >= s.t->n_chunks)
				break;
			fn(ctx, s.t, s.ci);
		}
		pos += s.len;
	}
}

/* The piece of data-area span s of f. */
static void span_piece(const struct span *s, udfs_piece *p)
{
	const udfs_tensor *t = s->t;

	*p = (udfs_piece){.len = s->len};
	if (s->chunked) {
		p->t = t;
		p->ci = s->ci;
		p->off = s->coff;
	} else {
		p->fd = t->base_file->fd;
		p->off = t->base_file->data_offset + t->base_begin + s->tpos;
	}
}

int udfs_file_pieces(const udfs_file *f, uint64_t off, size_t size,
		     udfs_piece *p, size_t max)
{
	uint64_t pos, end;
	size_t n = 0;
	struct span s;
	int err;

	if (off >= f->size)
		return 0;
	end = off + UDFS_MIN((uint64_t)size, f->size - off);
	if (f->model->kind == UDFS_MODEL_BASE) {
		if (!max)
			return -E2BIG;
		p[0] = (udfs_piece){.fd = f->fd, .off = off, .len = end - off};
		return 1;
	}
	if (off < f->data_offset) {
		if (!max)
			return -E2BIG;
		p[n++] = (udfs_piece){
		    .mem = f->header + off,
		    .len = (size_t)(UDFS_MIN(end, f->data_offset) - off)};
	}
	for (pos = UDFS_MAX(off, f->data_offset); pos < end; pos += s.len) {
		err =
		    span_at(f, pos - f->data_offset, end - f->data_offset, &s);
		if (err)
			return err;
		if (s.chunked && (!s.t->chunks || s.ci >= s.t->n_chunks))
			return chunk_fail(s.t, s.ci, -EIO, "no such chunk");
		if (n == max)
			return -E2BIG;
		span_piece(&s, &p[n++]);
	}
	return (int)n;
}

ssize_t udfs_file_read(const udfs_file *f, void *buf, size_t size, uint64_t off,
		       const udfs_chunk_provider *p)
{
	unsigned char *dst = buf;
	size_t done = 0;
	int err;

	if (off >= f->size)
		return 0;
	size = (size_t)UDFS_MIN((uint64_t)size, f->size - off);
	if (f->model->kind == UDFS_MODEL_BASE) {
		err = udfs_pread_full(f->fd, buf, size, off);
		if (err)
			return udfs_error(
			    -EIO,
			    "base %s: file %s: cannot read %zu bytes at %" PRIu64,
			    f->model->name, f->path, size, off);
		return (ssize_t)size;
	}
	if (off < f->data_offset) {
		done = (size_t)UDFS_MIN((uint64_t)size, f->data_offset - off);
		memcpy(dst, f->header + off, done);
	}
	if (done < size) {
		err = read_data(f, dst + done, off + done - f->data_offset,
				size - done, p);
		if (err)
			return err;
	}
	return (ssize_t)size;
}

// SPDX-License-Identifier: MIT
/*
 * The read path of `udfs mount`: a read request is cut into pieces
 * (udfs_file_pieces: header bytes, bytes of the base file, bytes of
 * decoded chunks), the chunks it needs are fetched from the cache in one
 * call (the decode pool decodes the missing ones in parallel while this
 * worker waits), and the reply is sent with fuse_reply_iov straight from
 * the header copy and the cache entries, whose references are held until
 * the reply is written. Only bytes read from base files need a buffer: one
 * of BOUNCE_SLOTS shared bounce buffers, so that no memory grows with the
 * number of worker threads (-o threads). A read of more pieces than
 * READ_PIECES (many tiny tensors) is copied into a bounce buffer instead.
 */
#include "fuse/fuse_i.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <syslog.h>

#include "common/util.h"

#define READ_PIECES 64 /* iovec pieces of one reply */

/* What one read holds until its reply is sent. */
struct reply {
	udfs_piece piece[READ_PIECES];
	udfs_chunk_req chunk[READ_PIECES];
	size_t used[READ_PIECES]; /* bytes of chunk[i] in the reply */
	struct iovec iov[READ_PIECES];
	size_t nchunks;
	int slot; /* bounce buffer, or -1 */
};

void udfs_fs_bounce_init(struct udfs_fs *fs)
{
	pthread_mutex_init(&fs->bounce_lock, NULL);
	pthread_cond_init(&fs->bounce_free, NULL);
}

void udfs_fs_bounce_free(struct udfs_fs *fs)
{
	for (int i = 0; i < UDFS_BOUNCE_SLOTS; i++)
		if (fs->bounce[i].p)
			munmap(fs->bounce[i].p, fs->bounce[i].cap);
	pthread_cond_destroy(&fs->bounce_free);
	pthread_mutex_destroy(&fs->bounce_lock);
}

/* A bounce buffer of at least n bytes, waiting for a free slot; its slot
 * in *slot. NULL (slot released) when it cannot grow. */
static unsigned char *bounce_get(struct udfs_fs *fs, size_t n, int *slot)
{
	struct udfs_bounce *b = NULL;
	size_t cap;
	void *p;

	pthread_mutex_lock(&fs->bounce_lock);
	for (;;) {
		for (int i = 0; i < UDFS_BOUNCE_SLOTS && !b; i++)
			if (!fs->bounce[i].busy)
				b = &fs->bounce[i];
		if (b)
			break;
		pthread_cond_wait(&fs->bounce_free, &fs->bounce_lock);
	}
	b->busy = true;
	pthread_mutex_unlock(&fs->bounce_lock);
	*slot = (int)(b - fs->bounce);
	if (b->cap >= n)
		return b->p;
	/* Grow in whole MiB: requests are at most a few of them. */
	cap = (n + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
	p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED) {
		pthread_mutex_lock(&fs->bounce_lock);
		b->busy = false;
		pthread_cond_signal(&fs->bounce_free);
		pthread_mutex_unlock(&fs->bounce_lock);
		*slot = -1;
		return NULL;
	}
	if (b->p)
		munmap(b->p, b->cap);
	b->p = p;
	b->cap = cap;
	return b->p;
}

static void bounce_put(struct udfs_fs *fs, int slot)
{
	if (slot < 0)
		return;
	pthread_mutex_lock(&fs->bounce_lock);
	fs->bounce[slot].busy = false;
	pthread_cond_signal(&fs->bounce_free);
	pthread_mutex_unlock(&fs->bounce_lock);
}

static void reply_error(fuse_req_t req, struct udfs_fs *fs,
			const struct udfs_fh *fh, size_t size, off_t off,
			int err)
{
	__atomic_add_fetch(&fs->read_errors, 1, __ATOMIC_RELAXED);
	udfs_fs_log(fs, LOG_ERR, "%s/%s: read of %zu bytes at %lld: %s",
		    fh->model->name, fh->file->path, size, (long long)off,
		    udfs_error_msg(err));
	fuse_reply_err(req, -err);
}

/* The cache entries of the chunk pieces of r, decoded in parallel. */
static int get_chunks(struct udfs_fs *fs, struct reply *r, size_t n)
{
	int err;

	r->nchunks = 0;
	for (size_t i = 0; i < n; i++)
		if (r->piece[i].t) {
			r->used[r->nchunks] = r->piece[i].len;
			r->chunk[r->nchunks++] = (udfs_chunk_req){
			    .t = r->piece[i].t, .ci = r->piece[i].ci};
		}
	if (!r->nchunks)
		return 0;
	err = udfs_cache_get_many(fs->cache, r->chunk, r->nchunks);
	if (err)
		r->nchunks = 0;
	return err;
}

static int base_fail(const udfs_file *f, const udfs_piece *p)
{
	if (f->model->kind == UDFS_MODEL_BASE)
		return udfs_error(
		    -EIO, "base %s: file %s: cannot read %zu bytes at %" PRIu64,
		    f->model->name, f->path, p->len, p->off);
	return udfs_error(-EIO,
			  "model %s: file %s: cannot read the base (%zu bytes "
			  "at %" PRIu64 " of its file)",
			  f->model->name, f->path, p->len, p->off);
}

/* Read the base-file pieces of r into one bounce buffer; point every
 * piece's iovec at its bytes. */
static int fill_iov(struct udfs_fs *fs, const udfs_file *f, struct reply *r,
		    size_t n)
{
	size_t base = 0, pos = 0, ci = 0;
	unsigned char *buf = NULL;

	for (size_t i = 0; i < n; i++)
		if (!r->piece[i].t && !r->piece[i].mem)
			base += r->piece[i].len;
	if (base && !(buf = bounce_get(fs, base, &r->slot)))
		return udfs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const udfs_piece *p = &r->piece[i];
		struct iovec *v = &r->iov[i];

		v->iov_len = p->len;
		if (p->t) {
			v->iov_base =
			    (unsigned char *)r->chunk[ci++].data + p->off;
		} else if (p->mem) {
			v->iov_base = (void *)p->mem;
		} else {
			v->iov_base = buf + pos;
			if (udfs_pread_full(p->fd, buf + pos, p->len, p->off))
				return base_fail(f, p);
			pos += p->len;
		}
	}
	return 0;
}

/* A read of too many pieces: copied into a bounce buffer. */
static void read_copy(fuse_req_t req, struct udfs_fs *fs,
		      const struct udfs_fh *fh, size_t size, off_t off)
{
	unsigned char *buf;
	ssize_t n;
	int slot;

	buf = bounce_get(fs, size ? size : 1, &slot);
	if (!buf) {
		reply_error(req, fs, fh, size, off,
			    udfs_error(-ENOMEM, "out of memory"));
		return;
	}
	n = udfs_file_read(fh->file, buf, size, (uint64_t)off, &fs->provider);
	if (n < 0) {
		reply_error(req, fs, fh, size, off, (int)n);
	} else {
		__atomic_add_fetch(&fs->bytes_served, (uint64_t)n,
				   __ATOMIC_RELAXED);
		fuse_reply_buf(req, (const char *)buf, (size_t)n);
	}
	bounce_put(fs, slot);
}

void udfs_fs_read(fuse_req_t req, struct udfs_fs *fs, const struct udfs_fh *fh,
		  size_t size, off_t off, bool direct)
{
	struct reply r;
	int n, err;

	udfs_error_clear();
	r.nchunks = 0;
	r.slot = -1;
	n = udfs_file_pieces(fh->file, (uint64_t)off, size, r.piece,
			     READ_PIECES);
	if (n == -E2BIG) {
		read_copy(req, fs, fh, size, off);
		return;
	}
	err = n < 0 ? n : get_chunks(fs, &r, (size_t)n);
	if (!err)
		err = fill_iov(fs, fh->file, &r, (size_t)n);
	if (err) {
		reply_error(req, fs, fh, size, off, err);
	} else {
		__atomic_add_fetch(&fs->bytes_served, (uint64_t)size,
				   __ATOMIC_RELAXED);
		fuse_reply_iov(req, r.iov, n);
	}
	/* Bytes the kernel now keeps in its page cache: their entries are
	 * recycled first once all their bytes are there. */
	for (size_t i = 0; i < r.nchunks; i++)
		udfs_cache_put_served(fs->cache, r.chunk[i].handle,
				      err || direct ? 0 : r.used[i]);
	bounce_put(fs, r.slot);
}

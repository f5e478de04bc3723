// SPDX-License-Identifier: MIT
/*
 * The only wrapper of zstd: one buffer in, one frame out, and back, with a
 * compression and a decompression context per thread, reused (creating
 * one per chunk costs more than compressing a small chunk), and the
 * frame's declared size checked before decoding.
 */
#include "codec/zstd.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <zstd.h>

#include "common/util.h"

struct zctx {
	ZSTD_CCtx *c;
	ZSTD_DCtx *d;
};

static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;

static void zctx_free(void *p)
{
	struct zctx *z = p;

	ZSTD_freeCCtx(z->c);
	ZSTD_freeDCtx(z->d);
	free(z);
}

static void zkey_init(void) { pthread_key_create(&zkey, zctx_free); }

/*
 * The shortest match at the fast levels (1 and 2, which take 6 and 5):
 * what udfs compresses is noise with a skewed histogram (a delta's byte
 * planes, a lossy chunk's codes and masks), where such short matches are
 * chance repeats that cost more than the Huffman literals they replace.
 * At 7, the most those levels take, every model measured stores fewer
 * bytes (0.17-0.8% lossless) and the frames decode faster (bench/SPEED.md,
 * session 28).
 */
#define FAST_MIN_MATCH 7

static size_t compress_frame(ZSTD_CCtx *c, void *dst, size_t cap,
			     const void *src, size_t n, int level)
{
	size_t r;

	if (level > 2)
		return ZSTD_compressCCtx(c, dst, cap, src, n, level);
	ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
	r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(c, ZSTD_c_minMatch, FAST_MIN_MATCH);
	return ZSTD_isError(r) ? r : ZSTD_compress2(c, dst, cap, src, n);
}

static struct zctx *zctx(void)
{
	struct zctx *z;

	pthread_once(&zonce, zkey_init);
	z = pthread_getspecific(zkey);
	if (!z) {
		z = calloc(1, sizeof(*z));
		if (!z)
			return NULL;
		z->c = ZSTD_createCCtx();
		z->d = ZSTD_createDCtx();
		if (!z->c || !z->d) {
			zctx_free(z);
			return NULL;
		}
		pthread_setspecific(zkey, z);
	}
	return z;
}

int udfs_zstd_compress(const void *in, size_t n, int level, void **out,
		       size_t *out_len)
{
	struct zctx *z = zctx();
	size_t cap = ZSTD_compressBound(n), r;
	void *buf;

	if (!z)
		return udfs_error(-ENOMEM, "zstd: cannot create a context");
	buf = udfs_xmalloc(cap);
	r = compress_frame(z->c, buf, cap, in, n, level);
	if (ZSTD_isError(r)) {
		free(buf);
		return udfs_error(-EIO, "zstd: %s", ZSTD_getErrorName(r));
	}
	*out = buf;
	*out_len = r;
	return 0;
}

int udfs_zstd_decompress(const void *in, size_t in_len, void *out, size_t n)
{
	struct zctx *z = zctx();
	unsigned long long size;
	size_t r;

	if (!z)
		return udfs_error(-ENOMEM, "zstd: cannot create a context");
	/* Check the frame's declared size first, so that a damaged frame
	 * cannot make us decode into the wrong amount. */
	size = ZSTD_getFrameContentSize(in, in_len);
	if (size != n)
		return udfs_error(
		    -EIO, "zstd frame holds %llu bytes, expected %zu", size, n);
	r = ZSTD_decompressDCtx(z->d, out, n, in, in_len);
	if (ZSTD_isError(r) || r != n)
		return udfs_error(-EIO, "zstd: %s",
				  ZSTD_isError(r) ? ZSTD_getErrorName(r)
						  : "short frame");
	return 0;
}

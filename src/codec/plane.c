// SPDX-License-Identifier: MIT
/*
 * Lossless chunk codec: XOR or integer difference against the base, byte
 * planes, zstd per plane (udfs(5), "Lossless chunk"). Byte planes matter
 * because the high byte of a float (sign and exponent) barely changes in a
 * fine-tune while the low mantissa bytes are close to random: compressed apart,
 * the first shrinks to a few bits per element and the others cost what they
 * must.
 *
 * Chunk layout (all integers little-endian):
 *   u8 mode      0 xor, 1 difference (cur - base mod 2^(8*es)), 2 no base
 *   u8 es        element size the planes were cut with
 *   es x { u8 kind (0 zero plane, 1 zstd, 2 stored), u32 length }
 *   the plane payloads, in order
 */
#include "codec/plane.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/zstd.h"
#include "common/util.h"

enum { MODE_XOR = 0, MODE_SUB = 1, MODE_NONE = 2 };
enum { PLANE_ZERO = 0, PLANE_ZSTD = 1, PLANE_STORED = 2 };
#define MAX_ES 8

/* Split delta elements into planes: plane p gets byte p of each element. */
static void split(const unsigned char *cur, const unsigned char *base, size_t n,
		  unsigned es, int mode, unsigned char *planes)
{
	size_t m = n / es;

	if (es == 2 && mode != MODE_NONE) {
		/* The common BF16/F16 case, written out for speed. */
		for (size_t i = 0; i < m; i++) {
			uint16_t a =
			    (uint16_t)(cur[2 * i] | cur[2 * i + 1] << 8);
			uint16_t b =
			    (uint16_t)(base[2 * i] | base[2 * i + 1] << 8);
			uint16_t d =
			    mode == MODE_XOR ? a ^ b : (uint16_t)(a - b);

			planes[i] = (unsigned char)d;
			planes[m + i] = (unsigned char)(d >> 8);
		}
		return;
	}
	for (size_t i = 0; i < m; i++) {
		uint64_t a = 0, b = 0, d;

		for (unsigned k = 0; k < es; k++) {
			a |= (uint64_t)cur[i * es + k] << (8 * k);
			if (base)
				b |= (uint64_t)base[i * es + k] << (8 * k);
		}
		d = mode == MODE_XOR ? a ^ b : mode == MODE_SUB ? a - b : a;
		for (unsigned k = 0; k < es; k++)
			planes[(size_t)k * m + i] =
			    (unsigned char)(d >> (8 * k));
	}
}

/*
 * Joins, in place: io holds the base and receives the output. One element
 * is read, combined and written back before the next, so the loops have
 * no aliasing to guard, and they run over blocks of BLOCK elements: GCC's
 * -O2 vectorizes only loops that need no scalar remainder, so the inner
 * loop of a block becomes SIMD code and only the tail is scalar. Loads and
 * stores go through memcpy: whole little-endian integers at any alignment.
 */
#define BLOCK 64

#define DEFINE_JOIN(name, T, ES, OP)                                           \
	static void name##_run(const unsigned char *restrict planes, size_t m, \
			       size_t from, size_t n,                          \
			       unsigned char *restrict io)                     \
	{                                                                      \
		for (size_t i = from; i < from + n; i++) {                     \
			T d = 0, b;                                            \
			for (unsigned k = 0; k < (ES); k++)                    \
				d |= (T)((T)planes[(size_t)k * m + i]          \
					 << (8 * k));                          \
			memcpy(&b, io + i * (ES), (ES));                       \
			b = (T)(b OP d);                                       \
			memcpy(io + i * (ES), &b, (ES));                       \
		}                                                              \
	}                                                                      \
	static void name(const unsigned char *planes, size_t m,                \
			 unsigned char *io)                                    \
	{                                                                      \
		size_t i = 0;                                                  \
                                                                               \
		for (; i + BLOCK <= m; i += BLOCK)                             \
			name##_run(planes, m, i, BLOCK, io);                   \
		name##_run(planes, m, i, m - i, io);                           \
	}

DEFINE_JOIN(xor2, uint16_t, 2, ^)
DEFINE_JOIN(xor4, uint32_t, 4, ^)
DEFINE_JOIN(xor8, uint64_t, 8, ^)
DEFINE_JOIN(sub2, uint16_t, 2, +)
DEFINE_JOIN(sub4, uint32_t, 4, +)
DEFINE_JOIN(sub8, uint64_t, 8, +)

/* Interleave the planes into out, with no base (mode none). */
static void join_none(const unsigned char *planes, size_t m, unsigned es,
		      unsigned char *out)
{
	for (unsigned k = 0; k < es; k++) {
		const unsigned char *p = planes + (size_t)k * m;

		for (size_t i = 0; i < m; i++)
			out[i * es + k] = p[i];
	}
}

/* Any element size up to MAX_ES, one element at a time; the element is
 * read whole before it is written, so out may be base. */
static void join_any(const unsigned char *planes, const unsigned char *base,
		     size_t m, unsigned es, bool sub, unsigned char *out)
{
	for (size_t i = 0; i < m; i++) {
		uint64_t d = 0, b = 0, a;

		for (unsigned k = 0; k < es; k++) {
			d |= (uint64_t)planes[(size_t)k * m + i] << (8 * k);
			b |= (uint64_t)base[i * es + k] << (8 * k);
		}
		a = sub ? d + b : d ^ b;
		for (unsigned k = 0; k < es; k++)
			out[i * es + k] = (unsigned char)(a >> (8 * k));
	}
}

/* out = base combined with the planes (out may be base itself). */
static void join(const unsigned char *planes, const unsigned char *base,
		 size_t n, unsigned es, int mode, unsigned char *out)
{
	size_t m = n / es;
	bool sub = mode == MODE_SUB;

	if (mode == MODE_NONE) {
		join_none(planes, m, es, out);
		return;
	}
	if (es != 2 && es != 4 && es != 8) {
		join_any(planes, base, m, es, sub, out);
		return;
	}
	if (out != base)
		memmove(out, base, n);
	if (es == 2)
		sub ? sub2(planes, m, out) : xor2(planes, m, out);
	else if (es == 4)
		sub ? sub4(planes, m, out) : xor4(planes, m, out);
	else
		sub ? sub8(planes, m, out) : xor8(planes, m, out);
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Compress the es planes of one mode into a freshly allocated chunk. */
static int encode_planes(const unsigned char *planes, size_t n, unsigned es,
			 int mode, int level, void **out, size_t *out_len)
{
	size_t m = n / es, hdr = 2 + 5 * (size_t)es, len = hdr;
	void *part[MAX_ES] = {0};
	size_t part_len[MAX_ES] = {0};
	unsigned char kind[MAX_ES];
	unsigned char *buf;
	int err = 0;

	for (unsigned k = 0; k < es && !err; k++) {
		const unsigned char *p = planes + (size_t)k * m;

		if (all_zero(p, m)) {
			kind[k] = PLANE_ZERO;
			continue;
		}
		err = udfs_zstd_compress(p, m, level, &part[k], &part_len[k]);
		kind[k] = PLANE_ZSTD;
		if (!err && part_len[k] >= m) {
			kind[k] = PLANE_STORED;
			part_len[k] = m;
		}
		len += part_len[k];
	}
	if (err)
		goto out;
	buf = udfs_xmalloc(len);
	buf[0] = (unsigned char)mode;
	buf[1] = (unsigned char)es;
	len = hdr;
	for (unsigned k = 0; k < es; k++) {
		unsigned char *d = buf + 2 + 5 * k;

		d[0] = kind[k];
		for (int i = 0; i < 4; i++)
			d[1 + i] = (unsigned char)(part_len[k] >> (8 * i));
		if (kind[k] == PLANE_ZSTD)
			memcpy(buf + len, part[k], part_len[k]);
		else if (kind[k] == PLANE_STORED)
			memcpy(buf + len, planes + (size_t)k * m, m);
		len += part_len[k];
	}
	*out = buf;
	*out_len = len;
out:
	for (unsigned k = 0; k < es; k++)
		free(part[k]);
	return err;
}

/* Stored length of the top plane of an encoded chunk (0 when zero). */
static size_t top_plane_len(const unsigned char *chunk, unsigned es)
{
	const unsigned char *d = chunk + 2 + 5 * (es - 1);

	return (size_t)d[1] | (size_t)d[2] << 8 | (size_t)d[3] << 16 |
	       (size_t)d[4] << 24;
}

/* Whether the top plane of planes compresses below limit bytes. */
static bool sub_top_smaller(const unsigned char *planes, size_t n, unsigned es,
			    int level, size_t limit)
{
	size_t m = n / es, len = 0;
	void *buf = NULL;
	bool smaller;

	if (udfs_zstd_compress(planes + (size_t)(es - 1) * m, m, level, &buf,
			       &len))
		return false;
	smaller = len < limit;
	free(buf);
	return smaller;
}

int udfs_plane_encode(const void *cur, const void *base, size_t n, unsigned es,
		      int level, void **out, size_t *out_len)
{
	unsigned char *planes;
	void *best = NULL, *alt = NULL;
	size_t best_len = 0, alt_len = 0;
	int err;

	if ((es != 1 && es != 2 && es != 4 && es != 8) || n % es)
		return udfs_error(
		    -EINVAL, "plane codec: %zu bytes in elements of %u", n, es);
	planes = udfs_scratch(UDFS_SCRATCH_PLANES, n ? n : 1);
	if (!planes)
		return -ENOMEM;
	split(cur, base, n, es, base ? MODE_XOR : MODE_NONE, planes);
	err = encode_planes(planes, n, es, base ? MODE_XOR : MODE_NONE, level,
			    &best, &best_len);
	/* A difference is smaller than XOR where values move by small steps
	 * across a power of two, which shows in the top (sign and exponent)
	 * plane. Measure that plane first and encode the rest only when the
	 * difference wins there: the low planes cost the same either way,
	 * and compressing them twice would halve the speed. */
	if (!err && base && top_plane_len(best, es) > 0) {
		split(cur, base, n, es, MODE_SUB, planes);
		if (sub_top_smaller(planes, n, es, level,
				    top_plane_len(best, es)))
			err = encode_planes(planes, n, es, MODE_SUB, level,
					    &alt, &alt_len);
		if (!err && alt && alt_len < best_len) {
			free(best);
			best = alt;
			best_len = alt_len;
			alt = NULL;
		}
	}
	free(alt);
	if (err) {
		free(best);
		return err;
	}
	*out = best;
	*out_len = best_len;
	return 0;
}

int udfs_plane_decode(const void *in, size_t in_len, const void *base, size_t n,
		      unsigned es, void *out)
{
	const unsigned char *p = in;
	unsigned char *planes;
	size_t m, pos, hdr;
	int mode, err = 0;

	if (in_len < 2 || p[1] != es || es == 0 || es > MAX_ES || n % es)
		return udfs_error(-EIO, "plane chunk: bad header");
	mode = p[0];
	if (mode > MODE_NONE || (mode == MODE_NONE) != (base == NULL))
		return udfs_error(-EIO, "plane chunk: mode %d does not fit",
				  mode);
	hdr = 2 + 5 * (size_t)es;
	if (in_len < hdr)
		return udfs_error(-EIO, "plane chunk: truncated header");
	m = n / es;
	/* One plane and no base: the plane is the output, decoded straight
	 * into it (verbatim files, 1-byte types). */
	planes = es == 1 && mode == MODE_NONE
		     ? out
		     : udfs_scratch(UDFS_SCRATCH_PLANES, n ? n : 1);
	if (!planes)
		return -ENOMEM;
	pos = hdr;
	for (unsigned k = 0; k < es && !err; k++) {
		const unsigned char *d = p + 2 + 5 * k;
		size_t len = (size_t)d[1] | (size_t)d[2] << 8 |
			     (size_t)d[3] << 16 | (size_t)d[4] << 24;
		unsigned char *dst = planes + (size_t)k * m;

		if (len > in_len - pos) {
			err = udfs_error(
			    -EIO, "plane chunk: plane %u past the end", k);
			break;
		}
		switch (d[0]) {
		case PLANE_ZERO:
			if (len)
				err = udfs_error(-EIO,
						 "plane chunk: bad zero plane");
			memset(dst, 0, m);
			break;
		case PLANE_STORED:
			if (len != m)
				err = udfs_error(
				    -EIO,
				    "plane chunk: stored plane of %zu bytes",
				    len);
			else
				memcpy(dst, p + pos, m);
			break;
		case PLANE_ZSTD:
			err = udfs_zstd_decompress(p + pos, len, dst, m);
			break;
		default:
			err = udfs_error(-EIO, "plane chunk: plane kind %d",
					 d[0]);
		}
		pos += len;
	}
	if (!err && pos != in_len)
		err = udfs_error(-EIO, "plane chunk: %zu trailing bytes",
				 in_len - pos);
	if (!err && planes != out)
		join(planes, base, n, es, mode, out);
	return err;
}

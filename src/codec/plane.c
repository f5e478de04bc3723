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
 *   es x { u8 kind (0 zero plane, 1 zstd, 2 stored, 3 sparse, 4 nibbles),
 *          u32 length }
 *   the plane payloads, in order
 *
 * A sparse plane is the bitmap of its nonzero bytes and those bytes: u32
 * length of the bitmap's zstd frame, that frame, then a zstd frame of the
 * nonzero bytes in order. The top plane of a fine-tune's delta (sign and
 * exponent) is about 90% zeros: zstd codes it with many short matches and
 * decodes it at half the speed of the random low plane, while the bitmap
 * and the bytes are mostly Huffman-coded literals, decoded at the low
 * plane's speed, and the expansion is one vector instruction per 64 bytes
 * where the CPU has AVX-512 VBMI2; and smaller (4% fewer bytes for the
 * stories260K BF16 fine-tune). A nibble plane (below) is a zstd frame of
 * the plane's high nibbles and its low nibbles stored.
 */
#include "codec/plane.h"

#include <endian.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/simd.h"
#include "codec/zstd.h"
#include "common/util.h"

#ifdef UDFS_SIMD_X86
#include <immintrin.h>
#endif

enum { MODE_XOR = 0, MODE_SUB = 1, MODE_NONE = 2 };
enum {
	PLANE_ZERO = 0,
	PLANE_ZSTD = 1,
	PLANE_STORED = 2,
	PLANE_SPARSE = 3,
	PLANE_NIBBLES = 4
};
#define MAX_ES 8

/*
 * The loops below run over blocks of BLOCK elements: GCC's -O2 vectorizes
 * only loops that need no scalar remainder, so the inner loop of a block
 * becomes SIMD code and only the tail is scalar. Loads and stores go
 * through memcpy: whole little-endian integers at any alignment.
 */
#define BLOCK 64

/* The common BF16/F16 split: planes (m bytes each) of cur OP base. */
#define DEFINE_SPLIT2(name, OP)                                                \
	static inline __attribute__((always_inline)) void name##_run(          \
	    const unsigned char *restrict cur,                                 \
	    const unsigned char *restrict base, size_t from, size_t n,         \
	    size_t m, unsigned char *restrict planes)                          \
	{                                                                      \
		for (size_t i = from; i < from + n; i++) {                     \
			uint16_t a, b, d;                                      \
			memcpy(&a, cur + 2 * i, 2);                            \
			memcpy(&b, base + 2 * i, 2);                           \
			d = (uint16_t)(a OP b);                                \
			planes[i] = (unsigned char)d;                          \
			planes[m + i] = (unsigned char)(d >> 8);               \
		}                                                              \
	}                                                                      \
	UDFS_CLONES static void name(const unsigned char *cur,                 \
				     const unsigned char *base, size_t m,      \
				     unsigned char *planes)                    \
	{                                                                      \
		size_t i = 0;                                                  \
                                                                               \
		for (; i + BLOCK <= m; i += BLOCK)                             \
			name##_run(cur, base, i, BLOCK, m, planes);            \
		name##_run(cur, base, i, m - i, m, planes);                    \
	}

DEFINE_SPLIT2(split_xor2, ^)
DEFINE_SPLIT2(split_sub2, -)

/* Split delta elements into planes: plane p gets byte p of each element. */
static void split(const unsigned char *cur, const unsigned char *base, size_t n,
		  unsigned es, int mode, unsigned char *planes)
{
	size_t m = n / es;

	if (es == 2 && mode != MODE_NONE && le16toh(1) == 1) {
		(mode == MODE_XOR ? split_xor2 : split_sub2)(cur, base, m,
							     planes);
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
 * no aliasing to guard; blocks of BLOCK elements as above.
 */

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
	UDFS_CLONES static void name(const unsigned char *planes, size_t m,    \
				     unsigned char *io)                        \
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

UDFS_CLONES static size_t count_nonzero(const unsigned char *p, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += p[i] != 0;
	return c;
}

/* u32 little-endian at p. */
static void put_u32(unsigned char *p, size_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static size_t get_u32(const unsigned char *p)
{
	return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 |
	       (size_t)p[3] << 24;
}

/* The bitmap of the nonzero bytes of p (m bytes) into bm, those bytes into
 * vals; without a branch per byte (a tenth of them are nonzero, at
 * random). */
static void sparse_split(const unsigned char *p, size_t m, unsigned char *bm,
			 unsigned char *vals)
{
	const uint64_t lo7 = 0x7f7f7f7f7f7f7f7fULL;
	size_t i = 0, j = 0;

	for (; i + 8 <= m; i += 8) {
		uint64_t v, t;

		memcpy(&v, p + i, 8);
		v = le64toh(v);
		/* Bit 7 of each byte of t: that byte of v is nonzero; the
		 * multiply gathers the eight bits into the top byte. */
		t = (((v & lo7) + lo7) | v) & ~lo7;
		bm[i / 8] =
		    (unsigned char)(((t >> 7) * 0x0102040810204080ULL) >> 56);
		for (unsigned k = 0; k < 8; k++) {
			vals[j] = p[i + k];
			j += p[i + k] != 0;
		}
	}
	for (; i < m; i++) {
		bm[i / 8] |= (unsigned char)((p[i] != 0) << (i % 8));
		vals[j] = p[i];
		j += p[i] != 0;
	}
}

/* A plane of m bytes, nnz of them nonzero, as a sparse plane payload
 * (malloc-ed into *out). */
static int sparse_encode(const unsigned char *p, size_t m, size_t nnz,
			 int level, void **out, size_t *out_len)
{
	size_t bm_len = (m + 7) / 8, zb_len = 0, zv_len = 0;
	unsigned char *bm = udfs_xcalloc(bm_len + nnz + 1, 1), *vals, *buf;
	void *zb = NULL, *zv = NULL;
	int err;

	vals = bm + bm_len;
	sparse_split(p, m, bm, vals);
	err = udfs_zstd_compress(bm, bm_len, level, &zb, &zb_len);
	if (!err)
		err = udfs_zstd_compress(vals, nnz, level, &zv, &zv_len);
	if (!err) {
		buf = udfs_xmalloc(4 + zb_len + zv_len);
		put_u32(buf, zb_len);
		memcpy(buf + 4, zb, zb_len);
		memcpy(buf + 4 + zb_len, zv, zv_len);
		*out = buf;
		*out_len = 4 + zb_len + zv_len;
	}
	free(bm);
	free(zb);
	free(zv);
	return err;
}

/*
 * Expand the nonzero bytes vals into dst by the bitmap bm, 64 bytes a
 * group for the first groups * 64 bytes; the number of values used.
 * vals must have 64 readable bytes past the last value used.
 */
static size_t expand_groups(const unsigned char *bm, const unsigned char *vals,
			    size_t groups, unsigned char *dst)
{
	size_t j = 0;

	for (size_t g = 0; g < groups; g++) {
		uint64_t w;

		memcpy(&w, bm + 8 * g, 8);
		w = le64toh(w);
		memset(dst + 64 * g, 0, 64);
		for (; w; w &= w - 1)
			dst[64 * g + (size_t)__builtin_ctzll(w)] = vals[j++];
	}
	return j;
}

#ifdef UDFS_SIMD_X86
__attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt"))) static size_t
expand_groups_vbmi2(const unsigned char *bm, const unsigned char *vals,
		    size_t groups, unsigned char *dst)
{
	size_t j = 0;

	for (size_t g = 0; g < groups; g++) {
		uint64_t w;
		__m512i v;

		memcpy(&w, bm + 8 * g, 8);
		v = _mm512_maskz_expand_epi8(w, _mm512_loadu_si512(vals + j));
		_mm512_storeu_si512(dst + 64 * g, v);
		j += (size_t)__builtin_popcountll(w);
	}
	return j;
}

#endif

/* The number of set bits in the first words 64-bit words of bm. */
UDFS_CLONES static size_t bitmap_count(const unsigned char *bm, size_t words)
{
	size_t n = 0;

	for (size_t w = 0; w < words; w++) {
		uint64_t x;

		memcpy(&x, bm + 8 * w, 8);
		n += (size_t)__builtin_popcountll(x);
	}
	return n;
}

/* Decode a sparse plane payload of len bytes into dst (m bytes). */
static int sparse_decode(const unsigned char *in, size_t len,
			 unsigned char *dst, size_t m)
{
	size_t bm_len = (m + 7) / 8, words = (bm_len + 7) / 8, zb_len, nnz, j,
	       i;
	unsigned char *bm, *vals;
	int err;

	if (len < 4 || (zb_len = get_u32(in)) > len - 4)
		return udfs_error(-EIO, "plane chunk: bad sparse plane");
	/* The bitmap padded to whole words, then the values and 64 bytes
	 * that a vector load may read past them. */
	bm = udfs_scratch(UDFS_SCRATCH_SPARSE, 8 * words + m + 64);
	if (!bm)
		return -ENOMEM;
	err = udfs_zstd_decompress(in + 4, zb_len, bm, bm_len);
	if (err)
		return err;
	memset(bm + bm_len, 0, 8 * words - bm_len);
	if (m % 8 && bm[m / 8] >> (m % 8))
		return udfs_error(-EIO,
				  "plane chunk: sparse bits past the end");
	nnz = bitmap_count(bm, words);
	vals = bm + 8 * words;
	err =
	    udfs_zstd_decompress(in + 4 + zb_len, len - 4 - zb_len, vals, nnz);
	if (err)
		return err;
	memset(vals + nnz, 0, 64);
#ifdef UDFS_SIMD_X86
	if (udfs_simd_vbmi2())
		j = expand_groups_vbmi2(bm, vals, m / 64, dst);
	else
#endif
		j = expand_groups(bm, vals, m / 64, dst);
	for (i = m / 64 * 64; i < m; i++)
		dst[i] = bm[i / 8] >> (i % 8) & 1 ? vals[j++] : 0;
	return 0;
}

/*
 * Nibble planes (kind 4). The mantissa plane of a BF16 delta holds about
 * 6.5 bits a byte: its low four bits are random, its high four about 2.6.
 * zstd codes the whole byte as Huffman literals; coding only the high
 * nibbles, two to a byte, and storing the low ones packed costs under 1%
 * more and halves the work of that plane's decoder (bench/SPEED.md,
 * session 28). Element 2j is the low half of byte j in both halves.
 */
enum { NIBBLE_MIN = 4096 }; /* smaller planes keep one frame */

/* Pack the low (shift 0) or high (shift 4) nibbles of p, two to a byte. */
UDFS_CLONES static void nibble_pack(const unsigned char *p, size_t m,
				    unsigned shift, unsigned char *out)
{
	for (size_t j = 0; j < m / 2; j++)
		out[j] = (unsigned char)((p[2 * j] >> shift & 15) |
					 (p[2 * j + 1] >> shift & 15) << 4);
	if (m % 2)
		out[m / 2] = (unsigned char)(p[m - 1] >> shift & 15);
}

/* The plane from its packed low and high nibbles: each pair of bytes is
 * one 16-bit word, so that the loop vectorizes. */
static inline __attribute__((always_inline)) void
nibble_join_run(const unsigned char *restrict lo,
		const unsigned char *restrict hi, size_t from, size_t n,
		unsigned char *restrict dst)
{
	for (size_t j = from; j < from + n; j++) {
		uint16_t l = lo[j], h = hi[j],
			 v = (uint16_t)((l & 0x0f) | (h & 0x0f) << 4 |
					(l & 0xf0) << 4 | (h & 0xf0) << 8);

		v = htole16(v);
		memcpy(dst + 2 * j, &v, 2);
	}
}

UDFS_CLONES static void nibble_join(const unsigned char *lo,
				    const unsigned char *hi, size_t m,
				    unsigned char *dst)
{
	size_t j = 0;

	for (; j + BLOCK <= m / 2; j += BLOCK)
		nibble_join_run(lo, hi, j, BLOCK, dst);
	nibble_join_run(lo, hi, j, m / 2 - j, dst);
	if (m % 2)
		dst[m - 1] = (unsigned char)(lo[m / 2] | hi[m / 2] << 4);
}

/* Whether the low nibbles of p look random: an order-0 entropy of at
 * least 3.97 bits over every fourth byte, so that storing them costs at
 * most about 1% more than any coder could. Spares the trial encoding of
 * planes where they are not. */
static bool low_nibbles_random(const unsigned char *p, size_t m)
{
	size_t count[16] = {0}, n = 0;
	double h = 0;

	for (size_t i = 0; i < m; i += 4, n++)
		count[p[i] & 15]++;
	for (unsigned k = 0; k < 16; k++)
		if (count[k]) {
			double q = (double)count[k] / (double)n;

			h -= q * log2(q);
		}
	return h >= 3.97;
}

/* A plane of m bytes as a nibble plane payload (malloc-ed into *out): u32
 * length of the high nibbles' zstd frame, that frame, the low nibbles. */
static int nibble_encode(const unsigned char *p, size_t m, int level,
			 void **out, size_t *out_len)
{
	size_t half = (m + 1) / 2, z_len = 0;
	unsigned char *hi = udfs_xmalloc(half), *buf;
	void *z = NULL;
	int err;

	nibble_pack(p, m, 4, hi);
	err = udfs_zstd_compress(hi, half, level, &z, &z_len);
	free(hi);
	if (err)
		return err;
	buf = udfs_xmalloc(4 + z_len + half);
	put_u32(buf, z_len);
	memcpy(buf + 4, z, z_len);
	nibble_pack(p, m, 0, buf + 4 + z_len);
	free(z);
	*out = buf;
	*out_len = 4 + z_len + half;
	return 0;
}

/* Decode a nibble plane payload of len bytes into dst (m bytes). */
static int nibble_decode(const unsigned char *in, size_t len,
			 unsigned char *dst, size_t m)
{
	size_t half = (m + 1) / 2, z_len;
	const unsigned char *lo;
	unsigned char *hi;
	int err;

	if (len < 4 || (z_len = get_u32(in)) > len - 4 ||
	    len - 4 - z_len != half)
		return udfs_error(-EIO, "plane chunk: bad nibble plane");
	/* The sparse plane's scratch: one plane is decoded at a time. */
	hi = udfs_scratch(UDFS_SCRATCH_SPARSE, half);
	if (!hi)
		return -ENOMEM;
	err = udfs_zstd_decompress(in + 4, z_len, hi, half);
	if (err)
		return err;
	lo = in + 4 + z_len;
	if (m % 2 && (lo[half - 1] | hi[half - 1]) >> 4)
		return udfs_error(-EIO, "plane chunk: nibbles past the end");
	nibble_join(lo, hi, m, dst);
	return 0;
}

/* Replace a zstd plane payload (*out, *len) with a nibble plane where that
 * costs at most 1% more. */
static int try_nibbles(const unsigned char *p, size_t m, int level,
		       unsigned char *kind, void **out, size_t *len)
{
	void *nb = NULL;
	size_t nb_len = 0;
	int err;

	if (m < NIBBLE_MIN || !low_nibbles_random(p, m))
		return 0;
	err = nibble_encode(p, m, level, &nb, &nb_len);
	if (err)
		return err;
	if (nb_len <= *len + *len / 100) {
		free(*out);
		*out = nb;
		*len = nb_len;
		*kind = PLANE_NIBBLES;
	} else {
		free(nb);
	}
	return 0;
}

/*
 * One plane's payload (*out malloc-ed, NULL for a zero or stored plane):
 * the smallest of those tried. A sparse plane decodes fastest; with at
 * most an eighth of its bytes nonzero it is taken without trying zstd,
 * which is smaller only where the nonzero bytes cluster, and there the
 * bitmap compresses too.
 */
static int encode_plane(const unsigned char *p, size_t m, int level,
			unsigned char *kind, void **out, size_t *len)
{
	size_t nnz = count_nonzero(p, m), z_len = 0;
	void *z = NULL;
	int err;

	*out = NULL;
	*len = 0;
	*kind = PLANE_ZERO;
	if (!nnz)
		return 0;
	if (nnz <= m / 2) {
		err = sparse_encode(p, m, nnz, level, out, len);
		if (err)
			return err;
		*kind = PLANE_SPARSE;
		if (nnz <= m / 8 && *len < m)
			return 0;
	}
	err = udfs_zstd_compress(p, m, level, &z, &z_len);
	if (err) {
		free(*out);
		*out = NULL;
		return err;
	}
	if (*out && *len <= UDFS_MIN(z_len, m)) {
		free(z);
	} else if (z_len < m) {
		free(*out);
		*out = z;
		*len = z_len;
		*kind = PLANE_ZSTD;
		return try_nibbles(p, m, level, kind, out, len);
	} else {
		free(*out);
		free(z);
		*out = NULL;
		*len = m;
		*kind = PLANE_STORED;
	}
	return 0;
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
		err = encode_plane(planes + (size_t)k * m, m, level, &kind[k],
				   &part[k], &part_len[k]);
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
		put_u32(d + 1, part_len[k]);
		if (kind[k] == PLANE_ZSTD || kind[k] == PLANE_SPARSE ||
		    kind[k] == PLANE_NIBBLES)
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
	return get_u32(chunk + 2 + 5 * (es - 1) + 1);
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
		size_t len = get_u32(d + 1);
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
		case PLANE_SPARSE:
			err = sparse_decode(p + pos, len, dst, m);
			break;
		case PLANE_NIBBLES:
			err = nibble_decode(p + pos, len, dst, m);
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

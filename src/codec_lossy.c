// SPDX-License-Identifier: MIT
/*
 * Lossy chunk codec (DESIGN 4.2, 4.3): the seeded keep-mask and the chunk
 * format holding the kept positions and the values of the kept elements of
 * one chunk, and the bit-exact reconstruction W = W_base + gain * value.
 *
 * A chunk is a 16-byte header and two sections:
 *
 *   off  0  u8   format version (1)
 *   off  1  u8   mask format: 0 none (UDFS_MASK_NONE, UDFS_MASK_SEEDED),
 *                1 Rice-coded gaps, 2 zstd bitmap, 3 raw bitmap
 *   off  2  u8   value format: 0 raw (packed bits, or byte planes),
 *                1 zstd (of code bytes, packed sign bits, or byte planes),
 *                2 zstd of packed b-bit codes
 *   off  3  u8   Rice parameter k (mask format 1), else 0
 *   off  4  u32  n_kept, little endian
 *   off  8  u32  mask section length
 *   off 12  u32  value section length; 16 + both lengths == chunk length
 *
 * Gaps: gap 0 is the first kept index, gap j the number of dropped
 * elements between kept j-1 and kept j; each is coded Rice(k) as
 * (gap >> k) zero bits, a one bit, then the k low bits, LSB-first, with the
 * k in 0..20 that gives the fewest bits. Bitmaps have bit i set when
 * element i is kept. Packed values are LSB-first b-bit fields. Byte planes
 * of NATIVE values put byte k of every kept element together. The encoder
 * writes whichever of the candidate formats is smallest in real bytes.
 *
 * Decoding validates every count, length and index against the chunk
 * bounds and fails with -EIO on any inconsistency. This and codec.c are the
 * only files that include <zstd.h>.
 */
#include "udfs/lossy.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "bitio_i.h"
#include "udfs/dtype.h"
#include "udfs/util.h"

#define LOSSY_VERSION 1
#define HDR_LEN 16
#define RICE_KMAX 20
/* Values of kept elements are noise to LZ; what zstd brings here is its
 * Huffman stage. Measured on 4-bit codes of Laplace deltas (entropy 1.76
 * bits): level 1 gives 1.80 bits per code, level 3 1.92, level 9 2.00,
 * level 19 1.75, and encodes a 1 MiB BF16 chunk at s = 0.9 at ~500 MB/s of
 * source against ~30-60 MB/s for level 19. */
#ifndef LOSSY_ZSTD_LEVEL
#define LOSSY_ZSTD_LEVEL 1
#endif

enum { MF_NONE = 0, MF_RICE = 1, MF_ZBITMAP = 2, MF_BITMAP = 3 };
enum { VF_RAW = 0, VF_ZSTD = 1, VF_ZPACKED = 2 };

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t udfs_seeded_threshold(double rate)
{
	if (!(rate > 0.0))
		rate = 0.0;
	if (rate > 1.0)
		rate = 1.0;
	/* The only floating-point step; exact IEEE arithmetic, so the same
	 * threshold on every machine. */
	return (uint64_t)llround((1.0 - rate) * 9007199254740992.0);
}

/* Element idx draws output idx of a splitmix64 stream whose state starts
 * at seed: one multiply-xorshift finalizer per element, and the stream
 * passes BigCrush. */
bool udfs_seeded_keep(uint64_t seed, uint64_t idx, uint64_t threshold)
{
	uint64_t h = mix64(seed + (idx + 1) * 0x9e3779b97f4a7c15ULL);

	return (h >> 11) < threshold;
}

uint64_t udfs_seeded_key(uint64_t model_seed, const char *tensor_name)
{
	return mix64(model_seed ^ udfs_hash_str(tensor_name));
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* zstd of one buffer into a malloc-ed *out. */
static int zc(const void *in, size_t n, uint8_t **out, size_t *out_len)
{
	size_t cap = ZSTD_compressBound(n), r;
	uint8_t *buf = udfs_xmalloc(cap);

	r = ZSTD_compress(buf, cap, in, n, LOSSY_ZSTD_LEVEL);
	if (ZSTD_isError(r)) {
		free(buf);
		return udfs_error(-EIO, "lossy chunk: zstd: %s",
				  ZSTD_getErrorName(r));
	}
	*out = buf;
	*out_len = r;
	return 0;
}

/* Decompress exactly n bytes; anything else is a corrupt chunk. */
static int zd(const void *in, size_t in_len, void *out, size_t n)
{
	size_t r = ZSTD_decompress(out, n, in, in_len);

	if (ZSTD_isError(r))
		return udfs_error(-EIO, "lossy chunk: zstd: %s",
				  ZSTD_getErrorName(r));
	if (r != n)
		return udfs_error(-EIO, "lossy chunk: %zu bytes instead of %zu",
				  r, n);
	return 0;
}

/* Pack n values of nb bits LSB-first into a malloc-ed buffer. */
static uint8_t *pack(const uint8_t *v, size_t n, unsigned nb, size_t *len)
{
	size_t bytes = (n * nb + 7) / 8;
	uint8_t *buf = udfs_xmalloc(bytes + 8);
	struct bitw w;

	bitw_init(&w, buf);
	for (size_t i = 0; i < n; i++)
		bitw_put(&w, v[i], nb);
	*len = bitw_finish(&w);
	return buf;
}

static int unpack(const uint8_t *in, size_t len, size_t n, unsigned nb,
		  uint8_t *v)
{
	struct bitr r;
	uint32_t x;

	if (len != (n * nb + 7) / 8)
		return udfs_error(-EIO,
				  "lossy chunk: packed values: %zu bytes "
				  "for %zu values",
				  len, n);
	bitr_init(&r, in, len);
	for (size_t i = 0; i < n; i++) {
		if (!bitr_get(&r, nb, &x))
			return udfs_error(-EIO, "lossy chunk: packed values "
						"truncated");
		v[i] = (uint8_t)x;
	}
	return 0;
}

static int check_params(const udfs_lossy_params *p, int dtype, int err)
{
	if (dtype != UDFS_DT_F16 && dtype != UDFS_DT_BF16 &&
	    dtype != UDFS_DT_F32)
		return udfs_error(-EINVAL,
				  "lossy chunk: dtype %s not supported",
				  udfs_dtype_name(dtype));
	if (p->mask > UDFS_MASK_SEEDED)
		return udfs_error(err, "lossy chunk: mask kind %u", p->mask);
	if (p->values > UDFS_VAL_SIGN)
		return udfs_error(err, "lossy chunk: value kind %u", p->values);
	if (p->values == UDFS_VAL_CODES && (p->bits < 1 || p->bits > 8))
		return udfs_error(err, "lossy chunk: %u code bits", p->bits);
	return 0;
}

/* Rice cost in bits of the gaps with parameter k, for every k. */
static unsigned best_rice_k(const uint32_t *gaps, uint32_t n, uint64_t *bits)
{
	uint64_t sum[RICE_KMAX + 1] = {0};
	unsigned best = 0;

	for (uint32_t j = 0; j < n; j++)
		for (unsigned k = 0; k <= RICE_KMAX; k++)
			sum[k] += gaps[j] >> k;
	for (unsigned k = 0; k <= RICE_KMAX; k++) {
		sum[k] += (uint64_t)n * (k + 1);
		if (sum[k] < sum[best])
			best = k;
	}
	*bits = sum[best];
	return best;
}

/* Mask section of an explicit mask: the smallest of Rice gaps, a raw
 * bitmap and a zstd bitmap. */
static int encode_mask(uint32_t n, const uint32_t *kept, uint32_t n_kept,
		       uint8_t **out, size_t *len, uint8_t *fmt, uint8_t *k)
{
	uint32_t *gaps = udfs_xmalloc(((size_t)n_kept + 1) * sizeof(*gaps));
	uint8_t *bitmap = NULL, *z = NULL, *rice;
	size_t rice_len, bm_len = ((size_t)n + 7) / 8, z_len;
	uint64_t bits;
	struct bitw w;
	int ret;

	for (uint32_t j = 0; j < n_kept; j++)
		gaps[j] = kept[j] - (j ? kept[j - 1] + 1 : 0);
	*k = (uint8_t)best_rice_k(gaps, n_kept, &bits);
	rice_len = (bits + 7) / 8;
	rice = udfs_xmalloc(rice_len + 8);
	bitw_init(&w, rice);
	for (uint32_t j = 0; j < n_kept; j++) {
		bitw_unary(&w, gaps[j] >> *k);
		bitw_put(&w, gaps[j] & ((1u << *k) - 1), *k);
	}
	bitw_finish(&w);
	free(gaps);
	*out = rice;
	*len = rice_len;
	*fmt = MF_RICE;
	/* At high density a bitmap beats gaps; only then is it worth a try. */
	if (rice_len * 4 < bm_len)
		return 0;
	bitmap = udfs_xcalloc(bm_len + 1, 1);
	for (uint32_t j = 0; j < n_kept; j++)
		bitmap[kept[j] / 8] |= (uint8_t)(1u << (kept[j] % 8));
	ret = zc(bitmap, bm_len, &z, &z_len);
	if (ret < 0)
		goto out;
	if (z_len < *len && z_len < bm_len) {
		free(*out);
		*out = z;
		*len = z_len;
		*fmt = MF_ZBITMAP;
		z = NULL;
	} else if (bm_len < *len) {
		free(*out);
		*out = bitmap;
		*len = bm_len;
		*fmt = MF_BITMAP;
		bitmap = NULL;
	}
	*k = *fmt == MF_RICE ? *k : 0;
out:
	free(z);
	free(bitmap);
	return ret;
}

/* Take cand as the value section if it is smaller than the current one. */
static void take(uint8_t **out, size_t *len, uint8_t *fmt, uint8_t *cand,
		 size_t cand_len, uint8_t cand_fmt)
{
	if (*out && *len <= cand_len) {
		free(cand);
		return;
	}
	free(*out);
	*out = cand;
	*len = cand_len;
	*fmt = cand_fmt;
}

static int encode_values(const udfs_lossy_params *p, unsigned es,
			 uint32_t n_kept, const void *vals, uint8_t **out,
			 size_t *len, uint8_t *fmt)
{
	const uint8_t *v = vals;
	uint8_t *raw = NULL, *z = NULL, *zp = NULL, *planes = NULL;
	size_t raw_len = 0, z_len = 0, zp_len = 0;
	int ret = 0;

	*out = NULL;
	*len = 0;
	*fmt = VF_RAW;
	if (n_kept == 0)
		return 0;
	switch (p->values) {
	case UDFS_VAL_CODES:
		for (uint32_t j = 0; j < n_kept; j++)
			if (v[j] >> p->bits)
				return udfs_error(-EINVAL,
						  "lossy chunk: code "
						  "%u above %u bits",
						  v[j], p->bits);
		raw = pack(v, n_kept, p->bits, &raw_len);
		ret = zc(v, n_kept, &z, &z_len);
		if (ret == 0 && p->bits < 8)
			ret = zc(raw, raw_len, &zp, &zp_len);
		take(out, len, fmt, raw, raw_len, VF_RAW);
		if (z)
			take(out, len, fmt, z, z_len, VF_ZSTD);
		if (zp)
			take(out, len, fmt, zp, zp_len, VF_ZPACKED);
		break;
	case UDFS_VAL_SIGN:
		for (uint32_t j = 0; j < n_kept; j++)
			if (v[j] > 1)
				return udfs_error(-EINVAL,
						  "lossy chunk: sign "
						  "value %u",
						  v[j]);
		raw = pack(v, n_kept, 1, &raw_len);
		take(out, len, fmt, raw, raw_len, VF_RAW);
		ret = zc(raw, raw_len, &z, &z_len);
		if (ret < 0)
			break;
		take(out, len, fmt, z, z_len, VF_ZSTD);
		break;
	default: /* UDFS_VAL_NATIVE */
		raw_len = (size_t)n_kept * es;
		planes = udfs_xmalloc(raw_len);
		for (uint32_t j = 0; j < n_kept; j++)
			for (unsigned b = 0; b < es; b++)
				planes[(size_t)b * n_kept + j] =
				    v[(size_t)j * es + b];
		ret = zc(planes, raw_len, &z, &z_len);
		if (ret < 0) {
			free(planes);
			break;
		}
		take(out, len, fmt, planes, raw_len, VF_RAW);
		take(out, len, fmt, z, z_len, VF_ZSTD);
		break;
	}
	if (ret < 0) {
		free(*out);
		*out = NULL;
	}
	return ret;
}

int udfs_lossy_encode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const uint32_t *kept,
			    uint32_t n_kept, const void *vals, void **out,
			    size_t *out_len)
{
	uint8_t *mask = NULL, *val = NULL, *buf, mfmt = MF_NONE, vfmt, k = 0;
	size_t mask_len = 0, val_len = 0;
	unsigned es = udfs_dtype_size(dtype);
	int ret;

	ret = check_params(p, dtype, -EINVAL);
	if (ret < 0)
		return ret;
	if (n_kept > n)
		return udfs_error(-EINVAL, "lossy chunk: %u kept of %u", n_kept,
				  n);
	if (p->mask == UDFS_MASK_NONE && n_kept != n)
		return udfs_error(-EINVAL,
				  "lossy chunk: %u kept of %u "
				  "without a mask",
				  n_kept, n);
	if (p->mask != UDFS_MASK_NONE && kept) {
		for (uint32_t j = 0; j < n_kept; j++)
			if (kept[j] >= n || (j && kept[j] <= kept[j - 1]))
				return udfs_error(-EINVAL,
						  "lossy chunk: kept "
						  "index %u out of order",
						  j);
	}
	if (p->mask == UDFS_MASK_SEEDED) {
		/* The decoder regenerates the mask; what is stored must be
		 * the seeded one exactly. */
		uint64_t thr = udfs_seeded_threshold(p->rate);
		uint32_t cnt = 0;

		for (uint32_t i = 0; i < n; i++) {
			if (!udfs_seeded_keep(p->seed, first + i, thr))
				continue;
			if (cnt >= n_kept || (kept && kept[cnt] != i))
				return udfs_error(-EINVAL,
						  "lossy chunk: kept "
						  "positions differ from the "
						  "seeded mask");
			cnt++;
		}
		if (cnt != n_kept)
			return udfs_error(-EINVAL,
					  "lossy chunk: kept "
					  "positions differ from the seeded "
					  "mask");
	}
	if (p->mask == UDFS_MASK_EXPLICIT) {
		if (!kept && n_kept)
			return udfs_error(-EINVAL, "lossy chunk: no positions");
		ret = encode_mask(n, kept, n_kept, &mask, &mask_len, &mfmt, &k);
		if (ret < 0)
			goto out;
	}
	ret = encode_values(p, es, n_kept, vals, &val, &val_len, &vfmt);
	if (ret < 0)
		goto out;

	buf = udfs_xmalloc(HDR_LEN + mask_len + val_len);
	buf[0] = LOSSY_VERSION;
	buf[1] = mfmt;
	buf[2] = vfmt;
	buf[3] = k;
	put_u32(buf + 4, n_kept);
	put_u32(buf + 8, (uint32_t)mask_len);
	put_u32(buf + 12, (uint32_t)val_len);
	if (mask_len)
		memcpy(buf + HDR_LEN, mask, mask_len);
	if (val_len)
		memcpy(buf + HDR_LEN + mask_len, val, val_len);
	*out = buf;
	*out_len = HDR_LEN + mask_len + val_len;
out:
	free(val);
	free(mask);
	return ret;
}

static int decode_rice(const uint8_t *in, size_t len, unsigned k, uint32_t n,
		       uint32_t n_kept, uint32_t *pos)
{
	struct bitr r;
	uint64_t next = 0, q;
	uint32_t low;

	bitr_init(&r, in, len);
	for (uint32_t j = 0; j < n_kept; j++) {
		if (!bitr_unary(&r, n, &q) || !bitr_get(&r, k, &low))
			return udfs_error(-EIO,
					  "lossy chunk: gap %u of %u "
					  "truncated",
					  j, n_kept);
		next += (q << k) | low;
		if (next >= n)
			return udfs_error(-EIO,
					  "lossy chunk: gap %u beyond "
					  "the %u elements",
					  j, n);
		pos[j] = (uint32_t)next++;
	}
	return 0;
}

static int decode_bitmap(const uint8_t *bm, uint32_t n, uint32_t n_kept,
			 uint32_t *pos)
{
	uint32_t cnt = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (!(bm[i / 8] >> (i % 8) & 1))
			continue;
		if (cnt == n_kept)
			return udfs_error(-EIO,
					  "lossy chunk: bitmap holds "
					  "more than %u kept",
					  n_kept);
		pos[cnt++] = i;
	}
	if (cnt != n_kept || (n % 8 && bm[n / 8] >> (n % 8)))
		return udfs_error(-EIO,
				  "lossy chunk: bitmap does not match "
				  "%u kept",
				  n_kept);
	return 0;
}

static int decode_mask(const udfs_lossy_params *p, const uint8_t *hdr,
		       const uint8_t *in, size_t len, uint64_t first,
		       uint32_t n, uint32_t n_kept, uint32_t *pos)
{
	size_t bm_len = ((size_t)n + 7) / 8;
	uint8_t *bm = NULL;
	int ret;

	if (p->mask == UDFS_MASK_SEEDED) {
		uint64_t thr = udfs_seeded_threshold(p->rate);
		uint32_t cnt = 0;

		/* Branch-free: pos has n_kept + 1 entries, so the write at
		 * pos[n_kept] before the check below is in bounds. */
		for (uint32_t i = 0; i < n; i++) {
			pos[cnt] = i;
			cnt += udfs_seeded_keep(p->seed, first + i, thr);
			if (cnt > n_kept)
				return udfs_error(-EIO,
						  "lossy chunk: seeded "
						  "mask keeps more than %u",
						  n_kept);
		}
		if (cnt != n_kept)
			return udfs_error(-EIO,
					  "lossy chunk: seeded mask "
					  "keeps %u, chunk holds %u",
					  cnt, n_kept);
		return 0;
	}
	switch (hdr[1]) {
	case MF_RICE:
		if (hdr[3] > RICE_KMAX)
			return udfs_error(-EIO, "lossy chunk: Rice k %u",
					  hdr[3]);
		return decode_rice(in, len, hdr[3], n, n_kept, pos);
	case MF_BITMAP:
		if (len != bm_len)
			return udfs_error(-EIO,
					  "lossy chunk: bitmap of %zu "
					  "bytes",
					  len);
		return decode_bitmap(in, n, n_kept, pos);
	case MF_ZBITMAP:
		bm = udfs_xmalloc(bm_len + 1);
		ret = zd(in, len, bm, bm_len);
		if (ret == 0)
			ret = decode_bitmap(bm, n, n_kept, pos);
		free(bm);
		return ret;
	default:
		return udfs_error(-EIO, "lossy chunk: mask format %u", hdr[1]);
	}
}

/* The per-element deltas gain * value(j) of the kept elements, in the
 * order of the reconstruction formula. */
static int decode_values(const udfs_lossy_params *p, int dtype, unsigned vf,
			 const uint8_t *in, size_t len, uint32_t n_kept,
			 float *d)
{
	unsigned es = udfs_dtype_size(dtype), nb;
	size_t raw_len;
	uint8_t *v = NULL, *tmp = NULL;
	float lut[256];
	int ret = -EIO;

	if (n_kept == 0) {
		if (len || vf != VF_RAW)
			return udfs_error(-EIO, "lossy chunk: values for no "
						"kept element");
		return 0;
	}
	nb = p->values == UDFS_VAL_CODES ? p->bits : 1;
	raw_len = p->values == UDFS_VAL_NATIVE ? (size_t)n_kept * es
					       : ((size_t)n_kept * nb + 7) / 8;
	v = udfs_xmalloc(p->values == UDFS_VAL_NATIVE ? raw_len : n_kept);
	if (p->values == UDFS_VAL_NATIVE) {
		if (vf == VF_RAW && len == raw_len)
			memcpy(v, in, raw_len);
		else if (vf != VF_ZSTD || zd(in, len, v, raw_len) < 0)
			goto bad;
		for (uint32_t j = 0; j < n_kept; j++) {
			uint8_t e[4];

			for (unsigned b = 0; b < es; b++)
				e[b] = v[(size_t)b * n_kept + j];
			float q = udfs_dtype_load_f32(dtype, e, 0);

			d[j] = p->gain * q;
		}
		ret = 0;
		goto out;
	}

	if (vf == VF_RAW) {
		if (unpack(in, len, n_kept, nb, v) < 0)
			goto bad;
	} else if (vf == VF_ZSTD && p->values == UDFS_VAL_CODES) {
		if (zd(in, len, v, n_kept) < 0)
			goto bad;
	} else if (vf == VF_ZSTD || vf == VF_ZPACKED) {
		if (vf == VF_ZPACKED && p->values != UDFS_VAL_CODES)
			goto bad;
		tmp = udfs_xmalloc(raw_len);
		if (zd(in, len, tmp, raw_len) < 0 ||
		    unpack(tmp, raw_len, n_kept, nb, v) < 0)
			goto bad;
	} else {
		goto bad;
	}
	if (p->values == UDFS_VAL_CODES) {
		for (unsigned c = 0; c < 256; c++) {
			float q = p->lo + (float)c * p->step;

			lut[c] = p->gain * q;
		}
		for (uint32_t j = 0; j < n_kept; j++) {
			if (v[j] >> nb) {
				udfs_error(-EIO,
					   "lossy chunk: code %u above "
					   "%u bits",
					   v[j], nb);
				goto bad;
			}
			d[j] = lut[v[j]];
		}
	} else {
		lut[0] = p->gain * p->step;
		lut[1] = p->gain * -p->step;
		for (uint32_t j = 0; j < n_kept; j++)
			d[j] = lut[v[j] & 1];
	}
	ret = 0;
	goto out;
bad:
	ret = udfs_error(-EIO,
			 "lossy chunk: bad value section (format %u, "
			 "%zu bytes)",
			 vf, len);
out:
	free(tmp);
	free(v);
	return ret;
}

int udfs_lossy_decode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const void *in,
			    size_t in_len, const void *base, void *out)
{
	const uint8_t *hdr = in;
	uint32_t n_kept, mask_len, val_len, *pos = NULL;
	unsigned es = udfs_dtype_size(dtype);
	float *d = NULL;
	int ret;

	ret = check_params(p, dtype, -EIO);
	if (ret < 0)
		return ret;
	if (in_len < HDR_LEN)
		return udfs_error(-EIO, "lossy chunk: %zu bytes, no header",
				  in_len);
	if (hdr[0] != LOSSY_VERSION)
		return udfs_error(-EIO, "lossy chunk: format version %u",
				  hdr[0]);
	n_kept = get_u32(hdr + 4);
	mask_len = get_u32(hdr + 8);
	val_len = get_u32(hdr + 12);
	if (n_kept > n)
		return udfs_error(-EIO, "lossy chunk: %u kept of %u", n_kept,
				  n);
	if ((uint64_t)HDR_LEN + mask_len + val_len != in_len)
		return udfs_error(-EIO,
				  "lossy chunk: sections of %u + %u "
				  "bytes in %zu",
				  mask_len, val_len, in_len);
	if ((p->mask == UDFS_MASK_EXPLICIT) != (hdr[1] != MF_NONE) ||
	    (hdr[1] == MF_NONE && (mask_len || hdr[3])))
		return udfs_error(-EIO,
				  "lossy chunk: mask format %u for "
				  "mask kind %u",
				  hdr[1], p->mask);
	if (p->mask == UDFS_MASK_NONE && n_kept != n)
		return udfs_error(-EIO,
				  "lossy chunk: %u kept of %u without "
				  "a mask",
				  n_kept, n);

	d = udfs_xmalloc(((size_t)n_kept + 1) * sizeof(*d));
	ret = decode_values(p, dtype, hdr[2], hdr + HDR_LEN + mask_len, val_len,
			    n_kept, d);
	if (ret < 0)
		goto out;
	if (p->mask != UDFS_MASK_NONE) {
		pos = udfs_xmalloc(((size_t)n_kept + 1) * sizeof(*pos));
		ret = decode_mask(p, hdr, hdr + HDR_LEN, mask_len, first, n,
				  n_kept, pos);
		if (ret < 0)
			goto out;
	}

	/* Dropped elements keep the base bits exactly (NaN payloads too). */
	if (out != base)
		memcpy(out, base, (size_t)n * es);
	for (uint32_t j = 0; j < n_kept; j++) {
		uint32_t i = pos ? pos[j] : j;
		float b = udfs_dtype_load_f32(dtype, base, i);
		float w = b + d[j];

		udfs_dtype_store_f32(dtype, out, i, w);
	}
out:
	free(pos);
	free(d);
	return ret;
}

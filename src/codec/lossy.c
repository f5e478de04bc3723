// SPDX-License-Identifier: MIT
/*
 * Lossy chunk codec (udfs(5), "Lossy chunk"): the seeded keep-mask and the
 * chunk format holding the kept positions and the values of the kept elements
 * of one chunk, and the bit-exact reconstruction W = W_base + gain * value.
 *
 * A chunk is a small header, a mask section and a value section:
 *
 *   u8      bits 6-7 format version (1), bits 3-5 value format,
 *           bits 0-2 mask format
 *   varint  n_kept              } UDFS_MASK_EXPLICIT only: n_kept is n
 *   varint  mask section length } for UDFS_MASK_NONE and the count of the
 *                                 regenerated mask for UDFS_MASK_SEEDED
 *   varint  value section length; the header and both sections are the
 *           whole chunk, so a truncated chunk is always rejected
 *   mask section (UDFS_MASK_EXPLICIT only)
 *   value section
 *
 * Varints are LEB128 (7 bits a byte, low first, at most 5 bytes, no
 * redundant zero byte at the end).
 *
 * Mask formats: 0 none (UDFS_MASK_NONE; UDFS_MASK_SEEDED drawn by the
 * per-element rule, written by earlier versions), 1 Rice-coded gaps, 2
 * zstd bitmap, 3 raw bitmap, 4 range-coded gaps, 5 none (UDFS_MASK_SEEDED
 * drawn by levels, common/prng.h, written now). Gap 0 is the first
 * kept index, gap j the number of dropped elements between kept j-1 and
 * kept j. Rice: a byte k (0..20), then per gap (gap >> k) zero bits, a one
 * bit and the k low bits, LSB-first, with the k that gives the fewest
 * bits. Bitmaps have bit i set when element i is kept. Range-coded gaps:
 * x = gap + 1 in the adaptive Elias-gamma model below, bounded by the
 * number of elements left.
 *
 * Value formats: 0 raw (packed LSB-first b-bit codes, sign bits or the
 * path bits of trellis values, the only format of those: codec/trellis.h;
 * byte planes of NATIVE values: byte k of every kept element together),
 * 1 zstd (of code bytes, packed sign bits, or byte planes), 2 zstd of
 * packed b-bit codes, 3 range-coded codes or signs, 4 rANS-coded codes
 * (static rANS, two interleaved states, a per-chunk table of 12-bit code
 * frequencies; written by earlier versions), 5 rANS-coded codes in four
 * lanes with a stream each, 6 the same in 32 lanes (written by earlier
 * versions), 7 32 lanes in four streams, for sections of RANS32_MIN codes
 * or more (codec/rans.h gives the layouts).
 *
 * Range coding (common/rangecoder.h: adaptive binary LZMA coder, no table to
 * transmit). Elias-gamma model of an integer 1 <= x <= max: the bucket
 * e = floor(log2 x) in unary, a decision "e > j" per j with its own
 * probability, skipped once 2^(j+1) > max; then the e bits of x below its
 * leading one, high first, the first two with a probability per (e,
 * prefix), the others per (e, bit position). A code c is coded around
 * z = rint(-lo / step) clamped to 0..2^b-1 (the code of a zero delta, where
 * min-max codes of deltas concentrate): one decision c != z, one sign
 * decision when both sides are possible, then |c - z| in the Elias-gamma
 * model bounded by the room on that side; the two sides share the
 * magnitude probabilities. Initial probabilities are the typical shape of
 * 4-bit min-max codes of fine-tuning deltas (measured on the stories260K
 * fine-tunes), shifted by b - 4 buckets for other widths; for gaps they
 * follow the density n_kept / n of the chunk. Signs are one adaptive bit.
 * On the stories260K fine-tunes at s = 0.9, b = 4 this stores a seeded
 * tensor's codes in 3.35 bits per kept element, chunk header included
 * (zstd of the codes took 3.86). A 1 MiB BF16 chunk at s = 0.9, b = 4
 * decodes at about 300 MB/s of output with range-coded gaps and 750 MB/s
 * with a seeded mask on one core, most of it in the range coder's binary
 * decisions (about 11 per kept element with coded gaps, 4 without).
 *
 * rANS-coded codes decode about 4 times faster (4 ns a code against 18 on
 * one core: one table lookup, a multiply and at most two byte reads;
 * format 5's four lanes another 1.4-1.9x, no branch per code), and
 * a chunk of thousands of codes takes about the same bytes as range-coded
 * (52429 Laplace codes: 0.5% fewer); the table and the final states cost
 * about 25 bytes, so small tensors (stories260K: a few hundred codes a
 * tensor, 8% more) keep range-coded codes. A 1 MiB BF16 chunk at s = 0.9
 * with rANS-coded codes decodes at about 1.1 GB/s with a seeded mask and
 * 1.5 GB/s with Rice-coded gaps (against 0.5 GB/s range-coded).
 *
 * The encoder writes whichever of the candidate formats is smallest in
 * real bytes, except that range-coded gaps must beat Rice-coded ones by
 * more than RC_GAPS_MIN_GAIN percent to be chosen, and rANS-coded codes
 * are chosen whenever at most RANS_MAX_LOSS percent larger than the
 * smallest candidate (decoding speed, both); and that a section of
 * RC_CODES_GATE codes or more whose statistics do not drift is not range
 * coded nor zstd-compressed at all (encoding speed; see RC_CODES_GATE).
 * Decoding validates every count, length and index against
 * the chunk bounds and fails with -EIO on any inconsistency; a range-coded
 * section must be exactly the canonical stream of what it decodes to.
 * zstd goes through codec/zstd.c.
 */
#include "codec/lossy.h"

#include <endian.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy_i.h"
#include "codec/rans.h"
#include "codec/simd.h"
#include "codec/trellis.h"
#include "codec/zstd.h"
#include "common/bitio.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/rangecoder.h"
#include "common/util.h"

#ifdef UDFS_SIMD_X86
#include <immintrin.h>
#endif

#define LOSSY_VERSION 1
#define HDR_MAX 16 /* format byte and three varints */
#define RICE_KMAX 20
/* Range-coded gaps decode about ten times slower than Rice-coded ones
 * (eleven binary decisions a gap against a few shifts), and on fine-tuning
 * masks save 0.2-0.5% of the chunk: they are written only when they save
 * more than this many percent of the Rice section (regular masks). */
#define RC_GAPS_MIN_GAIN 3
/* rANS-coded codes decode several times faster than range-coded ones (one
 * table step a code against about four binary decisions): they are written
 * when at most this many percent larger than the smallest candidate
 * (defined at build time only to measure what format 4 alone costs). */
#ifndef RANS_MAX_LOSS
#define RANS_MAX_LOSS 3
#endif
/*
 * Range coding the codes costs ~40 ns a code, most of an add's encoding
 * time on dense codes, and it beats rANS by more than RANS_MAX_LOSS percent
 * only where the codes' statistics drift within the chunk (rows of a
 * different scale, runs of zeros): there a fast-adapting frequency count
 * prices them below their static entropy. On sections of at least
 * RC_CODES_GATE codes, range coding (and zstd, which beats rANS there
 * only on such codes too) is tried only then. Measured on the
 * stories260K, toylora and gen_model fine-tunes (255 sections of 16384
 * codes or more): where range coding won by more than 3%, the adaptive
 * price was at most 0.966 of the static one; elsewhere at least 1.016;
 * zstd beat rANS by more than 3% on 16 sections, all of the former.
 */
#define RC_CODES_GATE 16384
/* Sections of at least this many codes are rANS-coded in 32 lanes
 * (format 7): the lanes' states and lengths (about 130 bytes more than four
 * lanes') are then under 2% of it, 0.9% on a 1 MiB BF16 chunk at s = 0.9
 * (52 Ki codes), which the daemon reads with 7% less CPU than in four
 * lanes (measured with format 6, whose 32 streams format 7 shares out
 * four ways). */
#define RANS32_MIN 32768
#define RC_GATE_INC 32
#define RC_GATE_TOTAL 4096
/* Values of kept elements are noise to LZ; what zstd brings here is its
 * Huffman stage. Measured on 4-bit codes of Laplace deltas (entropy 1.76
 * bits): level 1 gives 1.80 bits per code, level 3 1.92, level 9 2.00,
 * level 19 1.75, and encodes a 1 MiB BF16 chunk at s = 0.9 at ~500 MB/s of
 * source against ~30-60 MB/s for level 19. */
#ifndef LOSSY_ZSTD_LEVEL
#define LOSSY_ZSTD_LEVEL 1
#endif

enum {
	MF_NONE = 0, /* mask none; seeded by the per-element rule (earlier) */
	MF_RICE = 1,
	MF_ZBITMAP = 2,
	MF_BITMAP = 3,
	MF_RC = 4,
	MF_SEEDED_LEVELS = 5, /* seeded by levels (written now) */
};
enum {
	VF_RAW = 0,
	VF_ZSTD = 1,
	VF_ZPACKED = 2,
	VF_RC = 3,
	VF_RANS = 4,
	VF_RANS4 = 5,
	VF_RANS32 = 6, /* written by earlier versions */
	VF_RANS32S = 7 /* 32 lanes in four shared streams */
};

/* zstd of one buffer into a malloc-ed *out. */
static int zc(const void *in, size_t n, uint8_t **out, size_t *out_len)
{
	void *buf;
	int err = udfs_zstd_compress(in, n, LOSSY_ZSTD_LEVEL, &buf, out_len);

	if (err == 0)
		*out = buf;
	return err;
}

/* Decompress exactly n bytes (anything else is a corrupt chunk) into the
 * per-thread scratch slot, *out. */
static int zd_scratch(int slot, const void *in, size_t in_len, size_t n,
		      uint8_t **out)
{
	*out = udfs_scratch(slot, n + 1);
	if (!*out)
		return -ENOMEM;
	return udfs_zstd_decompress(in, in_len, *out, n);
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

static int check_params(const udfs_lossy_params *p, int dtype, int err)
{
	if (dtype != UDFS_DT_F16 && dtype != UDFS_DT_BF16 &&
	    dtype != UDFS_DT_F32)
		return udfs_error(-EINVAL,
				  "lossy chunk: dtype %s not supported",
				  udfs_dtype_name(dtype));
	if (p->mask > UDFS_MASK_SEEDED)
		return udfs_error(err, "lossy chunk: mask kind %u", p->mask);
	if (p->values > UDFS_VAL_TRELLIS)
		return udfs_error(err, "lossy chunk: value kind %u", p->values);
	if (p->values == UDFS_VAL_CODES && (p->bits < 1 || p->bits > 8))
		return udfs_error(err, "lossy chunk: %u code bits", p->bits);
	if (p->values == UDFS_VAL_TRELLIS &&
	    (p->bits < 1 || p->bits > UDFS_TRELLIS_VMAX))
		return udfs_error(err, "lossy chunk: %u values a trellis step",
				  p->bits);
	return 0;
}

/* Adaptive Elias-gamma model (file comment). */
struct eg_model {
	rc_prob g[32];	     /* "e > j" */
	rc_prob m[32][4];    /* first two bits below the leading one */
	rc_prob low[32][32]; /* the others, per bit position */
};

static void eg_init(struct eg_model *em)
{
	for (unsigned e = 0; e < 32; e++) {
		em->g[e] = RC_HALF;
		for (unsigned k = 0; k < 4; k++)
			em->m[e][k] = RC_HALF;
		for (unsigned t = 0; t < 32; t++)
			em->low[e][t] = RC_HALF;
	}
}

static inline void eg_enc(struct rc_enc *rc, struct eg_model *em, uint32_t x,
			  uint64_t max)
{
	unsigned e = 31 - (unsigned)__builtin_clz(x), node = 1;

	for (unsigned j = 0; (2ull << j) <= max; j++) {
		rc_enc_bit(rc, &em->g[j], e > j);
		if (e <= j)
			break;
	}
	for (unsigned t = e; t-- > 0;) {
		unsigned b = x >> t & 1;

		if (e - 1 - t < 2) {
			rc_enc_bit(rc, &em->m[e][node], b);
			node = node * 2 + b;
		} else {
			rc_enc_bit(rc, &em->low[e][t], b);
		}
	}
}

/* Decode x; the caller checks x <= max. */
static inline uint32_t eg_dec(struct rc_dec *rc, struct eg_model *em,
			      uint64_t max)
{
	unsigned e = 0, node = 1;
	uint32_t x = 1;

	while ((2ull << e) <= max && rc_dec_bit(rc, &em->g[e]))
		e++;
	for (unsigned t = e; t-- > 0;) {
		unsigned b;

		if (e - 1 - t < 2) {
			b = rc_dec_bit(rc, &em->m[e][node]);
			node = node * 2 + b;
		} else {
			b = rc_dec_bit(rc, &em->low[e][t]);
		}
		x = x * 2 + b;
	}
	return x;
}

/* A probability given in 1/4096. */
#define P12(x) ((rc_prob)((x) << (RC_PBITS - 12)))

/* Gap model: "e > j" starts at about the geometric odds of the density
 * q = n_kept / n, P(stop) ~ 2^j q / (1 + 2^j q), in integers only. */
static void gap_init(struct eg_model *em, uint32_t n, uint32_t n_kept)
{
	eg_init(em);
	for (unsigned j = 0; j < 32; j++) {
		uint64_t a = (uint64_t)n_kept << j;
		uint64_t p = a * RC_ONE / ((uint64_t)n + a + 1);

		em->g[j] = (rc_prob)(p < P12(8)		   ? P12(8)
				     : p > RC_ONE - P12(8) ? RC_ONE - P12(8)
							   : p);
	}
}

/* Code model (file comment). */
struct code_model {
	rc_prob zero, sign;
	struct eg_model mag;
	unsigned z, top; /* code of a zero delta, 2^b - 1 */
};

static void code_init(struct code_model *cm, const udfs_lossy_params *p)
{
	static const rc_prob g4[3] = {P12(1390), P12(2930), P12(3900)};
	static const rc_prob m4[3][4] = {
	    {RC_HALF, P12(2400), RC_HALF, RC_HALF},
	    {RC_HALF, P12(3750), P12(3020), P12(3400)},
	    {RC_HALF, RC_HALF, RC_HALF, RC_HALF}};
	int s = (int)p->bits - 4;
	double zz = -(double)p->lo / (double)p->step;

	cm->top = (1u << p->bits) - 1;
	/* the same IEEE double operations on every machine */
	cm->z = !(zz > 0) ? 0 : zz >= cm->top ? cm->top : (unsigned)lrint(zz);
	eg_init(&cm->mag);
	cm->sign = RC_HALF;
	cm->zero = (rc_prob)(s >= 0 ? (unsigned)UDFS_MAX(P12(660) >> s, P12(64))
				    : RC_ONE - ((RC_ONE - P12(660)) >> -s));
	for (int j = 0; j < 32; j++) {
		int k = j - s;

		cm->mag.g[j] = k < 0 ? P12(300) : k < 3 ? g4[k] : P12(3900);
		if (j >= 1 && k >= 1 && k <= 3)
			memcpy(cm->mag.m[j], m4[k - 1], sizeof(m4[0]));
	}
}

static inline void code_enc(struct rc_enc *rc, struct code_model *cm,
			    unsigned c)
{
	unsigned neg = c < cm->z, a = neg ? cm->z - c : c - cm->z;

	rc_enc_bit(rc, &cm->zero, a != 0);
	if (!a)
		return;
	if (cm->z > 0 && cm->z < cm->top)
		rc_enc_bit(rc, &cm->sign, neg);
	eg_enc(rc, &cm->mag, a, neg ? cm->z : cm->top - cm->z);
}

/* Decode one code; false when it falls outside 0..2^b-1. */
static inline bool code_dec(struct rc_dec *rc, struct code_model *cm,
			    unsigned *c)
{
	unsigned neg, room;
	uint32_t a;

	if (!rc_dec_bit(rc, &cm->zero)) {
		*c = cm->z;
		return true;
	}
	if (cm->z == 0)
		neg = 0;
	else if (cm->z == cm->top)
		neg = 1;
	else
		neg = rc_dec_bit(rc, &cm->sign);
	room = neg ? cm->z : cm->top - cm->z;
	a = eg_dec(rc, &cm->mag, room);
	if (a > room)
		return false;
	*c = neg ? cm->z - a : cm->z + a;
	return true;
}

/* Rice cost in bits of the gaps with parameter k, for every k. */
static unsigned best_rice_k(const uint32_t *gaps, uint32_t n, uint64_t *bits)
{
	uint64_t sum[RICE_KMAX + 1] = {0};
	unsigned best = 0;

	/* One pass per k, which vectorizes: the gaps of a chunk sum to less
	 * than its element count, a uint32_t, and so does each pass. */
	for (unsigned k = 0; k <= RICE_KMAX; k++) {
		uint32_t s = 0;

		for (uint32_t j = 0; j < n; j++)
			s += gaps[j] >> k;
		sum[k] = s + (uint64_t)n * (k + 1);
		if (sum[k] < sum[best])
			best = k;
	}
	*bits = sum[best];
	return best;
}

/* Mask section of an explicit mask: the smallest of Rice gaps,
 * range-coded gaps, a raw bitmap and a zstd bitmap. */
static int encode_mask(uint32_t n, const uint32_t *kept, uint32_t n_kept,
		       uint8_t **out, size_t *len, uint8_t *fmt)
{
	uint32_t *gaps = udfs_xmalloc(((size_t)n_kept + 1) * sizeof(*gaps));
	uint8_t *bitmap = NULL, *z = NULL, *rice, *rcb;
	size_t rice_len, bm_len = ((size_t)n + 7) / 8, z_len, rc_len;
	struct eg_model *em = udfs_xmalloc(sizeof(*em));
	uint64_t bits, next = 0;
	unsigned k;
	struct rc_enc rc;
	struct bitw w;
	int ret;

	for (uint32_t j = 0; j < n_kept; j++)
		gaps[j] = kept[j] - (j ? kept[j - 1] + 1 : 0);
	k = best_rice_k(gaps, n_kept, &bits);
	rice_len = 1 + (bits + 7) / 8;
	rice = udfs_xmalloc(rice_len + 8);
	rice[0] = (uint8_t)k;
	bitw_init(&w, rice + 1);
	for (uint32_t j = 0; j < n_kept; j++) {
		bitw_unary(&w, gaps[j] >> k);
		bitw_put(&w, gaps[j] & ((1u << k) - 1), k);
	}
	bitw_finish(&w);
	*out = rice;
	*len = rice_len;
	*fmt = MF_RICE;

	gap_init(em, n, n_kept);
	rc_enc_init(&rc);
	for (uint32_t j = 0; j < n_kept; j++) {
		eg_enc(&rc, em, gaps[j] + 1, n - next);
		next = kept[j] + 1;
	}
	rcb = rc_enc_finish(&rc, &rc_len);
	free(em);
	free(gaps);
	if (rc_len * (100 + RC_GAPS_MIN_GAIN) < *len * 100) {
		free(*out);
		*out = rcb;
		*len = rc_len;
		*fmt = MF_RC;
	} else {
		free(rcb);
	}
	/* At high density a bitmap beats gaps; only then is it worth a try. */
	if (*len * 4 < bm_len)
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

static uint8_t *rc_codes(const udfs_lossy_params *p, const uint8_t *v,
			 uint32_t n_kept, size_t *len)
{
	struct code_model *cm = udfs_xmalloc(sizeof(*cm));
	struct rc_enc rc;
	uint8_t *buf;

	code_init(cm, p);
	rc_enc_init(&rc);
	for (uint32_t j = 0; j < n_kept; j++)
		code_enc(&rc, cm, v[j]);
	buf = rc_enc_finish(&rc, len);
	free(cm);
	return buf;
}

/* Four tables, as a code mostly follows itself and one counter would
 * make each increment wait for the previous. */
void udfs_lossy_code_counts(const uint8_t *v, uint32_t n, uint32_t *h)
{
	uint32_t h4[4][256] = {{0}};
	uint32_t j = 0;

	for (; j + 4 <= n; j += 4) {
		h4[0][v[j]]++;
		h4[1][v[j + 1]]++;
		h4[2][v[j + 2]]++;
		h4[3][v[j + 3]]++;
	}
	for (; j < n; j++)
		h4[0][v[j]]++;
	for (unsigned c = 0; c < 256; c++)
		h[c] = h4[0][c] + h4[1][c] + h4[2][c] + h4[3][c];
}

/* Bits of n codes under their static (order-0) frequencies, h their
 * counts. */
static double static_bits(const uint32_t *h, uint32_t n)
{
	double bits = (double)n * log2((double)n);

	for (unsigned c = 0; c < 256; c++)
		if (h[c])
			bits -= (double)h[c] * log2((double)h[c]);
	return bits;
}

/* Bits of n codes of b bits under counts that adapt fast (each code adds
 * RC_GATE_INC; all halve past RC_GATE_TOTAL), as the range coder's
 * binary probabilities do. */
static double adaptive_bits(const uint8_t *v, uint32_t n, unsigned b)
{
	enum { LOG_MAX = RC_GATE_TOTAL + RC_GATE_INC + 1 };
	float lg[LOG_MAX]; /* log2 of every count and total */
	uint32_t cnt[256], tot = 1u << b;
	double bits = 0;

	for (unsigned i = 1; i < LOG_MAX; i++)
		lg[i] = log2f((float)i);
	for (unsigned c = 0; c < 256; c++)
		cnt[c] = 1;
	for (uint32_t j = 0; j < n; j++) {
		bits += (double)(lg[tot] - lg[cnt[v[j]]]);
		cnt[v[j]] += RC_GATE_INC;
		tot += RC_GATE_INC;
		if (tot <= RC_GATE_TOTAL)
			continue;
		tot = 0;
		for (unsigned c = 0; c < 1u << b; c++) {
			cnt[c] = (cnt[c] + 1) / 2;
			tot += cnt[c];
		}
	}
	return bits;
}

/* Whether range-coded codes are worth trying (RC_CODES_GATE). */
static bool rc_codes_may_pay(const udfs_lossy_params *p, const uint8_t *v,
			     uint32_t n, const uint32_t *cnt)
{
	return n < RC_CODES_GATE ||
	       adaptive_bits(v, n, p->bits) < static_bits(cnt, n);
}

/* Make the rANS section the value section if it is at most RANS_MAX_LOSS
 * percent larger than the smallest one (*out, of *len bytes): in 32 lanes
 * (format 7, decoded several codes at once) when there are at least
 * RANS32_MIN codes, whose lanes then cost under 2% of the section, else
 * in four (format 5). */
static int take_rans(const udfs_lossy_params *p, const uint8_t *v,
		     uint32_t n_kept, uint8_t **out, size_t *len, uint8_t *fmt)
{
	bool wide = n_kept >= RANS32_MIN;
	size_t r_len;
	uint8_t *r = wide ? udfs_rans32_encode(v, n_kept, p->bits, true, &r_len)
			  : udfs_rans4_encode(v, n_kept, p->bits, &r_len);

	if (!r)
		return -ENOMEM;
	if ((uint64_t)r_len * 100 > (uint64_t)*len * (100 + RANS_MAX_LOSS)) {
		free(r);
		return 0;
	}
	free(*out);
	*out = r;
	*len = r_len;
	*fmt = wide ? VF_RANS32S : VF_RANS4;
	return 0;
}

/* The value section of codes whose statistics do not drift: rANS if at
 * most RANS_MAX_LOSS percent larger than the packed codes, as take_rans
 * decides, else the packed codes, which are then the only ones packed
 * (packing every section cost as much as a fifth of rANS coding it). */
static int rans_or_raw(const udfs_lossy_params *p, const uint8_t *v,
		       uint32_t n_kept, const uint32_t *cnt, uint8_t **out,
		       size_t *len, uint8_t *fmt)
{
	bool wide = n_kept >= RANS32_MIN;
	size_t raw_len = ((size_t)n_kept * p->bits + 7) / 8, r_len;
	uint8_t *r = udfs_rans_encode_counted(
	    v, n_kept, p->bits, wide ? VF_RANS32S : VF_RANS4, cnt, &r_len);

	if (!r)
		return -ENOMEM;
	if ((uint64_t)r_len * 100 <=
	    (uint64_t)raw_len * (100 + RANS_MAX_LOSS)) {
		*out = r;
		*len = r_len;
		*fmt = wide ? VF_RANS32S : VF_RANS4;
		return 0;
	}
	free(r);
	*out = pack(v, n_kept, p->bits, len);
	*fmt = VF_RAW;
	return 0;
}

int udfs_lossy_codes_encode_as(const udfs_lossy_params *p, uint32_t n_kept,
			       const uint8_t *codes, unsigned vf, uint8_t **out,
			       size_t *len)
{
	*out = NULL;
	*len = 0;
	if (p->values != UDFS_VAL_CODES || p->bits < 1 || p->bits > 8 ||
	    n_kept == 0 ||
	    (vf != VF_RC && vf != VF_RANS && vf != VF_RANS4 &&
	     vf != VF_RANS32 && vf != VF_RANS32S))
		return -EINVAL;
	for (uint32_t j = 0; j < n_kept; j++)
		if (codes[j] >> p->bits)
			return -EINVAL;
	*out = vf == VF_RC	? rc_codes(p, codes, n_kept, len)
	       : vf == VF_RANS	? udfs_rans_encode(codes, n_kept, p->bits, len)
	       : vf == VF_RANS4 ? udfs_rans4_encode(codes, n_kept, p->bits, len)
				: udfs_rans32_encode(codes, n_kept, p->bits,
						     vf == VF_RANS32S, len);
	return *out ? 0 : -ENOMEM;
}

static uint8_t *rc_signs(const uint8_t *v, uint32_t n_kept, size_t *len)
{
	rc_prob sign = RC_HALF;
	struct rc_enc rc;

	rc_enc_init(&rc);
	for (uint32_t j = 0; j < n_kept; j++)
		rc_enc_bit(&rc, &sign, v[j]);
	return rc_enc_finish(&rc, len);
}

int udfs_lossy_values_encode(const udfs_lossy_params *p, unsigned es,
			     uint32_t n_kept, const void *vals, uint8_t **out,
			     size_t *len, uint8_t *fmt)
{
	const uint8_t *v = vals;
	uint8_t *raw = NULL, *z = NULL, *zp = NULL, *planes = NULL, *rcb;
	size_t raw_len = 0, z_len = 0, zp_len = 0, rc_len = 0;
	uint32_t cnt[256], steps;
	bool bad = false;
	int ret = 0;

	*out = NULL;
	*len = 0;
	*fmt = VF_RAW;
	if (n_kept == 0)
		return 0;
	switch (p->values) {
	case UDFS_VAL_CODES:
		udfs_lossy_code_counts(v, n_kept, cnt);
		for (unsigned c = 1u << p->bits; c < 256 && !bad; c++)
			bad = cnt[c] > 0;
		for (uint32_t j = 0; bad && j < n_kept; j++)
			if (v[j] >> p->bits)
				return udfs_error(
				    -EINVAL,
				    "lossy chunk: code %u above %u bits", v[j],
				    p->bits);
		if (!rc_codes_may_pay(p, v, n_kept, cnt))
			return rans_or_raw(p, v, n_kept, cnt, out, len, fmt);
		raw = pack(v, n_kept, p->bits, &raw_len);
		rcb = rc_codes(p, v, n_kept, &rc_len);
		ret = zc(v, n_kept, &z, &z_len);
		if (ret == 0 && p->bits < 8)
			ret = zc(raw, raw_len, &zp, &zp_len);
		take(out, len, fmt, raw, raw_len, VF_RAW);
		if (rcb)
			take(out, len, fmt, rcb, rc_len, VF_RC);
		if (z)
			take(out, len, fmt, z, z_len, VF_ZSTD);
		if (zp)
			take(out, len, fmt, zp, zp_len, VF_ZPACKED);
		if (ret == 0)
			ret = take_rans(p, v, n_kept, out, len, fmt);
		break;
	case UDFS_VAL_SIGN:
		for (uint32_t j = 0; j < n_kept; j++)
			if (v[j] > 1)
				return udfs_error(-EINVAL,
						  "lossy chunk: sign value %u",
						  v[j]);
		raw = pack(v, n_kept, 1, &raw_len);
		rcb = rc_signs(v, n_kept, &rc_len);
		take(out, len, fmt, raw, raw_len, VF_RAW);
		take(out, len, fmt, rcb, rc_len, VF_RC);
		break;
	case UDFS_VAL_TRELLIS: /* path bits: random, nothing to compress */
		steps = (n_kept + p->bits - 1) / p->bits;
		for (uint32_t j = 0; j < steps; j++)
			if (v[j] > 1)
				return udfs_error(
				    -EINVAL, "lossy chunk: path bit %u", v[j]);
		*out = pack(v, steps, 1, len);
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

/* The decoder regenerates a seeded mask (by levels: what this encoder
 * writes): what is stored must be the seeded one exactly (kept NULL: only
 * the count is given). */
static bool seeded_matches(const udfs_lossy_params *p, uint64_t first,
			   uint32_t n, const uint32_t *kept, uint32_t n_kept)
{
	uint32_t t = udfs_seeded_levels(p->rate), cnt = 0;
	uint64_t words[64];

	for (uint32_t at = 0; at < n; at += 64 * 64) {
		uint32_t len = UDFS_MIN(n - at, 64 * 64);
		uint64_t k =
		    udfs_seeded_levels_mask(p->seed, first + at, len, t, words);

		if (k > n_kept - cnt)
			return false;
		for (uint32_t w = 0; kept && w < (len + 63) / 64; w++)
			for (uint64_t b = words[w]; b; b &= b - 1)
				if (kept[cnt++] !=
				    at + 64 * w + (uint32_t)__builtin_ctzll(b))
					return false;
		if (!kept)
			cnt += (uint32_t)k;
	}
	return cnt == n_kept;
}

/* Long on purpose: the chunk's sections in the order udfs(5) lays them
 * out, each chosen as the smallest of its formats; cut up, the layout
 * would be spread over several functions. */
int udfs_lossy_encode_chunk(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const uint32_t *kept,
			    uint32_t n_kept, const void *vals, void **out,
			    size_t *out_len)
{
	uint8_t *mask = NULL, *val = NULL, *buf, mfmt = MF_NONE, vfmt;
	uint8_t hdr[HDR_MAX];
	size_t mask_len = 0, val_len = 0, hdr_len = 1;
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
				  "lossy chunk: %u kept of %u without a mask",
				  n_kept, n);
	if (p->mask != UDFS_MASK_NONE && kept) {
		for (uint32_t j = 0; j < n_kept; j++)
			if (kept[j] >= n || (j && kept[j] <= kept[j - 1]))
				return udfs_error(
				    -EINVAL,
				    "lossy chunk: kept index %u out of order",
				    j);
	}
	if (p->mask == UDFS_MASK_SEEDED) {
		if (!seeded_matches(p, first, n, kept, n_kept))
			return udfs_error(-EINVAL,
					  "lossy chunk: kept positions differ "
					  "from the seeded mask");
		mfmt = MF_SEEDED_LEVELS;
	}
	if (p->mask == UDFS_MASK_EXPLICIT) {
		if (!kept && n_kept)
			return udfs_error(-EINVAL, "lossy chunk: no positions");
		ret = encode_mask(n, kept, n_kept, &mask, &mask_len, &mfmt);
		if (ret < 0)
			goto out;
		if (mask_len > UINT32_MAX) {
			ret = udfs_error(-EINVAL,
					 "lossy chunk: mask of %zu bytes",
					 mask_len);
			goto out;
		}
		hdr_len += udfs_lossy_put_varint(hdr + hdr_len, n_kept);
		hdr_len +=
		    udfs_lossy_put_varint(hdr + hdr_len, (uint32_t)mask_len);
	}
	ret = udfs_lossy_values_encode(p, es, n_kept, vals, &val, &val_len,
				       &vfmt);
	if (ret < 0)
		goto out;
	if (val_len > UINT32_MAX) {
		ret = udfs_error(-EINVAL, "lossy chunk: values of %zu bytes",
				 val_len);
		goto out;
	}
	hdr_len += udfs_lossy_put_varint(hdr + hdr_len, (uint32_t)val_len);
	hdr[0] = (uint8_t)(LOSSY_VERSION << 6 | vfmt << 3 | mfmt);

	buf = udfs_xmalloc(hdr_len + mask_len + val_len + 1);
	memcpy(buf, hdr, hdr_len);
	if (mask_len)
		memcpy(buf + hdr_len, mask, mask_len);
	if (val_len)
		memcpy(buf + hdr_len + mask_len, val, val_len);
	*out = buf;
	*out_len = hdr_len + mask_len + val_len;
out:
	free(val);
	free(mask);
	return ret;
}

/*
 * Decoding streams a chunk: the kept positions and their deltas come out
 * KBLOCK at a time into the caller's stack arrays and are applied to the
 * output as they come, so the only per-chunk memory is per-thread scratch
 * (udfs_scratch) of at most the chunk's size: a seeded mask's keep bits
 * (n / 8 bytes), a zstd bitmap, or zstd-compressed value bytes.
 */
#define KBLOCK 1024

enum { MS_ALL, MS_WORDS, MS_RICE, MS_RC };

/* The kept positions of a chunk, ascending, a block at a time. */
struct mask_src {
	unsigned kind;
	uint32_t n, n_kept, done;
	const uint64_t *words; /* MS_WORDS: a seeded mask's keep bits */
	const uint8_t *bm;     /* MS_WORDS: or a bitmap of bm_len bytes */
	size_t bm_len, wi, nw; /* next word, word count */
	uint64_t w;	       /* bits of word wi - 1 not yet returned */
	uint32_t wbase;	       /* element index of bit 0 of w */
	struct bitr br;	       /* MS_RICE */
	unsigned k;
	uint64_t next; /* MS_RICE, MS_RC: the next possible position */
	struct rc_dec rc;
	struct eg_model em;
};

/* Word wi of a bitmap, little endian, zeros past its end. */
static inline uint64_t bm_word(const uint8_t *bm, size_t len, size_t wi)
{
	size_t at = wi * 8;
	uint64_t w = 0;

	if (at + 8 <= len) {
		memcpy(&w, bm + at, 8);
		return le64toh(w);
	}
	for (size_t i = at; i < len; i++)
		w |= (uint64_t)bm[i] << (8 * (i - at));
	return w;
}

/* A bitmap of n elements must hold exactly n_kept bits, none past n. */
static int check_bitmap(const uint8_t *bm, uint32_t n, uint32_t n_kept)
{
	size_t len = ((size_t)n + 7) / 8, nw = (len + 7) / 8;
	uint64_t cnt = 0;

	for (size_t w = 0; w < nw; w++)
		cnt += (uint64_t)__builtin_popcountll(bm_word(bm, len, w));
	if (cnt != n_kept || (n % 8 && bm[n / 8] >> (n % 8)))
		return udfs_error(
		    -EIO, "lossy chunk: bitmap does not match %u kept", n_kept);
	return 0;
}

/* The seeded mask of the chunk, generated into scratch by the rule its
 * mask format names. */
static int ms_seeded(struct mask_src *ms, const udfs_lossy_params *p,
		     unsigned mf, uint64_t first)
{
	size_t nw = ((size_t)ms->n + 63) / 64;
	uint64_t *words = udfs_scratch(UDFS_SCRATCH_MASK, (nw + 1) * 8);

	if (!words)
		return -ENOMEM;
	if (mf == MF_SEEDED_LEVELS)
		ms->n_kept = (uint32_t)udfs_seeded_levels_mask(
		    p->seed, first, ms->n, udfs_seeded_levels(p->rate), words);
	else
		ms->n_kept = (uint32_t)udfs_seeded_mask(
		    p->seed, first, ms->n, udfs_seeded_threshold(p->rate),
		    words);
	ms->kind = MS_WORDS;
	ms->words = words;
	ms->nw = nw;
	return 0;
}

/* Set up a bitmap mask: raw (in) or zstd-compressed (into scratch). */
static int ms_bitmap(struct mask_src *ms, unsigned mf, const uint8_t *in,
		     size_t len)
{
	size_t bm_len = ((size_t)ms->n + 7) / 8;
	uint8_t *bm;
	int ret;

	if (mf == MF_BITMAP) {
		if (len != bm_len)
			return udfs_error(
			    -EIO, "lossy chunk: bitmap of %zu bytes", len);
		bm = (uint8_t *)in;
	} else {
		ret = zd_scratch(UDFS_SCRATCH_MASK, in, len, bm_len, &bm);
		if (ret < 0)
			return ret;
	}
	ret = check_bitmap(bm, ms->n, ms->n_kept);
	if (ret < 0)
		return ret;
	ms->kind = MS_WORDS;
	ms->bm = bm;
	ms->bm_len = bm_len;
	ms->nw = (bm_len + 7) / 8;
	return 0;
}

/* Set up the positions of a chunk of n elements; n_kept is the stored
 * count of an explicit mask (n for no mask; a seeded mask counts its own). */
static int ms_init(struct mask_src *ms, const udfs_lossy_params *p, unsigned mf,
		   const uint8_t *in, size_t len, uint64_t first, uint32_t n,
		   uint32_t n_kept)
{
	memset(ms, 0, offsetof(struct mask_src, rc));
	ms->n = n;
	ms->n_kept = n_kept;
	if (p->mask == UDFS_MASK_NONE)
		return 0; /* MS_ALL */
	if (p->mask == UDFS_MASK_SEEDED)
		return ms_seeded(ms, p, mf, first);
	switch (mf) {
	case MF_RICE:
		if (len < 1 || in[0] > RICE_KMAX)
			return udfs_error(-EIO,
					  "lossy chunk: no Rice parameter");
		ms->kind = MS_RICE;
		ms->k = in[0];
		bitr_init(&ms->br, in + 1, len - 1);
		return 0;
	case MF_RC:
		ms->kind = MS_RC;
		gap_init(&ms->em, n, n_kept);
		rc_dec_init(&ms->rc, in, len);
		return 0;
	case MF_BITMAP:
	case MF_ZBITMAP:
		return ms_bitmap(ms, mf, in, len);
	default:
		return udfs_error(-EIO, "lossy chunk: mask format %u", mf);
	}
}

#ifdef UDFS_SIMD_X86
/*
 * The positions of the set bits of whole keep words from word *wi on, while
 * k - j, the positions still wanted, is 64 or more: 16 bits at a time, each
 * compressed out of a vector of 16 indices by one instruction, where the
 * loop of ms_words_next() branches per bit (mispredicted at every word end
 * of a random mask). Every store writes 16 positions, so it needs that room:
 * j <= k - 16 at each store. Returns the new j.
 */
__attribute__((target("avx512f,popcnt"))) static uint32_t
words_pos_avx512(const uint64_t *words, size_t *wi, uint32_t *pos, uint32_t j,
		 uint32_t k)
{
	const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
					       11, 12, 13, 14, 15);
	const __m512i step = _mm512_set1_epi32(16);
	size_t i = *wi;

	while (k - j >= 64) {
		uint64_t w = words[i];
		__m512i at =
		    _mm512_add_epi32(_mm512_set1_epi32((int)(i * 64)), lane);

		for (unsigned q = 0; q < 4; q++) {
			__mmask16 m = (__mmask16)(w >> (16 * q));

			_mm512_storeu_si512(pos + j,
					    _mm512_maskz_compress_epi32(m, at));
			j += (uint32_t)__builtin_popcount(m);
			at = _mm512_add_epi32(at, step);
		}
		i++;
	}
	*wi = i;
	return j;
}
#endif

/* The next k set bits of the keep words (k never passes the count); on
 * local copies of the state, as the gap decoders below. */
static void ms_words_next(struct mask_src *ms, uint32_t *pos, uint32_t k)
{
	uint64_t w = ms->w;
	uint32_t wbase = ms->wbase, j = 0;
	size_t wi = ms->wi;
#ifdef UDFS_SIMD_X86
	bool vec = ms->words && udfs_simd_level() >= UDFS_SIMD_AVX512;
#endif

	for (;;) {
		for (; w && j < k; w &= w - 1)
			pos[j++] = wbase + (uint32_t)__builtin_ctzll(w);
		if (j == k)
			break;
#ifdef UDFS_SIMD_X86
		if (vec && k - j >= 64) {
			j = words_pos_avx512(ms->words, &wi, pos, j, k);
			continue;
		}
#endif
		w = ms->words ? ms->words[wi] : bm_word(ms->bm, ms->bm_len, wi);
		wbase = (uint32_t)(wi++ * 64);
	}
	ms->w = w;
	ms->wbase = wbase;
	ms->wi = wi;
}

/* The gap decoders work on local copies of their state: stores to pos
 * (uint32_t) could otherwise alias it and force it through memory on
 * every element. */
static int ms_rice_next(struct mask_src *ms, uint32_t *pos, uint32_t k)
{
	struct bitr br = ms->br;
	uint64_t next = ms->next, q;
	uint32_t low, n = ms->n;
	unsigned rk = ms->k;
	int ret = 0;

	for (uint32_t j = 0; j < k; j++) {
		if (!bitr_unary(&br, n, &q) || !bitr_get(&br, rk, &low)) {
			ret = udfs_error(-EIO,
					 "lossy chunk: gap %u of %u truncated",
					 ms->done + j, ms->n_kept);
			break;
		}
		next += (q << rk) | low;
		if (next >= n) {
			ret = udfs_error(
			    -EIO, "lossy chunk: gap %u beyond the %u elements",
			    ms->done + j, n);
			break;
		}
		pos[j] = (uint32_t)next++;
	}
	ms->br = br;
	ms->next = next;
	return ret;
}

static int ms_rc_next(struct mask_src *ms, uint32_t *pos, uint32_t k)
{
	struct rc_dec rc = ms->rc;
	uint64_t next = ms->next, n = ms->n;
	int ret = 0;

	for (uint32_t j = 0; j < k; j++) {
		uint64_t room = n - next;
		uint32_t x = room ? eg_dec(&rc, &ms->em, room) : 0;

		if (x == 0 || x > room) {
			ret = udfs_error(
			    -EIO, "lossy chunk: gap %u beyond the %u elements",
			    ms->done + j, ms->n);
			break;
		}
		next += x;
		pos[j] = (uint32_t)(next - 1);
	}
	ms->rc = rc;
	ms->next = next;
	return ret;
}

/* Up to max next kept positions into pos: their count, 0 at the end, or
 * -EIO. */
static int ms_next(struct mask_src *ms, uint32_t *pos, uint32_t max)
{
	uint32_t k = UDFS_MIN(max, ms->n_kept - ms->done);
	int ret = 0;

	switch (ms->kind) {
	case MS_ALL: /* pos NULL: the caller counts them */
		for (uint32_t j = 0; pos && j < k; j++)
			pos[j] = ms->done + j;
		break;
	case MS_WORDS:
		ms_words_next(ms, pos, k);
		break;
	case MS_RICE:
		ret = ms_rice_next(ms, pos, k);
		break;
	default:
		ret = ms_rc_next(ms, pos, k);
		break;
	}
	ms->done += k;
	return ret < 0 ? ret : (int)k;
}

/* After the last position: nothing may follow the gaps. */
static int ms_finish(const struct mask_src *ms)
{
	const struct bitr *r = &ms->br;

	if (ms->kind == MS_RICE &&
	    (r->pos != r->len || r->nbits >= 8 || r->acc))
		return udfs_error(-EIO, "lossy chunk: bytes after the gaps");
	if (ms->kind == MS_RC && !rc_dec_finish(&ms->rc))
		return udfs_error(
		    -EIO,
		    "lossy chunk: range-coded gaps do not end where they should");
	return 0;
}

enum {
	VS_NONE,
	VS_RC_CODES,
	VS_RC_SIGNS,
	VS_PACKED,
	VS_BYTES,
	VS_PLANES,
	VS_RANS,
	VS_RANS4,
	VS_RANS32,
	VS_TRELLIS
};

/* The deltas gain * value(j) of the kept elements, a block at a time. */
struct val_src {
	unsigned kind, nb, es;
	int dtype;
	uint32_t n_kept, done;
	float gain;
	const uint8_t *bytes; /* VS_BYTES: code bytes; VS_PLANES: planes */
	struct bitr br;	      /* VS_PACKED */
	struct rc_dec rc;
	struct rans_dec rans;
	struct rans4_dec rans4;
	struct rans32_dec rans32;
	rc_prob sign;
	float lut[256]; /* a code's or a sign bit's delta */
	struct code_model cm;
	float *tlut;	   /* VS_TRELLIS: udfs_trellis_lut, in scratch */
	unsigned state, j; /* VS_TRELLIS: the path's state, its next value */
};

/* Values of codes or signs: packed (in, or zstd-compressed into scratch)
 * or zstd-compressed code bytes (into scratch). */
static int vs_small(struct val_src *vs, const udfs_lossy_params *p, unsigned vf,
		    const uint8_t *in, size_t len)
{
	size_t raw_len = ((size_t)vs->n_kept * vs->nb + 7) / 8;
	bool codes = p->values == UDFS_VAL_CODES;
	uint8_t *v;
	int ret;

	if (vf == VF_RAW) {
		v = (uint8_t *)in;
	} else if (vf == VF_ZSTD || (vf == VF_ZPACKED && codes)) {
		if (vf == VF_ZSTD && codes)
			raw_len = vs->n_kept;
		ret = zd_scratch(UDFS_SCRATCH_VALUES, in, len, raw_len, &v);
		if (ret < 0)
			return ret;
		len = raw_len;
		if (vf == VF_ZSTD && codes) {
			vs->kind = VS_BYTES;
			vs->bytes = v;
			return 0;
		}
	} else {
		return -EIO;
	}
	if (len != raw_len)
		return udfs_error(
		    -EIO, "lossy chunk: packed values: %zu bytes for %u values",
		    len, vs->n_kept);
	vs->kind = VS_PACKED;
	bitr_init(&vs->br, v, len);
	return 0;
}

/* Values of native elements: byte planes, raw or zstd-compressed. */
static int vs_planes(struct val_src *vs, unsigned vf, const uint8_t *in,
		     size_t len)
{
	size_t raw_len = (size_t)vs->n_kept * vs->es;
	uint8_t *v;
	int ret;

	vs->kind = VS_PLANES;
	if (vf == VF_RAW && len == raw_len) {
		vs->bytes = in;
		return 0;
	}
	if (vf != VF_ZSTD)
		return -EIO;
	ret = zd_scratch(UDFS_SCRATCH_VALUES, in, len, raw_len, &v);
	vs->bytes = v;
	return ret;
}

/* Path bits of a trellis, packed (format 0 only): one a step of
 * p->bits values, the last step's missing values not decoded. */
static int vs_trellis(struct val_src *vs, const udfs_lossy_params *p,
		      unsigned vf, const uint8_t *in, size_t len)
{
	uint32_t steps = (vs->n_kept + p->bits - 1) / p->bits;

	if (vf != VF_RAW || len != ((size_t)steps + 7) / 8)
		return udfs_error(
		    -EIO,
		    "lossy chunk: trellis path of %zu bytes (format %u) "
		    "for %u values",
		    len, vf, vs->n_kept);
	vs->tlut = udfs_scratch(UDFS_SCRATCH_TRELLIS, UDFS_TRELLIS_STATES *
							  UDFS_TRELLIS_VMAX *
							  sizeof(float));
	if (!vs->tlut)
		return -ENOMEM;
	udfs_trellis_lut(p, vs->tlut);
	vs->kind = VS_TRELLIS;
	vs->nb = p->bits;
	vs->state = 0;
	vs->j = 0;
	bitr_init(&vs->br, in, len);
	return 0;
}

/* Set up the value section (format vf, in[0..len)) of n_kept values. */
static int vs_init(struct val_src *vs, const udfs_lossy_params *p, int dtype,
		   unsigned vf, const uint8_t *in, size_t len, uint32_t n_kept)
{
	int ret;

	vs->kind = VS_NONE;
	vs->dtype = dtype;
	vs->es = udfs_dtype_size(dtype);
	vs->nb = p->values == UDFS_VAL_CODES ? p->bits : 1;
	vs->n_kept = n_kept;
	vs->done = 0;
	vs->gain = p->gain;
	if (n_kept == 0) {
		if (len || vf != VF_RAW)
			return udfs_error(
			    -EIO, "lossy chunk: values for no kept element");
		return 0;
	}
	if (p->values == UDFS_VAL_TRELLIS)
		return vs_trellis(vs, p, vf, in, len);
	if (p->values == UDFS_VAL_CODES) {
		for (unsigned c = 0; c < 256; c++) {
			float q = p->lo + (float)c * p->step;

			vs->lut[c] = p->gain * q;
		}
	} else {
		vs->lut[0] = p->gain * p->step;
		vs->lut[1] = p->gain * -p->step;
	}
	if (vf == VF_RC && p->values == UDFS_VAL_CODES) {
		vs->kind = VS_RC_CODES;
		code_init(&vs->cm, p);
		rc_dec_init(&vs->rc, in, len);
		return 0;
	}
	if ((vf == VF_RANS || vf == VF_RANS4 || vf == VF_RANS32 ||
	     vf == VF_RANS32S) &&
	    p->values == UDFS_VAL_CODES) {
		/* Room for any table: formats 5 and 6's are the larger. */
		void *tab = udfs_scratch(UDFS_SCRATCH_VALUES,
					 RANS_M * sizeof(struct rans4_slot));

		if (!tab)
			return -ENOMEM;
		vs->kind = vf == VF_RANS    ? VS_RANS
			   : vf == VF_RANS4 ? VS_RANS4
					    : VS_RANS32;
		if (vf == VF_RANS)
			return udfs_rans_dec_init(&vs->rans, in, len, p->bits,
						  tab);
		if (vf == VF_RANS4)
			return udfs_rans4_dec_init(&vs->rans4, in, len, p->bits,
						   vs->lut, tab);
		return udfs_rans32_dec_init(&vs->rans32, in, len, p->bits,
					    vf == VF_RANS32S, vs->lut, tab);
	}
	if (vf == VF_RC && p->values == UDFS_VAL_SIGN) {
		vs->kind = VS_RC_SIGNS;
		vs->sign = RC_HALF;
		rc_dec_init(&vs->rc, in, len);
		return 0;
	}
	ret = p->values == UDFS_VAL_NATIVE ? vs_planes(vs, vf, in, len)
					   : vs_small(vs, p, vf, in, len);
	if (ret == -EIO)
		ret = udfs_error(
		    -EIO,
		    "lossy chunk: bad value section (format %u, %zu bytes)", vf,
		    len);
	return ret;
}

static int vs_rc_codes(struct val_src *vs, float *d, uint32_t k)
{
	struct rc_dec rc = vs->rc;
	unsigned c;
	int ret = 0;

	for (uint32_t j = 0; j < k; j++) {
		if (!code_dec(&rc, &vs->cm, &c)) {
			ret = udfs_error(-EIO,
					 "lossy chunk: code %u out of range",
					 vs->done - k + j);
			break;
		}
		d[j] = vs->lut[c];
	}
	vs->rc = rc;
	return ret;
}

/* rANS-coded codes: symbol j of the section uses state j mod 2. A table
 * holds only symbols below 2^b, so every code decoded is in range. */
static void vs_rans_codes(struct val_src *vs, float *d, uint32_t at, uint32_t k)
{
	const uint32_t *tab = vs->rans.tab;
	const uint8_t *p = vs->rans.p;
	size_t len = vs->rans.len, pos = vs->rans.pos;
	uint32_t x0 = vs->rans.x[0], x1 = vs->rans.x[1], j = 0;

	if (at & 1 && k) {
		d[j++] = vs->lut[rans_dec_step(&x1, tab, p, len, &pos)];
	}
	for (; j + 1 < k; j += 2) {
		d[j] = vs->lut[rans_dec_step(&x0, tab, p, len, &pos)];
		d[j + 1] = vs->lut[rans_dec_step(&x1, tab, p, len, &pos)];
	}
	if (j < k)
		d[j] = vs->lut[rans_dec_step(&x0, tab, p, len, &pos)];
	vs->rans.x[0] = x0;
	vs->rans.x[1] = x1;
	vs->rans.pos = pos;
}

/* The next k deltas into d (k never passes the count). 0 or -EIO. */
static int vs_next(struct val_src *vs, float *d, uint32_t k)
{
	const uint8_t *v = vs->bytes;
	uint32_t x, at = vs->done;
	int ret = 0;

	vs->done += k;
	switch (vs->kind) {
	case VS_RC_CODES:
		return vs_rc_codes(vs, d, k);
	case VS_RANS:
		vs_rans_codes(vs, d, at, k);
		break;
	case VS_RANS4:
		udfs_rans4_decode(&vs->rans4, at, d, k);
		break;
	case VS_RANS32:
		udfs_rans32_decode(&vs->rans32, at, d, k);
		break;
	case VS_RC_SIGNS:
		for (uint32_t j = 0; j < k; j++)
			d[j] = vs->lut[rc_dec_bit(&vs->rc, &vs->sign)];
		break;
	case VS_TRELLIS: /* the length was checked: every read succeeds */
		for (uint32_t i = 0; i < k; i++) {
			if (vs->j == 0) {
				x = 0;
				bitr_get(&vs->br, 1, &x);
				vs->state = udfs_trellis_next(vs->state, x);
			}
			d[i] = vs->tlut[vs->state * vs->nb + vs->j];
			vs->j = vs->j + 1 == vs->nb ? 0 : vs->j + 1;
		}
		break;
	case VS_PACKED: /* the length was checked: every read succeeds */
		for (uint32_t j = 0; j < k; j++) {
			x = 0;
			bitr_get(&vs->br, vs->nb, &x);
			d[j] = vs->lut[x];
		}
		break;
	case VS_BYTES:
		for (uint32_t j = 0; j < k; j++) {
			if (v[at + j] >> vs->nb)
				return udfs_error(
				    -EIO, "lossy chunk: code %u above %u bits",
				    v[at + j], vs->nb);
			d[j] = vs->lut[v[at + j]];
		}
		break;
	case VS_PLANES:
		for (uint32_t j = 0; j < k; j++) {
			uint8_t e[4];

			for (unsigned b = 0; b < vs->es; b++)
				e[b] = v[(size_t)b * vs->n_kept + at + j];
			d[j] = vs->gain * udfs_dtype_load_f32(vs->dtype, e, 0);
		}
		break;
	}
	return ret;
}

/* After the last value: a range-coded section must end exactly there. */
static int vs_finish(const struct val_src *vs)
{
	if ((vs->kind == VS_RC_CODES || vs->kind == VS_RC_SIGNS) &&
	    !rc_dec_finish(&vs->rc))
		return udfs_error(
		    -EIO,
		    "lossy chunk: range-coded %s do not end where they "
		    "should",
		    vs->kind == VS_RC_CODES ? "codes" : "signs");
	if ((vs->kind == VS_RANS && !udfs_rans_dec_finish(&vs->rans)) ||
	    (vs->kind == VS_RANS4 && !udfs_rans4_dec_finish(&vs->rans4)) ||
	    (vs->kind == VS_RANS32 && !udfs_rans32_dec_finish(&vs->rans32)))
		return udfs_error(
		    -EIO,
		    "lossy chunk: rANS codes do not end where they should");
	return 0;
}

int udfs_lossy_values_decode(const udfs_lossy_params *p, int dtype, unsigned vf,
			     const uint8_t *in, size_t len, uint32_t n_kept,
			     float *d)
{
	struct val_src vs;
	int ret = vs_init(&vs, p, dtype, vf, in, len, n_kept);

	if (ret == 0 && n_kept)
		ret = vs_next(&vs, d, n_kept);
	return ret < 0 ? ret : vs_finish(&vs);
}

/* The largest finite value of a lossy dtype. */
static float finite_max(int dtype)
{
	switch (dtype) {
	case UDFS_DT_F16:
		return 65504.0f;
	case UDFS_DT_BF16:
		return 0x1.fep127f; /* 0x7f7f */
	default:
		return FLT_MAX;
	}
}

/*
 * w = b + d, kept finite when the base weight b is: a sum past the dtype's
 * range (outlier deltas times the 1/(1-s) gain reach it easily in F16)
 * saturates at the largest finite value, and a delta that is not a number
 * (stores whose quantization step overflowed) leaves the base weight. Only
 * sums that would round to an infinity or a NaN change: every finite
 * result is the same bits as before, as udfs(5) requires of old stores.
 */
float udfs_lossy_finite_sum(int dtype, float b, float d)
{
	float w = b + d, max = finite_max(dtype);

	if (!isfinite(b) || fabsf(w) <= max)
		return w;
	if (isnan(w))
		return b;
	return w > 0 ? max : -max;
}

#ifdef UDFS_SIMD_X86
/*
 * add_bf16() 16 kept elements at a time, from j on while the last of them
 * is not the chunk's last element (the gather reads 4 bytes at each
 * position): the base weights gathered, widened and added in float32 lanes
 * as the scalar code adds them, and rounded the same way. A group with a
 * sum that would round to an infinity or a NaN is left to the scalar loop,
 * which alone takes the slow path. Positions are distinct, so writing the
 * 16 results after reading their bases is what the scalar loop does in
 * place too. Returns the new j.
 */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static uint32_t
add_bf16_avx512(const uint8_t *bp, uint8_t *op, const uint32_t *pos,
		const float *d, uint32_t j, uint32_t n_kept, uint32_t n)
{
	const __m512i abs = _mm512_set1_epi32(0x7fffffff);
	const __m512i top = _mm512_set1_epi32(0x7f7f8000);
	const __m512i half = _mm512_set1_epi32(0x7fff);
	const __m512i one = _mm512_set1_epi32(1);
	uint16_t h[16];

	for (; j + 16 <= n_kept && pos[j + 15] + 1 < n; j += 16) {
		__m512i at = _mm512_loadu_si512(pos + j);
		__m512i b = _mm512_slli_epi32(
		    _mm512_i32gather_epi32(at, (const void *)bp, 2), 16);
		__m512i u = _mm512_castps_si512(_mm512_add_ps(
		    _mm512_castsi512_ps(b), _mm512_loadu_ps(d + j)));

		if (_mm512_cmpge_epu32_mask(_mm512_and_si512(u, abs), top))
			break;
		u = _mm512_add_epi32(
		    _mm512_add_epi32(u, half),
		    _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
		_mm256_storeu_si256(
		    (__m256i *)h,
		    _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
		for (unsigned q = 0; q < 16; q++)
			memcpy(op + 2 * (size_t)pos[j + q], &h[q], 2);
	}
	return j;
}
#endif

/* The BF16 case of the reconstruction loop (udfs_lossy_bf16_add), over the
 * kept elements of a chunk of n. */
static void add_bf16(const void *base, void *out, const uint32_t *pos,
		     const float *d, uint32_t n_kept, uint32_t n)
{
	const uint8_t *bp = base;
	uint8_t *op = out;
	uint32_t j = 0;

	while (j < n_kept) {
#ifdef UDFS_SIMD_X86
		if (udfs_simd_level() >= UDFS_SIMD_AVX512)
			j = add_bf16_avx512(bp, op, pos, d, j, n_kept, n);
#endif
		/* The rest, or one group of 16 the vector loop left. */
		for (uint32_t end = UDFS_MIN(n_kept, j + 16); j < end; j++) {
			size_t at = 2 * (size_t)pos[j];
			uint16_t h;

			memcpy(&h, bp + at, 2);
			h = udfs_lossy_bf16_add(h, d[j]);
			memcpy(op + at, &h, 2);
		}
	}
}

/* A version 1 chunk being decoded: its mask and its value section. */
struct v1_dec {
	struct mask_src ms;
	struct val_src vs;
};

/* Whether mask format mf may hold a mask of kind mask: positions stored
 * for explicit masks, none for the others, a seeded mask by either rule. */
static bool mask_format_fits(unsigned mask, unsigned mf)
{
	switch (mask) {
	case UDFS_MASK_EXPLICIT:
		return mf != MF_NONE && mf != MF_SEEDED_LEVELS;
	case UDFS_MASK_SEEDED:
		return mf == MF_NONE || mf == MF_SEEDED_LEVELS;
	default:
		return mf == MF_NONE;
	}
}

/* Parse the header of a version 1 chunk and set up both sections. */
static int v1_open(struct v1_dec *v, const udfs_lossy_params *p, int dtype,
		   uint64_t first, uint32_t n, const uint8_t *buf,
		   size_t in_len)
{
	uint32_t n_kept = n, mask_len = 0, val_len;
	unsigned mf, vf;
	size_t at = 1;
	int ret;

	if (in_len < 1)
		return udfs_error(-EIO, "lossy chunk: empty");
	if (buf[0] >> 6 != LOSSY_VERSION)
		return udfs_error(-EIO, "lossy chunk: format version %u",
				  buf[0] >> 6);
	mf = buf[0] & 7;
	vf = buf[0] >> 3 & 7;
	if (!mask_format_fits(p->mask, mf))
		return udfs_error(
		    -EIO, "lossy chunk: mask format %u for mask kind %u", mf,
		    p->mask);
	if (p->mask == UDFS_MASK_EXPLICIT) {
		if (!udfs_lossy_get_varint(buf, in_len, &at, &n_kept) ||
		    !udfs_lossy_get_varint(buf, in_len, &at, &mask_len))
			return udfs_error(-EIO, "lossy chunk: bad header");
		if (n_kept > n)
			return udfs_error(-EIO, "lossy chunk: %u kept of %u",
					  n_kept, n);
	}
	if (!udfs_lossy_get_varint(buf, in_len, &at, &val_len))
		return udfs_error(-EIO, "lossy chunk: bad header");
	if ((uint64_t)at + mask_len + val_len != in_len)
		return udfs_error(
		    -EIO, "lossy chunk: sections of %u + %u bytes in %zu",
		    mask_len, val_len, in_len - at);
	ret = ms_init(&v->ms, p, mf, buf + at, mask_len, first, n, n_kept);
	if (ret < 0)
		return ret;
	return vs_init(&v->vs, p, dtype, vf, buf + at + mask_len, val_len,
		       v->ms.n_kept);
}

/* The next block of kept positions and deltas: its size (at most
 * KBLOCK), 0 after the last one once both sections ended as they must,
 * or -errno. */
static int v1_next(struct v1_dec *v, uint32_t *pos, float *d)
{
	int k = ms_next(&v->ms, pos, KBLOCK), ret;

	if (k > 0)
		ret = vs_next(&v->vs, d, (uint32_t)k);
	else if (k == 0)
		ret = ms_finish(&v->ms) < 0 ? -EIO : vs_finish(&v->vs);
	else
		ret = k;
	return ret < 0 ? ret : k;
}

int udfs_lossy_foreach(const udfs_lossy_params *p, int dtype, uint64_t first,
		       uint32_t n, const void *in, size_t in_len,
		       udfs_lossy_kept_fn fn, udfs_lossy_run_fn run, void *ctx)
{
	struct v1_dec v;
	uint32_t pos[KBLOCK], at;
	bool runs;
	float d[KBLOCK];
	int k, ret;

	ret = check_params(p, dtype, -EIO);
	if (ret < 0)
		return ret;
	ret = v1_open(&v, p, dtype, first, n, in, in_len);
	/* Every element kept: the positions go without saying. */
	runs = ret == 0 && run && v.ms.kind == MS_ALL;
	while (ret == 0) {
		at = v.ms.done;
		k = v1_next(&v, runs ? NULL : pos, d);
		if (k <= 0)
			return k;
		ret = runs ? run(ctx, at, d, (uint32_t)k)
			   : fn(ctx, pos, d, (uint32_t)k);
	}
	return ret;
}

int udfs_lossy_foreach_kept(const udfs_lossy_params *p, int dtype,
			    uint64_t first, uint32_t n, const void *in,
			    size_t in_len, udfs_lossy_kept_fn fn, void *ctx)
{
	return udfs_lossy_foreach(p, dtype, first, n, in, in_len, fn, NULL,
				  ctx);
}

/* Where the kept deltas of a version 1 chunk of n elements go. */
struct apply_ctx {
	int dtype;
	uint32_t n;
	const void *base;
	void *out;
};

static int apply_kept(void *ctx, const uint32_t *pos, const float *d,
		      uint32_t k)
{
	const struct apply_ctx *a = ctx;

	if (a->dtype == UDFS_DT_BF16) {
		add_bf16(a->base, a->out, pos, d, k, a->n);
		return 0;
	}
	for (uint32_t j = 0; j < k; j++) {
		float b = udfs_dtype_load_f32(a->dtype, a->base, pos[j]);

		udfs_dtype_store_f32(a->dtype, a->out, pos[j],
				     udfs_lossy_finite_sum(a->dtype, b, d[j]));
	}
	return 0;
}

/* A version 1 chunk; udfs_lossy_decode_chunk() (codec/mix.c) picks the
 * version. Dropped elements keep the base bits exactly (NaN payloads too);
 * base may be out itself (decoding in place). */
int udfs_lossy_decode_v1(const udfs_lossy_params *p, int dtype, uint64_t first,
			 uint32_t n, const void *in, size_t in_len,
			 const void *base, void *out)
{
	struct apply_ctx a = {.dtype = dtype, .n = n, .base = base, .out = out};
	int ret = check_params(p, dtype, -EIO);

	if (ret < 0)
		return ret;
	if (out != base)
		memcpy(out, base, (size_t)n * udfs_dtype_size(dtype));
	return udfs_lossy_foreach_kept(p, dtype, first, n, in, in_len,
				       apply_kept, &a);
}

// SPDX-License-Identifier: MIT
/*
 * Static rANS coders of the lossy codec's b-bit codes (the section formats
 * are in codec/rans.h and udfs(5), "Lossy chunk"): frequency table
 * normalization, encoding, the table and stream checks of decoding, and
 * the four-lane decoder of format 5.
 */
#include "codec/rans.h"

#include <endian.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossy_i.h"
#include "common/util.h"

/* The cost in bits of changing frequency f to f + dir for a symbol seen
 * cnt times. */
static double step_cost(uint32_t cnt, uint32_t f, int dir)
{
	return (double)cnt * log2((double)f / (double)(f + (uint32_t)dir));
}

/*
 * Frequencies summing to RANS_M, nonzero exactly where cnt is: the counts
 * scaled and rounded, then moved one at a time where that costs the
 * fewest bits (the encoder's choice only: any valid table decodes).
 */
static void normalize(const uint32_t *cnt, unsigned ns, uint32_t total,
		      uint32_t *f)
{
	uint32_t sum = 0;

	for (unsigned s = 0; s < ns; s++) {
		f[s] = 0;
		if (cnt[s]) {
			uint64_t q =
			    ((uint64_t)cnt[s] * RANS_M + total / 2) / total;

			f[s] = q ? (uint32_t)q : 1;
		}
		sum += f[s];
	}
	while (sum != RANS_M) {
		int dir = sum < RANS_M ? 1 : -1;
		unsigned best = ns;
		double bc = 0;

		for (unsigned s = 0; s < ns; s++) {
			double c;

			if (!cnt[s] || (dir < 0 && f[s] == 1))
				continue;
			c = step_cost(cnt[s], f[s], dir);
			if (best == ns || c < bc) {
				best = s;
				bc = c;
			}
		}
		f[best] = (uint32_t)((int)f[best] + dir);
		sum = (uint32_t)((int)sum + dir);
	}
}

/* The table at p (section header up to the states): its length. */
static size_t put_table(uint8_t *p, const uint32_t *f, unsigned ns)
{
	unsigned lo = 0, hi = ns - 1;
	size_t at = 2;

	while (!f[lo])
		lo++;
	while (!f[hi])
		hi--;
	p[0] = (uint8_t)lo;
	p[1] = (uint8_t)hi;
	for (unsigned s = lo; s <= hi; s++)
		at += udfs_lossy_put_varint(p + at, f[s]);
	return at;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The frequencies f and cumulative starts of n symbols counted in cnt. */
static void model_counts(const uint32_t *cnt, uint32_t n, unsigned bits,
			 uint32_t *f, uint32_t *start)
{
	unsigned ns = 1u << bits;

	normalize(cnt, ns, n, f);
	for (unsigned s = 0, c = 0; s < ns; c += f[s], s++)
		start[s] = c;
}

/* The frequencies f and cumulative starts of the n symbols sym. */
static void model(const uint8_t *sym, uint32_t n, unsigned bits, uint32_t *f,
		  uint32_t *start)
{
	uint32_t cnt[256] = {0};

	for (uint32_t j = 0; j < n; j++)
		cnt[sym[j]]++;
	model_counts(cnt, n, bits, f, start);
}

/*
 * The encoders' x / f for a state x < 2^32 and a frequency 1 <= f <=
 * RANS_M, without a division (the slowest step of encoding): with
 * m = ceil(2^45 / f) = (2^45 + e) / f, 0 <= e < f, x * m / 2^45 exceeds
 * x / f by less than x / 2^45 < 2^-13, less than the 1/f that separates
 * x / f from the next integer, so the floor is exact.
 */
#define RCP_SHIFT 45
static void reciprocals(const uint32_t *f, unsigned bits, uint64_t *rcp)
{
	for (unsigned s = 0; s < 1u << bits; s++)
		rcp[s] = f[s] ? ((1ull << RCP_SHIFT) + f[s] - 1) / f[s] : 0;
}

/* x encoding a symbol of frequency f, cumulative start and reciprocal m. */
static inline uint32_t rans_step(uint32_t x, uint32_t f, uint32_t start,
				 uint64_t m)
{
	uint32_t d = (uint32_t)(((unsigned __int128)x * m) >> RCP_SHIFT);

	return (d << RANS_PBITS) + (x - d * f) + start;
}

uint8_t *udfs_rans_encode(const uint8_t *sym, uint32_t n, unsigned bits,
			  size_t *len)
{
	uint32_t f[256], start[256], x[2] = {RANS_L, RANS_L};
	uint64_t rcp[256];
	size_t cap = (size_t)n * 2 + 8, tlen;
	uint8_t tbl[2 + 256 * 5], *buf, *end, *q, *out;

	model(sym, n, bits, f, start);
	reciprocals(f, bits, rcp);
	buf = malloc(cap);
	if (!buf)
		return NULL;
	end = q = buf + cap;
	for (uint32_t j = n; j-- > 0;) {
		unsigned s = sym[j];
		uint32_t *xs = &x[j & 1];
		uint32_t xmax = ((RANS_L >> RANS_PBITS) << 8) * f[s];

		while (*xs >= xmax) {
			*--q = (uint8_t)*xs;
			*xs >>= 8;
		}
		*xs = rans_step(*xs, f[s], start[s], rcp[s]);
	}
	q -= 8;
	put_u32le(q, x[0]);
	put_u32le(q + 4, x[1]);
	tlen = put_table(tbl, f, 1u << bits);
	*len = tlen + (size_t)(end - q);
	out = malloc(*len);
	if (out) {
		memcpy(out, tbl, tlen);
		memcpy(out + tlen, q, (size_t)(end - q));
	}
	free(buf);
	return out;
}

/* The frequency table at in[*at..len) into tab. 0 or -EIO. */
static int get_table(const uint8_t *in, size_t len, size_t *at, unsigned bits,
		     uint32_t *tab)
{
	unsigned lo, hi;
	uint32_t f, c = 0;

	if (len < 2)
		return -EIO;
	lo = in[0];
	hi = in[1];
	*at = 2;
	if (lo > hi || hi >> bits)
		return -EIO;
	for (unsigned s = lo; s <= hi; s++) {
		if (!udfs_lossy_get_varint(in, len, at, &f) || f > RANS_M - c)
			return -EIO;
		if (f == 0 && (s == lo || s == hi))
			return -EIO;
		for (uint32_t i = 0; i < f; i++)
			tab[c + i] = s << 24 | i << RANS_PBITS | (f - 1);
		c += f;
	}
	return c == RANS_M ? 0 : -EIO;
}

static uint32_t get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int udfs_rans_dec_init(struct rans_dec *d, const uint8_t *in, size_t len,
		       unsigned bits, uint32_t *tab)
{
	size_t at;

	if (bits < 1 || bits > 8 || get_table(in, len, &at, bits, tab) < 0)
		return udfs_error(-EIO, "lossy chunk: bad rANS table");
	if (len - at < 8)
		return udfs_error(-EIO, "lossy chunk: rANS states cut short");
	for (int i = 0; i < 2; i++) {
		d->x[i] = get_u32le(in + at + 4 * i);
		if (d->x[i] < RANS_L || d->x[i] >> 31)
			return udfs_error(-EIO, "lossy chunk: bad rANS state");
	}
	d->p = in;
	d->len = len;
	d->pos = at + 8;
	d->tab = tab;
	return 0;
}

bool udfs_rans_dec_finish(const struct rans_dec *d)
{
	return d->pos == d->len && d->x[0] == RANS_L && d->x[1] == RANS_L;
}

/* What encoding a symbol needs: its frequency, cumulative start and the
 * reciprocal of its frequency (reciprocals()), side by side. */
struct enc_sym {
	uint64_t rcp;
	uint32_t f, start;
};

/* One step of lane encoder state *x on symbol e, its unit (if any) going
 * below *q. Branchless: the unit is always stored and *q moves only when
 * it is emitted (the lanes' regions are 2 bytes apart, so the store stays
 * in this lane's), as whether a unit is due is a coin flip that a branch
 * mispredicts. */
static inline void lane_step(uint32_t *x, uint8_t **q, const struct enc_sym *e)
{
	/* x >= ((RANS4_L >> RANS_PBITS) << 16) * f, a multiple of 2^20:
	 * one unit brings x below it */
	uint32_t emit = (*x >> 20) >= e->f;
	uint32_t y = *x;

	(*q)[-2] = (uint8_t)y;
	(*q)[-1] = (uint8_t)(y >> 8);
	*q -= 2 * emit;
	y = emit ? y >> 16 : y;
	*x = rans_step(y, e->f, e->start, e->rcp);
}

/*
 * The four lanes of sym[0..n) (lane l: the symbols j with j % 4 == l),
 * last first, each into the 16-bit units ending at q[l] (moved down), into
 * their final states x[]. The lanes are independent chains, stepped side
 * by side so that their multiplies overlap; the bytes are each lane's
 * alone, as one lane after another would write them. Lanes by constant
 * index only, so that their states and pointers stay in registers.
 */
static void encode_lanes(const uint8_t *sym, uint32_t n,
			 const struct enc_sym *e, uint32_t *x, uint8_t **q)
{
	uint32_t full = n / 4, x0 = RANS4_L, x1 = RANS4_L, x2 = RANS4_L,
		 x3 = RANS4_L;
	uint8_t *q0 = q[0], *q1 = q[1], *q2 = q[2], *q3 = q[3];
	const uint8_t *t = sym + 4 * (size_t)full; /* the lanes' last ones */

	if (n % 4 > 2)
		lane_step(&x2, &q2, &e[t[2]]);
	if (n % 4 > 1)
		lane_step(&x1, &q1, &e[t[1]]);
	if (n % 4 > 0)
		lane_step(&x0, &q0, &e[t[0]]);
	for (uint32_t g = full; g-- > 0;) {
		const uint8_t *s = sym + 4 * (size_t)g;

		lane_step(&x3, &q3, &e[s[3]]);
		lane_step(&x2, &q2, &e[s[2]]);
		lane_step(&x1, &q1, &e[s[1]]);
		lane_step(&x0, &q0, &e[s[0]]);
	}
	x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
	q[0] = q0, q[1] = q1, q[2] = q2, q[3] = q3;
}

uint8_t *udfs_rans4_encode(const uint8_t *sym, uint32_t n, unsigned bits,
			   size_t *len)
{
	uint32_t cnt[256] = {0};

	for (uint32_t j = 0; j < n; j++)
		cnt[sym[j]]++;
	return udfs_rans4_encode_counted(sym, n, bits, cnt, len);
}

uint8_t *udfs_rans4_encode_counted(const uint8_t *sym, uint32_t n,
				   unsigned bits, const uint32_t *cnt,
				   size_t *len)
{
	uint32_t f[256], start[256], x[4];
	uint64_t rcp[256];
	struct enc_sym e[256];
	/* a lane's units, and the 2 bytes below them lane_step may store */
	size_t cap = ((size_t)n / 4 + 1) * 2 + 2, at;
	uint8_t *buf, *lane_end[4], *lane_q[4], *out;

	model_counts(cnt, n, bits, f, start);
	reciprocals(f, bits, rcp);
	for (unsigned c = 0; c < 1u << bits; c++)
		e[c] = (struct enc_sym){
		    .rcp = rcp[c], .f = f[c], .start = start[c]};
	buf = malloc(4 * cap);
	if (!buf)
		return NULL;
	for (unsigned l = 0; l < 4; l++)
		lane_q[l] = lane_end[l] = buf + (l + 1) * cap;
	encode_lanes(sym, n, e, x, lane_q);
	out = malloc(2 + 256 * 5 + 16 + 15 + 4 * cap);
	if (out) {
		at = put_table(out, f, 1u << bits);
		for (unsigned l = 0; l < 4; l++, at += 4)
			put_u32le(out + at, x[l]);
		for (unsigned l = 0; l < 3; l++)
			at += udfs_lossy_put_varint(
			    out + at, (uint32_t)(lane_end[l] - lane_q[l]));
		for (unsigned l = 0; l < 4; l++) {
			memcpy(out + at, lane_q[l],
			       (size_t)(lane_end[l] - lane_q[l]));
			at += (size_t)(lane_end[l] - lane_q[l]);
		}
		*len = at;
	}
	free(buf);
	return out;
}

int udfs_rans4_dec_init(struct rans4_dec *d, const uint8_t *in, size_t len,
			unsigned bits, uint32_t *tab)
{
	size_t at;
	uint32_t sl;

	if (bits < 1 || bits > 8 || get_table(in, len, &at, bits, tab) < 0)
		return udfs_error(-EIO, "lossy chunk: bad rANS table");
	if (len - at < 16)
		return udfs_error(-EIO, "lossy chunk: rANS states cut short");
	for (int l = 0; l < 4; l++, at += 4) {
		d->x[l] = get_u32le(in + at);
		if (d->x[l] < RANS4_L)
			return udfs_error(-EIO, "lossy chunk: bad rANS state");
	}
	for (int l = 0; l < 4; l++) {
		if (l < 3 && !udfs_lossy_get_varint(in, len, &at, &sl))
			return udfs_error(-EIO, "lossy chunk: bad rANS lanes");
		d->end[l] = l < 3 ? sl : 0;
	}
	for (int l = 0; l < 4; l++) {
		size_t room = len - at;

		if (l == 3)
			d->end[3] = room;
		if (d->end[l] > room || d->end[l] % 2)
			return udfs_error(-EIO, "lossy chunk: bad rANS lanes");
		d->pos[l] = at;
		at += d->end[l];
		d->end[l] = at;
	}
	d->p = in;
	d->tab = tab;
	return 0;
}

/* One step of lane l, its stream bounds checked. */
static unsigned step_checked(struct rans4_dec *d, unsigned l)
{
	uint32_t e = d->tab[d->x[l] & (RANS_M - 1)], x = d->x[l];

	x = ((e & (RANS_M - 1)) + 1) * (x >> RANS_PBITS) +
	    (e >> RANS_PBITS & (RANS_M - 1));
	if (x < RANS4_L) {
		size_t p = d->pos[l];
		uint32_t u = p + 2 <= d->end[l] ? (uint32_t)d->p[p] |
						      (uint32_t)d->p[p + 1] << 8
						: 0;

		x = x << 16 | u;
		d->pos[l] = p + 2;
	}
	d->x[l] = x;
	return e >> 24;
}

static inline uint32_t load_u16le(const uint8_t *p)
{
	uint16_t u;

	memcpy(&u, p, 2); /* one load */
	return le16toh(u);
}

/* One step of a lane whose unit at q is there: no branch (a select
 * would compile to one), q moves on when the unit is taken. */
#define RANS4_STEP(x, q, out)                                                  \
	do {                                                                   \
		uint32_t e_ = tab[(x) & (RANS_M - 1)], r_;                     \
		(x) = ((e_ & (RANS_M - 1)) + 1) * ((x) >> RANS_PBITS) +        \
		      (e_ >> RANS_PBITS & (RANS_M - 1));                       \
		r_ = (x) < RANS4_L;                                            \
		(x) = (x) << (16 * r_) | (load_u16le(q) & -r_);                \
		(q) += 2 * r_;                                                 \
		(out) = lut[e_ >> 24];                                         \
	} while (0)

/* g groups of four symbols (lanes 0..3) into out, each lane's units
 * surely there. */
static void decode_groups(struct rans4_dec *d, const float *lut, float *out,
			  uint32_t g)
{
	const uint32_t *tab = d->tab;
	const uint8_t *q0 = d->p + d->pos[0], *q1 = d->p + d->pos[1],
		      *q2 = d->p + d->pos[2], *q3 = d->p + d->pos[3];
	uint32_t x0 = d->x[0], x1 = d->x[1], x2 = d->x[2], x3 = d->x[3];
	float *end = out + 4 * (size_t)g;

	for (; out < end; out += 4) {
		RANS4_STEP(x0, q0, out[0]);
		RANS4_STEP(x1, q1, out[1]);
		RANS4_STEP(x2, q2, out[2]);
		RANS4_STEP(x3, q3, out[3]);
	}
	d->x[0] = x0, d->x[1] = x1, d->x[2] = x2, d->x[3] = x3;
	d->pos[0] = (size_t)(q0 - d->p), d->pos[1] = (size_t)(q1 - d->p);
	d->pos[2] = (size_t)(q2 - d->p), d->pos[3] = (size_t)(q3 - d->p);
}

/* Groups of four symbols (lanes 0..3) that surely find their units. */
static uint32_t safe_groups(const struct rans4_dec *d)
{
	size_t g = SIZE_MAX;

	for (int l = 0; l < 4; l++)
		g = UDFS_MIN(g, d->pos[l] + 2 <= d->end[l]
				    ? (d->end[l] - d->pos[l]) / 2
				    : 0);
	return (uint32_t)UDFS_MIN(g, UINT32_MAX);
}

void udfs_rans4_decode(struct rans4_dec *d, uint32_t at, const float *lut,
		       float *out, uint32_t k)
{
	uint32_t j = 0;

	for (; j < k && (at + j) % 4; j++)
		out[j] = lut[step_checked(d, (at + j) % 4)];
	while (k - j >= 4) {
		uint32_t g = UDFS_MIN(safe_groups(d), (k - j) / 4);

		if (!g) { /* near an end: checked steps */
			for (unsigned l = 0; l < 4; l++, j++)
				out[j] = lut[step_checked(d, l)];
			continue;
		}
		decode_groups(d, lut, out + j, g);
		j += 4 * g;
	}
	for (; j < k; j++)
		out[j] = lut[step_checked(d, (at + j) % 4)];
}

bool udfs_rans4_dec_finish(const struct rans4_dec *d)
{
	for (int l = 0; l < 4; l++)
		if (d->pos[l] != d->end[l] || d->x[l] != RANS4_L)
			return false;
	return true;
}

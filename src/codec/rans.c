// SPDX-License-Identifier: MIT
/*
 * Static rANS coder of the lossy codec's b-bit codes (the section format
 * is in codec/rans.h and udfs(5), "Lossy chunk"): frequency table
 * normalization, encoding, and the table and stream checks of decoding.
 */
#include "codec/rans.h"

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

/*
 * x / f for a state x < 2^31 and a frequency 1 <= f <= RANS_M, without a
 * division (the slowest step of the encoder): with m = ceil(2^44 / f) =
 * (2^44 + e) / f, 0 <= e < f, x * m / 2^44 exceeds x / f by less than
 * x / 2^44 < 2^-13, less than the 1/f that separates x / f from the next
 * integer; so the floor is exact.
 */
#define RCP_SHIFT 44
static inline uint32_t div_rcp(uint32_t x, uint64_t m)
{
	return (uint32_t)(((unsigned __int128)x * m) >> RCP_SHIFT);
}

/* Encode symbol s into state *x, writing renormalization bytes below *q. */
static inline void enc_put(uint32_t *x, uint8_t **q, uint32_t f, uint32_t start,
			   uint64_t rcp)
{
	uint32_t xmax = ((RANS_L >> RANS_PBITS) << 8) * f, d;

	while (*x >= xmax) {
		*--*q = (uint8_t)*x;
		*x >>= 8;
	}
	d = div_rcp(*x, rcp);
	*x = (d << RANS_PBITS) + (*x - d * f) + start;
}

uint8_t *udfs_rans_encode(const uint8_t *sym, uint32_t n, unsigned bits,
			  size_t *len)
{
	unsigned ns = 1u << bits;
	uint32_t cnt[256] = {0}, f[256], start[256], x0 = RANS_L, x1 = RANS_L;
	uint64_t rcp[256];
	size_t cap = (size_t)n * 2 + 8, tlen;
	uint8_t tbl[2 + 256 * 5], *buf, *end, *q, *out;

	for (uint32_t j = 0; j < n; j++)
		cnt[sym[j]]++;
	normalize(cnt, ns, n, f);
	for (unsigned s = 0, c = 0; s < ns; c += f[s], s++) {
		start[s] = c;
		rcp[s] = f[s] ? ((1ull << RCP_SHIFT) + f[s] - 1) / f[s] : 0;
	}
	buf = malloc(cap);
	if (!buf)
		return NULL;
	end = q = buf + cap;
	/* Symbol j goes to state j & 1, last symbol first. */
	for (uint32_t j = n; j-- > 0;) {
		unsigned s = sym[j];

		enc_put(j & 1 ? &x1 : &x0, &q, f[s], start[s], rcp[s]);
	}
	q -= 8;
	put_u32le(q, x0);
	put_u32le(q + 4, x1);
	tlen = put_table(tbl, f, ns);
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

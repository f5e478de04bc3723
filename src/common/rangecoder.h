/* SPDX-License-Identifier: MIT */
/*
 * Private adaptive binary range coder for the lossy chunk codec (the LZMA
 * coder: 32-bit range, carry propagated through a cached byte, 15-bit
 * probabilities adapted by a shift of RC_SHIFT after every bit).
 *
 * Stream: the bytes the LZMA encoder shifts out, without its first byte
 * (always 0), and ended canonically: the final value is the number in
 * [low, low + range) with the most trailing zero bits, its four bytes
 * written out and then stripped of their trailing zero bytes. The decoder
 * reads zeros past the end of its input, so the stripped bytes cost
 * nothing, and rc_dec_finish() checks that the stream is exactly the
 * canonical one for the bits it decoded: every input byte read, at most
 * four zeros read past the end, the last byte non-zero unless all four
 * were stripped, and the final value the canonical one. A truncated or
 * extended stream is thus rejected unless it happens to be the canonical
 * stream of other bits. Decoding never reads out of bounds on any input.
 */
#ifndef UDFS_RANGECODER_I_H
#define UDFS_RANGECODER_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define RC_PBITS 15
#define RC_ONE (1u << RC_PBITS)
#define RC_HALF (RC_ONE / 2)
#define RC_SHIFT 6
#define RC_TOP (1u << 24)

/* p is the probability of a 0 bit, in 1/RC_ONE; adaptation keeps any p in
 * [1, RC_ONE - 1] there (it stops moving within 2^RC_SHIFT of either end),
 * so no bit ever gets a zero-width interval. */
typedef uint16_t rc_prob;

struct rc_enc {
	uint8_t *p; /* output, grown as needed */
	size_t len, cap;
	uint64_t low; /* up to 33 bits: bit 32 is a pending carry */
	uint32_t range;
	uint8_t cache;	     /* last byte not yet written (carry target) */
	uint64_t cache_size; /* 1 + pending 0xff bytes after cache */
	bool first;	     /* the first byte out is the implicit 0 */
};

static inline void rc_enc_init(struct rc_enc *e)
{
	e->cap = 256;
	e->p = udfs_xmalloc(e->cap);
	e->len = 0;
	e->low = 0;
	e->range = 0xffffffffu;
	e->cache = 0;
	e->cache_size = 1;
	e->first = true;
}

static inline void rc_enc_byte(struct rc_enc *e, uint8_t b)
{
	if (e->first) {
		e->first = false;
		return;
	}
	if (e->len == e->cap) {
		e->cap *= 2;
		e->p = udfs_xrealloc(e->p, e->cap);
	}
	e->p[e->len++] = b;
}

static inline void rc_enc_shift_low(struct rc_enc *e)
{
	if ((uint32_t)e->low < 0xff000000u || (e->low >> 32) != 0) {
		uint8_t carry = (uint8_t)(e->low >> 32), t = e->cache;

		do {
			rc_enc_byte(e, (uint8_t)(t + carry));
			t = 0xff;
		} while (--e->cache_size != 0);
		e->cache = (uint8_t)(e->low >> 24);
	}
	e->cache_size++;
	e->low = (e->low & 0x00ffffffu) << 8;
}

static inline void rc_enc_bit(struct rc_enc *e, rc_prob *p, unsigned bit)
{
	uint32_t bound = (e->range >> RC_PBITS) * *p;

	if (!bit) {
		e->range = bound;
		*p = (rc_prob)(*p + ((RC_ONE - *p) >> RC_SHIFT));
	} else {
		e->low += bound;
		e->range -= bound;
		*p = (rc_prob)(*p - (*p >> RC_SHIFT));
	}
	while (e->range < RC_TOP) {
		e->range <<= 8;
		rc_enc_shift_low(e);
	}
}

/* Offset from low of the canonical final value: the point of
 * [low, low + range) with the most trailing zero bits. */
static inline uint32_t rc_canonical(uint32_t low, uint32_t range)
{
	for (int t = 32; t > 0; t--) {
		uint64_t m = (1ull << t) - 1;
		uint64_t off = (((uint64_t)low + m) & ~m) - low;

		if (off < range)
			return (uint32_t)off;
	}
	return 0;
}

/* End the stream; returns the malloc-ed bytes and their count in *len. */
static inline uint8_t *rc_enc_finish(struct rc_enc *e, size_t *len)
{
	size_t data;

	e->low += rc_canonical((uint32_t)e->low, e->range);
	for (int i = 0; i < 5; i++)
		rc_enc_shift_low(e);
	data = e->len - 4; /* the last four bytes are the final value */
	while (e->len > data && e->p[e->len - 1] == 0)
		e->len--;
	*len = e->len;
	return e->p;
}

struct rc_dec {
	const uint8_t *p;
	size_t len, pos; /* pos counts bytes read, past len too (zeros) */
	uint32_t range, code;
};

static inline uint8_t rc_dec_byte(struct rc_dec *d)
{
	uint8_t b = d->pos < d->len ? d->p[d->pos] : 0;

	d->pos++;
	return b;
}

static inline void rc_dec_init(struct rc_dec *d, const uint8_t *p, size_t len)
{
	d->p = p;
	d->len = len;
	d->pos = 0;
	d->range = 0xffffffffu;
	d->code = 0;
	for (int i = 0; i < 4; i++)
		d->code = d->code << 8 | rc_dec_byte(d);
}

static inline unsigned rc_dec_bit(struct rc_dec *d, rc_prob *p)
{
	uint32_t bound = (d->range >> RC_PBITS) * *p;
	unsigned bit;

	if (d->code < bound) {
		d->range = bound;
		*p = (rc_prob)(*p + ((RC_ONE - *p) >> RC_SHIFT));
		bit = 0;
	} else {
		d->code -= bound;
		d->range -= bound;
		*p = (rc_prob)(*p - (*p >> RC_SHIFT));
		bit = 1;
	}
	while (d->range < RC_TOP) {
		d->range <<= 8;
		d->code = d->code << 8 | rc_dec_byte(d);
	}
	return bit;
}

/* True when the stream was exactly the canonical one (see above). */
static inline bool rc_dec_finish(const struct rc_dec *d)
{
	uint32_t win = 0, low;

	/* the last four bytes read, zeros past the end */
	for (size_t i = d->pos - 4; i < d->pos; i++)
		win = win << 8 | (i < d->len ? d->p[i] : 0);
	low = win - d->code;

	if (d->pos < d->len || d->pos - d->len > 4)
		return false;
	if (d->pos - d->len < 4 && d->len && d->p[d->len - 1] == 0)
		return false;
	return d->code == rc_canonical(low, d->range);
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Private LSB-first bit writer and reader for the lossy chunk codec: bit i
 * of the stream is bit (i % 8) of byte i / 8. The writer fills a buffer
 * whose size the caller computed exactly beforehand; the reader never
 * reads past its input and reports running dry, so a corrupt stream is an
 * error, never an out-of-bounds read.
 */
#ifndef UDFS_BITIO_I_H
#define UDFS_BITIO_I_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct bitw {
	uint8_t *p;	/* output, at least bitw_bytes() of the final size */
	size_t pos;	/* bytes written */
	uint64_t acc;	/* pending bits, LSB first */
	unsigned nbits; /* number of pending bits, < 32 between calls */
};

static inline void bitw_init(struct bitw *w, uint8_t *p)
{
	w->p = p;
	w->pos = 0;
	w->acc = 0;
	w->nbits = 0;
}

/* Append the nb low bits of v (nb <= 32, v < 2^nb). */
static inline void bitw_put(struct bitw *w, uint64_t v, unsigned nb)
{
	w->acc |= v << w->nbits;
	w->nbits += nb;
	while (w->nbits >= 8) {
		w->p[w->pos++] = (uint8_t)w->acc;
		w->acc >>= 8;
		w->nbits -= 8;
	}
}

/* Append q zero bits then a one bit (the unary part of a Rice code). */
static inline void bitw_unary(struct bitw *w, uint64_t q)
{
	while (q >= 32) {
		bitw_put(w, 0, 32);
		q -= 32;
	}
	bitw_put(w, 1ull << q, (unsigned)q + 1);
}

/* Flush the last partial byte; returns the number of bytes written. */
static inline size_t bitw_finish(struct bitw *w)
{
	if (w->nbits)
		w->p[w->pos++] = (uint8_t)w->acc;
	w->acc = 0;
	w->nbits = 0;
	return w->pos;
}

struct bitr {
	const uint8_t *p;
	size_t len, pos; /* input bytes and bytes consumed into acc */
	uint64_t acc;	 /* buffered bits, LSB first; bits above nbits are 0 */
	unsigned nbits;
};

static inline void bitr_init(struct bitr *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
	r->acc = 0;
	r->nbits = 0;
}

/* Whole bytes into acc while they fit: eight at once where eight remain
 * (the Rice gaps of a lossy mask refill every few elements, and a loop of
 * one byte at a time was most of their decoding), the last ones singly. */
static inline void bitr_refill(struct bitr *r)
{
	if (r->nbits <= 56 && r->len - r->pos >= 8) {
		unsigned take = (63 - r->nbits) / 8, now = r->nbits + 8 * take;
		uint64_t w;

		memcpy(&w, r->p + r->pos, 8);
		/* now is 56..63: the bits of the byte past the taken ones
		 * are cleared, as the byte loop would leave them */
		r->acc =
		    (r->acc | le64toh(w) << r->nbits) & ((1ull << now) - 1);
		r->pos += take;
		r->nbits = now;
		return;
	}
	while (r->nbits <= 56 && r->pos < r->len) {
		r->acc |= (uint64_t)r->p[r->pos++] << r->nbits;
		r->nbits += 8;
	}
}

/* Read nb <= 32 bits into *v; false when the input ran dry. */
static inline bool bitr_get(struct bitr *r, unsigned nb, uint32_t *v)
{
	if (r->nbits < nb) {
		bitr_refill(r);
		if (r->nbits < nb)
			return false;
	}
	*v = nb ? (uint32_t)(r->acc & ((1ull << nb) - 1)) : 0;
	r->acc = nb < 64 ? r->acc >> nb : 0;
	r->nbits -= nb;
	return true;
}

/* Read a unary count (zeros up to a one); false when the input ran dry or
 * the count exceeds limit. */
static inline bool bitr_unary(struct bitr *r, uint64_t limit, uint64_t *q)
{
	uint64_t n = 0;

	for (;;) {
		if (r->acc == 0) {
			n += r->nbits;
			r->nbits = 0;
			if (n > limit)
				return false;
			bitr_refill(r);
			if (r->nbits == 0)
				return false;
			continue;
		}
		unsigned tz = (unsigned)__builtin_ctzll(r->acc);

		n += tz;
		if (n > limit)
			return false;
		/* tz < nbits <= 64, so tz + 1 <= 64 */
		r->acc = tz + 1 < 64 ? r->acc >> (tz + 1) : 0;
		r->nbits -= tz + 1;
		*q = n;
		return true;
	}
}

#endif

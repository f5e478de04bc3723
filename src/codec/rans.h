/* SPDX-License-Identifier: MIT */
/*
 * Private static rANS coder of small symbols (0..2^b - 1, b <= 8) for the
 * lossy chunk codec: value format 4 of b-bit codes (udfs(5), "Lossy
 * chunk"). Two interleaved 32-bit states (symbol j uses state j mod 2),
 * probabilities in RANS_PBITS bits, byte-wise renormalization keeping a
 * state in [RANS_L, 2^31).
 *
 * Section: u8 lo, u8 hi (the lowest and highest symbol of nonzero
 * frequency), hi - lo + 1 varints (udfs(5)) of the frequencies of symbols
 * lo..hi (zeros allowed between, the two ends nonzero, the sum exactly
 * 2^RANS_PBITS), the two final encoder states as u32 LE (state 0 first),
 * then the renormalization bytes in the order the decoder reads them. The
 * encoder starts both states at RANS_L: the decoder checks that it ends
 * there with every byte read, so a truncated or extended section is
 * rejected. A symbol's state step reads at most two bytes; reads past the
 * end give zeros and are counted, so decoding never reads out of bounds.
 */
#ifndef UDFS_CODEC_RANS_H
#define UDFS_CODEC_RANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RANS_PBITS 12
#define RANS_M (1u << RANS_PBITS)
#define RANS_L (1u << 23)

/*
 * Encode sym[0..n) (each < 2^bits, n >= 1) as a section: malloc-ed, its
 * length in *len. NULL only when out of memory.
 */
uint8_t *udfs_rans_encode(const uint8_t *sym, uint32_t n, unsigned bits,
			  size_t *len);

/* Decoder: tab (RANS_M entries, caller's memory) maps a slot to its
 * symbol << 24 | (slot - start) << 12 | (frequency - 1). */
struct rans_dec {
	const uint8_t *p;
	size_t len, pos; /* pos counts bytes read, past len too (zeros) */
	uint32_t x[2];
	const uint32_t *tab;
};

/* Parse and validate the table and the states of in[0..len). 0 or -EIO. */
int udfs_rans_dec_init(struct rans_dec *d, const uint8_t *in, size_t len,
		       unsigned bits, uint32_t *tab);
/* After the last symbol: every byte read and both states back at RANS_L. */
bool udfs_rans_dec_finish(const struct rans_dec *d);

/* One state step: the symbol under *x, *x advanced and renormalized. */
static inline unsigned rans_dec_step(uint32_t *x, const uint32_t *tab,
				     const uint8_t *p, size_t len, size_t *pos)
{
	uint32_t e = tab[*x & (RANS_M - 1)];
	uint32_t v = ((e & (RANS_M - 1)) + 1) * (*x >> RANS_PBITS) +
		     (e >> RANS_PBITS & (RANS_M - 1));

	while (v < RANS_L) {
		v = v << 8 | (*pos < len ? p[*pos] : 0);
		(*pos)++;
	}
	*x = v;
	return e >> 24;
}

#endif

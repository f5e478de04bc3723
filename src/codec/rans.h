/* SPDX-License-Identifier: MIT */
/*
 * Private static rANS coders of small symbols (0..2^b - 1, b <= 8) for the
 * lossy chunk codec, value formats 4 and 5 of b-bit codes (udfs(5), "Lossy
 * chunk"), probabilities in RANS_PBITS bits.
 *
 * Format 4 (written by earlier versions; decoded still): two interleaved
 * 32-bit states (symbol j uses state j mod 2) sharing one byte stream,
 * byte-wise renormalization keeping a state in [RANS_L, 2^31).
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

/*
 * Format 5 (written now): four lanes, symbol j in lane j mod 4, each lane
 * a 32-bit state in [RANS4_L, 2^32) with its own stream of 16-bit units,
 * at most one read per symbol. Lanes share nothing, so the decoder runs
 * the four state chains side by side without branches; with one shared
 * stream (format 4) each state waits for the previous one's renormalization
 * to know where its bytes start. Section: the table as in format 4, the four
 * final states as u32 LE (lane 0 first), varints of the byte lengths of
 * the streams of lanes 0, 1 and 2 (even), then the four streams (lane 3's
 * is the rest), each in the order its lane reads it, u16 LE units. Every
 * state must end at RANS4_L with every unit of its stream read.
 */

#define RANS_PBITS 12
#define RANS_M (1u << RANS_PBITS)
#define RANS_L (1u << 23)
#define RANS4_L (1u << 16)

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

/* Format 5: encode sym[0..n) (n >= 1) as a section, malloc-ed; NULL only
 * when out of memory. */
uint8_t *udfs_rans4_encode(const uint8_t *sym, uint32_t n, unsigned bits,
			   size_t *len);
/* The same, for a caller that has counted the symbols: cnt[s] of them are
 * s (2^bits entries). */
uint8_t *udfs_rans4_encode_counted(const uint8_t *sym, uint32_t n,
				   unsigned bits, const uint32_t *cnt,
				   size_t *len);

/* A format 5 decoder: lane l reads in[pos[l]..end[l]); a read past the
 * end gives zeros and still advances pos, so finish fails. */
struct rans4_dec {
	const uint8_t *p;
	size_t pos[4], end[4];
	uint32_t x[4];
	const uint32_t *tab; /* as for format 4 */
};

/* Parse and validate the table, the states and the stream lengths of
 * in[0..len). 0 or -EIO. */
int udfs_rans4_dec_init(struct rans4_dec *d, const uint8_t *in, size_t len,
			unsigned bits, uint32_t *tab);
/* Symbols at .. at + k - 1 of the section, as lut[symbol] into out. */
void udfs_rans4_decode(struct rans4_dec *d, uint32_t at, const float *lut,
		       float *out, uint32_t k);
/* After the last symbol: every stream read and every state at RANS4_L. */
bool udfs_rans4_dec_finish(const struct rans4_dec *d);

#endif

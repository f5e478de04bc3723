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

/*
 * Format 6 (written by earlier versions for sections of many codes): format 5
 * with 32 lanes, symbol j in lane j mod 32: the table, the 32 final states as
 * u32 LE, varints of the byte lengths of the streams of lanes 0..30 (even), the
 * 32 streams (lane 31's is the rest). Enough independent lanes that a decoder
 * steps 8 or 16 of them at once in vector registers (gathers for the table and
 * the units); the lanes cost about 200 bytes a section.
 */
/*
 * Format 7 (written now where format 6 was): format 6 with the lanes in
 * four octets, lanes 8k..8k+7 sharing stream k, read in the order of the
 * symbols (within a step of 32 symbols, lane 8k before 8k+1): the table,
 * the 32 final states as u32 LE, varints of the byte lengths of streams
 * 0, 1 and 2 (even), the four streams (stream 3's is the rest). A vector
 * decoder then loads the next eight units of an octet at once and hands
 * them to the lanes that renormalize (an expand, or a permute from a
 * table) instead of gathering one unit for each lane from 32 places.
 */
#define RANS_LANES_MAX 32
#define RANS_OCTET 8 /* lanes a format 7 stream serves */

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

/* Slot s of a format 5 decoder's table (RANS_M slots): the frequency of
 * the symbol whose range holds s, s minus the range's start, and the
 * value the caller gives the symbol. */
struct rans4_slot {
	uint16_t freq, bias;
	float val;
};

/* A format 5 decoder: lane l reads in[pos[l]..end[l]); a read past the
 * end gives zeros and still advances pos, so finish fails. */
struct rans4_dec {
	const uint8_t *p;
	size_t pos[4], end[4];
	uint32_t x[4];
	const struct rans4_slot *tab;
};

/* Parse and validate the table, the states and the stream lengths of
 * in[0..len); tab (RANS_M slots, caller's memory) gets symbol s the value
 * lut[s]. 0 or -EIO. */
int udfs_rans4_dec_init(struct rans4_dec *d, const uint8_t *in, size_t len,
			unsigned bits, const float *lut,
			struct rans4_slot *tab);
/* Symbols at .. at + k - 1 of the section, as their values, into out. */
void udfs_rans4_decode(struct rans4_dec *d, uint32_t at, float *out,
		       uint32_t k);
/* After the last symbol: every stream read and every state at RANS4_L. */
bool udfs_rans4_dec_finish(const struct rans4_dec *d);

/* Format 6, or with shared true format 7: encode sym[0..n) (n >= 1) as a
 * section, malloc-ed; NULL only when out of memory. */
uint8_t *udfs_rans32_encode(const uint8_t *sym, uint32_t n, unsigned bits,
			    bool shared, size_t *len);
/* Value format fmt (5, 6 or 7), for a caller that has counted the
 * symbols: cnt[s] of them are s (2^bits entries). */
uint8_t *udfs_rans_encode_counted(const uint8_t *sym, uint32_t n, unsigned bits,
				  unsigned fmt, const uint32_t *cnt,
				  size_t *len);

/* A format 6 decoder, as the format 5 one with 32 lanes; pos and end are
 * offsets from p, which the vector decoders gather from. The table is
 * format 5's slots, or, for the AVX-512 decoder of alphabets of at most 64
 * symbols, format 4's entries (udfs_rans_dec_init) with the values in val:
 * with the symbol in the entry, that decoder looks the values up in
 * registers instead of gathering them. */
struct rans32_dec {
	const uint8_t *p;
	uint32_t x[32];
	/* the streams: lane l reads stream l >> shift (shift 0 in format 6,
	 * 3 in format 7, whose four streams are pos[0..3]) */
	uint32_t pos[32], end[32];
	unsigned shift;
	const void *tab;
	void (*groups)(struct rans32_dec *d, float *out, uint32_t g);
	bool packed;   /* tab holds format 4's entries, the values in val */
	float val[64]; /* format 4's entries: values, zeros from 2^bits */
};

/* Parse and validate a format 6 section (format 7 with shared true) of
 * in[0..len) (len < 2^32); tab
 * (RANS_M format 5 slots of the caller's memory) gets the table, symbol s
 * the value lut[s] (2^bits entries). The vector level in force picks the
 * decoder. 0 or -EIO. */
int udfs_rans32_dec_init(struct rans32_dec *d, const uint8_t *in, size_t len,
			 unsigned bits, bool shared, const float *lut,
			 struct rans4_slot *tab);
/* Symbols at .. at + k - 1 of the section, as their values, into out. */
void udfs_rans32_decode(struct rans32_dec *d, uint32_t at, float *out,
			uint32_t k);
/* After the last symbol: every stream read and every state at RANS4_L. */
bool udfs_rans32_dec_finish(const struct rans32_dec *d);

#endif

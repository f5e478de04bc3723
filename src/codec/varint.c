// SPDX-License-Identifier: MIT
/*
 * LEB128 varints of the lossy chunk formats (udfs(5), "Lossy chunk"): 7
 * bits a byte, low first, at most 5 bytes, no redundant zero byte at the
 * end. Their own file so that the codecs using them (lossy.c, mix.c,
 * rans.c) do not call each other.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/lossy_i.h"

size_t udfs_lossy_put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Read a varint at *pos of in[0..len); false when truncated, longer than
 * 5 bytes, above 32 bits or ending in a redundant zero byte. */
bool udfs_lossy_get_varint(const uint8_t *in, size_t len, size_t *pos,
			   uint32_t *v)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < 5 && *pos < len; i++) {
		uint8_t b = in[(*pos)++];

		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if ((i && b == 0) || x > UINT32_MAX)
				return false;
			*v = (uint32_t)x;
			return true;
		}
	}
	return false;
}

// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for whole-chunk decoding through udfs_chunk_decode
 * (src/read/recon.c), the path every mount read and `udfs verify` takes: read
 * the stored bytes from the pack, check the XXH3 checksum, read the base
 * range, decode with the tensor's encoding. The store is a tiny in-memory
 * model: one delta model whose pack and one base file are memfds, one
 * tensor of one chunk. The first 12 bytes choose it, the rest is the
 * stored chunk:
 *
 *   byte 0  encoding % 6: xor, raw, ultradelta, dare, bitdelta, magnitude
 *   byte 1  dtype: xor/raw any of 8 (1, 2, 4 and 8 byte elements and a
 *           sub-byte one); lossy BF16, F16, F32
 *   byte 2  mask kind % 3      byte 3  value kind % 3
 *   byte 4  code bits % 8 + 1  byte 5  drop rate / 255
 *   byte 6-7  tensor elements % 4097 (LE)
 *   byte 8  fault: 0-3 none, 4 wrong checksum, 5 chunk past the pack's
 *           end, 6 base file shorter than the range, 7 chunk index past
 *           the map, 8-15 round trip
 *   byte 9  chunk offset in the pack      byte 10-11  base offset (LE)
 *
 * Without a fault the chunk is stored with its true checksum, so the
 * decoders themselves see the bytes; the result must be 0 or -EIO, and on
 * -EIO the message must name model, file, tensor and chunk. With a fault
 * the result must be -EIO. Round trip encodes a valid chunk from the input
 * with the real encoder (udfs_plane_encode or udfs_lossy_encode_chunk),
 * decodes it through udfs_chunk_decode and compares with the expected
 * bytes (the element values, or udfs_lossy_decode_chunk on the same base).
 * Output buffers are exactly the chunk's size, so ASan catches overruns.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/lossy.h"
#include "codec/plane.h"
#include "common/dtype.h"
#include "common/prng.h"
#include "common/util.h"
#include "read/recon.h"
#include "store/store.h"

#define NMAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int pack_fd = -1, base_fd = -1;
/* The base file: 8 header bytes, up to 65535 bytes before the tensor
 * (byte 10-11), the tensor. */
static uint8_t base_bytes[8 + 65535 + NMAX * 8];

static void init(void)
{
	uint64_t seed = 1, x;

	if (pack_fd >= 0)
		return;
	pack_fd = memfd_create("pack", MFD_CLOEXEC);
	base_fd = memfd_create("base", MFD_CLOEXEC);
	if (pack_fd < 0 || base_fd < 0)
		abort();
	for (size_t i = 0; i < sizeof(base_bytes); i++) {
		x = udfs_splitmix64(&seed);
		/* Odd bytes are the high byte of 16-bit floats: keep them
		 * ordinary numbers. */
		base_bytes[i] = (uint8_t)(i % 2 ? (x & 0x3f) | 0x30 : x);
	}
}

static void put(int fd, const void *p, size_t n, size_t off)
{
	if (ftruncate(fd, 0) || ftruncate(fd, (off_t)(off + n)) ||
	    (n && pwrite(fd, p, n, (off_t)off) != (ssize_t)n))
		abort();
}

/* With FUZZ_CHUNK_SEED_DIR set, a round trip also writes the decode-mode
 * input of its valid chunk there: how the seed corpus was made. */
static void dump_seed(const uint8_t *data, const uint8_t *enc, size_t len)
{
	const char *dir = getenv("FUZZ_CHUNK_SEED_DIR");
	char path[4096];
	uint8_t hdr[12];
	FILE *fp;

	if (!dir)
		return;
	memcpy(hdr, data, 12);
	hdr[8] = 0;
	snprintf(path, sizeof(path), "%s/dec-%02x%02x%02x%02x%02x-%016llx", dir,
		 data[0], data[1], data[2], data[3], data[4],
		 (unsigned long long)XXH3_64bits(enc, len));
	fp = fopen(path, "wb");
	if (!fp)
		return;
	fwrite(hdr, 1, 12, fp);
	fwrite(enc, 1, len, fp);
	fclose(fp);
}

/* The message of a failed decode must name what failed. */
static void check_msg(int err)
{
	const char *msg = udfs_error_msg(err);

	if (!strstr(msg, "model m") || !strstr(msg, "file f.safetensors") ||
	    !strstr(msg, "tensor \"w\"") || !strstr(msg, "chunk "))
		abort();
	udfs_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int encs[6] = {UDFS_ENC_XOR,	 UDFS_ENC_RAW,
				    UDFS_ENC_ULTRADELTA, UDFS_ENC_DARE,
				    UDFS_ENC_BITDELTA,	 UDFS_ENC_MAGNITUDE};
	static const int plain[8] = {UDFS_DT_U8,  UDFS_DT_BF16, UDFS_DT_F16,
				     UDFS_DT_F32, UDFS_DT_I32,	UDFS_DT_F64,
				     UDFS_DT_I64, UDFS_DT_F4};
	static const int floats[3] = {UDFS_DT_BF16, UDFS_DT_F16, UDFS_DT_F32};
	udfs_model m = {.name = (char *)"m", .pack_fd = -1};
	udfs_file f = {.path = (char *)"f.safetensors", .fd = -1},
		  bf = {.path = (char *)"b.safetensors", .fd = -1};
	udfs_tensor t = {.name = (char *)"w"};
	udfs_chunk_ref ref;
	const uint8_t *in;
	uint8_t *out = NULL, *want = NULL, *enc = NULL;
	size_t in_len, len, es, poff, boff;
	unsigned fault;
	uint32_t n;
	int ret;

	if (size < 12)
		return 0;
	init();
	t.enc = encs[data[0] % 6];
	if (udfs_encoding_is_lossy(t.enc))
		t.dtype = floats[data[1] % 3];
	else
		t.dtype = plain[data[1] % 8];
	t.lp.mask = data[2] % 3;
	t.lp.values = data[3] % 4;
	t.lp.bits =
	    (uint8_t)(data[4] % (t.lp.values == UDFS_VAL_TRELLIS ? 4 : 8) + 1);
	t.lp.rate = data[5] / 255.0;
	t.lp.lo = -0.01f;
	t.lp.step = 0.003f;
	t.lp.gain = 4.0f;
	t.lp.seed = 0x0123456789abcdefULL;
	n = (uint32_t)(data[6] | data[7] << 8) % (NMAX + 1);
	es = udfs_dtype_size(t.dtype);
	/* Sub-byte types hold two elements a byte; n must fill whole bytes. */
	len = es ? (size_t)n * es : n / 2;
	fault = data[8] % 16;
	if (fault == 6 && t.enc == UDFS_ENC_RAW)
		fault = 0; /* no base to cut short */
	poff = data[9];
	boff = (size_t)(data[10] | data[11] << 8);
	in = data + 12;
	in_len = size - 12;
	if (len == 0)
		return 0;

	m.kind = UDFS_MODEL_DELTA;
	m.pack_fd = pack_fd;
	f.model = &m;
	f.kind = UDFS_FILE_SAFETENSORS;
	f.data_offset = 8;
	f.size = 8 + len;
	t.file = &f;
	t.begin = 0;
	t.end = len;
	t.nelems = n;
	t.n_chunks = 1;
	t.chunks = &ref;
	if (t.enc != UDFS_ENC_RAW) {
		bf.fd = base_fd;
		bf.model = &m;
		bf.data_offset = 8;
		bf.size = 8 + boff + len;
		t.base_file = &bf;
		t.base_begin = boff;
		put(base_fd, base_bytes,
		    fault == 6 ? 8 + boff + len / 2 : 8 + boff + len, 0);
	}
	out = malloc(len);
	want = malloc(len);

	if (fault >= 8) {
		/* Round trip through the real encoders. */
		const uint8_t *b = t.base_file ? base_bytes + 8 + boff : NULL;
		size_t enc_len = 0;

		for (size_t i = 0; i < len; i++)
			want[i] = in_len ? in[i % in_len] : 0;
		if (b && in_len && in[0] & 1)
			for (size_t i = 0; i < len; i++)
				want[i] ^= (uint8_t)(b[i] & (in[0] >> 1));
		if (!udfs_encoding_is_lossy(t.enc)) {
			ret = udfs_plane_encode(want, b, len, es ? es : 1, 1,
						(void **)&enc, &enc_len);
		} else {
			uint32_t *kept = malloc((size_t)n * 4), nk = 0;
			uint32_t lt = udfs_seeded_levels(t.lp.rate);
			uint8_t *vals = malloc((size_t)n * es);

			for (uint32_t i = 0; i < n; i++)
				if (t.lp.mask == UDFS_MASK_NONE ||
				    (t.lp.mask == UDFS_MASK_SEEDED
					 ? udfs_seeded_levels_keep(t.lp.seed, i,
								   lt)
					 : want[i] & 1))
					kept[nk++] = i;
			for (uint32_t j = 0; j < nk * es; j++)
				vals[j] = want[j % len];
			if (t.lp.values == UDFS_VAL_CODES)
				for (uint32_t j = 0; j < nk; j++)
					vals[j] &=
					    (uint8_t)((1u << t.lp.bits) - 1);
			if (t.lp.values == UDFS_VAL_SIGN ||
			    t.lp.values == UDFS_VAL_TRELLIS)
				for (uint32_t j = 0; j < nk; j++)
					vals[j] &= 1;
			ret = udfs_lossy_encode_chunk(&t.lp, t.dtype, 0, n,
						      kept, nk, vals,
						      (void **)&enc, &enc_len);
			if (!ret &&
			    udfs_lossy_decode_chunk(&t.lp, t.dtype, 0, n, enc,
						    enc_len, b, want))
				abort();
			free(vals);
			free(kept);
		}
		if (ret)
			abort();
		put(pack_fd, enc, enc_len, poff);
		ref.offset = poff;
		ref.length = (uint32_t)enc_len;
		ref.checksum = XXH3_64bits(enc, enc_len);
		ret = udfs_chunk_decode(&t, 0, out);
		if (ret != 0 || memcmp(out, want, len) != 0)
			abort();
		dump_seed(data, enc, enc_len);
		goto out;
	}

	put(pack_fd, in, in_len, poff);
	ref.offset = poff;
	ref.length = (uint32_t)in_len;
	ref.checksum = XXH3_64bits(in, in_len);
	if (fault == 4)
		ref.checksum ^= 1;
	if (fault == 5)
		ref.length++;
	ret = udfs_chunk_decode(&t, fault == 7 ? 1 : 0, out);
	if (ret != 0 && ret != -EIO)
		abort();
	if (fault >= 4 && ret != -EIO)
		abort();
	if (ret)
		check_msg(ret);
out:
	udfs_error_clear();
	free(enc);
	free(want);
	free(out);
	return 0;
}

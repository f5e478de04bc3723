// SPDX-License-Identifier: MIT
/*
 * planebench [-r ROUNDS] [-c CHUNKS] [-e ES] [-l LEVEL] FINETUNE BASE: the
 * lossless chunk codec's size and decode time on real bytes, the daemon's work
 * per 1 MiB read of a lossless model (bench/SPEED.md, session 28).
 *
 * Takes CHUNKS (default 16) 1 MiB chunks spread evenly over the two files
 * (same length; the safetensors header is skipped, so the chunks hold
 * tensor bytes when both files have the same layout, as a fine-tune and
 * its base do), elements of ES bytes (default 2: BF16). Encodes each with
 * the add's codec (zstd level LEVEL, default the add's), then decodes them all
 * ROUNDS times (default 15) into a copy of the base, as the daemon does after
 * its pread of the base.
 *
 * Prints "CHUNKS chunks, B stored bytes (R of the input), decode best T
 * us/chunk; plane kinds K0 K1 ...": the best round's mean, so that a busy
 * host shows less in it; the kinds count each plane kind over all planes.
 * Exits 1 with a message on a bad file or a codec error.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/plane.h"
#include "common/util.h"

enum { CHUNK = 1 << 20, MAX_CHUNKS = 256, KINDS = 8 };

static unsigned char *read_at(int fd, off_t off)
{
	unsigned char *buf = malloc(CHUNK);

	if (buf && udfs_pread_full(fd, buf, CHUNK, (uint64_t)off)) {
		free(buf);
		return NULL;
	}
	return buf;
}

int main(int argc, char **argv)
{
	int rounds = 15, chunks = 16, es = 2, level = UDFS_ZSTD_LEVEL, opt, ft,
	    bs;
	unsigned char *cur[MAX_CHUNKS], *base[MAX_CHUNKS], *out;
	void *enc[MAX_CHUNKS];
	size_t len[MAX_CHUNKS], total = 0;
	unsigned kinds[KINDS] = {0};
	double best = INFINITY;
	struct stat st;

	while ((opt = getopt(argc, argv, "r:c:e:l:")) != -1) {
		if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 'c')
			chunks = atoi(optarg);
		else if (opt == 'e')
			es = atoi(optarg);
		else if (opt == 'l')
			level = atoi(optarg);
		else
			goto usage;
	}
	if (argc - optind != 2 || rounds < 1 || chunks < 1 ||
	    chunks > MAX_CHUNKS || (es != 1 && es != 2 && es != 4 && es != 8))
		goto usage;
	ft = open(argv[optind], O_RDONLY);
	bs = open(argv[optind + 1], O_RDONLY);
	if (ft < 0 || bs < 0 || fstat(ft, &st) || st.st_size < 2 * CHUNK) {
		fprintf(stderr, "planebench: cannot read %s and %s\n",
			argv[optind], argv[optind + 1]);
		return 1;
	}
	out = malloc(CHUNK);
	for (int c = 0; c < chunks; c++) {
		/* Whole chunks past the first MiB (the header), spread. */
		off_t span = st.st_size / CHUNK - 2,
		      off = (off_t)CHUNK * (1 + span * c / chunks);
		int err;

		cur[c] = read_at(ft, off);
		base[c] = read_at(bs, off);
		if (!out || !cur[c] || !base[c]) {
			fprintf(stderr, "planebench: cannot read chunk %d\n",
				c);
			return 1;
		}
		err = udfs_plane_encode(cur[c], base[c], CHUNK, (unsigned)es,
					level, &enc[c], &len[c]);
		if (err) {
			fprintf(stderr, "planebench: encode: %s\n",
				udfs_error_msg(err));
			return 1;
		}
		total += len[c];
		for (int k = 0; k < es; k++)
			kinds[((unsigned char *)enc[c])[2 + 5 * k] % KINDS]++;
	}
	for (int r = 0; r < rounds; r++) {
		double t0 = udfs_now();

		for (int c = 0; c < chunks; c++) {
			int err;

			memcpy(out, base[c], CHUNK);
			err = udfs_plane_decode(enc[c], len[c], out, CHUNK,
						(unsigned)es, out);
			if (err || (r == 0 && memcmp(out, cur[c], CHUNK))) {
				fprintf(stderr, "planebench: chunk %d: %s\n", c,
					err ? udfs_error_msg(err)
					    : "decoded bytes differ");
				return 1;
			}
		}
		best = fmin(best, (udfs_now() - t0) / chunks);
	}
	printf("%d chunks, %zu stored bytes (%.4f of the input), decode best "
	       "%.1f us/chunk; plane kinds",
	       chunks, total, (double)total / ((double)chunks * CHUNK),
	       best * 1e6);
	for (int k = 0; k < KINDS; k++)
		printf(" %u", kinds[k]);
	printf("\n");
	for (int c = 0; c < chunks; c++) {
		free(enc[c]);
		free(cur[c]);
		free(base[c]);
	}
	free(out);
	return 0;
usage:
	fprintf(stderr,
		"usage: planebench [-r ROUNDS] [-c CHUNKS (1..%d)] "
		"[-e ES (1, 2, 4, 8)] [-l LEVEL] FINETUNE BASE\n",
		MAX_CHUNKS);
	return 2;
}

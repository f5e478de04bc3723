// SPDX-License-Identifier: MIT
/*
 * SHA-256 through libcrypto's EVP interface (sha256.h). Buffers are fed in
 * pieces of 64 MiB: EVP takes a size_t, and a long hash stays
 * interruptible between pieces.
 */
#include "common/sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "common/util.h"

#define PIECE (64ull << 20)

udfs_sha256 *udfs_sha256_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (c && !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(c);
		c = NULL;
	}
	return (udfs_sha256 *)c;
}

int udfs_sha256_update(udfs_sha256 *h, const void *p, uint64_t n)
{
	const unsigned char *b = p;

	for (uint64_t off = 0; off < n; off += PIECE)
		if (!EVP_DigestUpdate((EVP_MD_CTX *)h, b + off,
				      (size_t)UDFS_MIN(n - off, PIECE)))
			return -EIO;
	return 0;
}

int udfs_sha256_final(udfs_sha256 *h, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	int ok = h && EVP_DigestFinal_ex((EVP_MD_CTX *)h, md, &len);

	EVP_MD_CTX_free((EVP_MD_CTX *)h);
	if (!ok)
		return udfs_error(-EIO, "sha256 failed");
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int udfs_sha256_hex(const void *p, uint64_t n, char out[65])
{
	udfs_sha256 *h = udfs_sha256_new();

	if (h && udfs_sha256_update(h, p, n) < 0) {
		EVP_MD_CTX_free((EVP_MD_CTX *)h);
		h = NULL;
	}
	return udfs_sha256_final(h, out);
}

static void *job_run(void *arg)
{
	struct udfs_sha256_job *j = arg;

	j->err = udfs_sha256_hex(j->p, j->n, j->out);
	if (j->err)
		snprintf(j->msg, sizeof(j->msg), "%s", udfs_error_msg(j->err));
	return NULL;
}

void udfs_sha256_start(struct udfs_sha256_job *j, const void *p, uint64_t n,
		       char out[65])
{
	j->p = p;
	j->n = n;
	j->out = out;
	j->err = 0;
	j->msg[0] = 0;
	j->threaded = pthread_create(&j->tid, NULL, job_run, j) == 0;
	if (!j->threaded)
		job_run(j);
}

int udfs_sha256_wait(struct udfs_sha256_job *j)
{
	if (j->threaded)
		pthread_join(j->tid, NULL);
	j->threaded = false;
	return j->err ? udfs_error(j->err, "%s", j->msg) : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 as lowercase hex, the form the catalog keeps and `udfs verify`
 * compares (sha256.c is the only file that calls libcrypto): of a buffer,
 * incrementally, or of a buffer on a thread of its own while the caller
 * reads the same bytes for something else.
 */
#ifndef UDFS_SHA256_H
#define UDFS_SHA256_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* An incremental hash; udfs_sha256_final() frees it. */
typedef struct udfs_sha256 udfs_sha256;

/* A new hash, or NULL when libcrypto cannot make one. */
udfs_sha256 *udfs_sha256_new(void);
/* Add n bytes of p. 0 or -EIO. */
int udfs_sha256_update(udfs_sha256 *h, const void *p, uint64_t n);
/* The digest into out (64 hex digits and a NUL), then free h (NULL: -EIO).
 * 0 or -EIO with a message. */
int udfs_sha256_final(udfs_sha256 *h, char out[65]);

/* The digest of n bytes at p into out. 0 or -EIO with a message. */
int udfs_sha256_hex(const void *p, uint64_t n, char out[65]);

/* A digest computed on a thread of its own (or inline if no thread can be
 * started): p and out stay valid until udfs_sha256_wait(). */
struct udfs_sha256_job {
	const void *p;
	uint64_t n;
	char *out; /* 65 bytes */
	int err;
	char msg[256]; /* the thread's error message */
	pthread_t tid;
	bool threaded;
};

void udfs_sha256_start(struct udfs_sha256_job *j, const void *p, uint64_t n,
		       char out[65]);
/* Wait for the digest. 0 or the job's -errno, its message set again on
 * the calling thread. */
int udfs_sha256_wait(struct udfs_sha256_job *j);

#endif

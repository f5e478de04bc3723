/* SPDX-License-Identifier: MIT */
/*
 * Small shared helpers: the per-thread error message that turns a negative
 * errno into "one clear line", the program's die(), checked allocation,
 * whole-file I/O that retries short reads and EINTR, and hashing of names.
 *
 * Convention: library functions return 0 (or a count) on success and a
 * negative errno on failure; the first function that detects a failure
 * records a message with udfs_error(), outer layers leave it alone, and only
 * the CLI or the daemon prints it.
 */
#ifndef UDFS_UTIL_H
#define UDFS_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <sys/types.h>

#define UDFS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UDFS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define UDFS_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * A hot per-element loop compiled for AVX-512 and AVX2 as well as the
 * build's baseline, the best the CPU has picked when the program loads
 * (GCC target_clones). Only for loops whose results do not depend on the
 * vector width: lane-wise float adds and multiplies (never fused: the
 * build passes -ffp-contract=off), compares and integer steps, with any
 * reduction over explicit lanes. Its helpers must be UDFS_INLINE, or they
 * stay baseline code.
 */
/* Not under ThreadSanitizer: it instruments the clones' resolvers, which
 * the dynamic loader runs before TSan's runtime is up (a segfault at
 * load). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
    defined(__ELF__) && !defined(__SANITIZE_THREAD__)
#define UDFS_CLONES                                                            \
	__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define UDFS_CLONES
#endif
#define UDFS_INLINE static inline __attribute__((always_inline))

/* The version of udfs and udfs-compress (--version). */
#define UDFS_VERSION "0.1.0"

/* Set the program name used by udfs_die() and udfs_warn(). */
void udfs_set_progname(const char *argv0);
const char *udfs_progname(void);

/*
 * Record the message for the current failure on this thread, unless one is
 * already recorded (the innermost cause is the most precise). Returns err,
 * so "return udfs_error(-EINVAL, "...")" reads naturally.
 */
int udfs_error(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The recorded message, or strerror(-err) when none was recorded. */
const char *udfs_error_msg(int err);
/* Forget the recorded message (start of a command or request). */
void udfs_error_clear(void);

/* Print "prog: message" to stderr and exit(1). */
noreturn void udfs_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Print "prog: message" to stderr and exit(2): a usage error (unknown
 * option, missing operand, bad option value). */
noreturn void udfs_usage_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Print "prog: message" to stderr. */
void udfs_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* udfs_die(), udfs_usage_die() and udfs_warn() escape their message with
 * udfs_escape(): one error is one line, whatever names it quotes. */

/*
 * Copy s into buf (len bytes, NUL-terminated, truncated when short; buf
 * may be NULL when len is 0) with every byte a terminal would act on
 * written as \xHH: C0 controls (newline included), DEL, C1 controls and
 * bytes that are not valid UTF-8. Returns the length of the whole escaped
 * string, as snprintf does. Names come from catalogs and source headers,
 * which are input like any file, and must never reach a terminal raw.
 */
size_t udfs_escape(char *buf, size_t len, const char *s);

/* malloc for a buffer of a tensor's size: from 8 MiB up it asks for
 * transparent huge pages (one fault per 2 MiB; util.c). NULL on failure. */
void *udfs_malloc_huge(size_t n);

/* Allocation that never returns NULL for a non-zero size (aborts on OOM);
 * udfs_xmalloc and udfs_xcalloc ask for huge pages as udfs_malloc_huge. */
void *udfs_xmalloc(size_t n);
void *udfs_xcalloc(size_t n, size_t size);
void *udfs_xrealloc(void *p, size_t n);
char *udfs_xstrdup(const char *s);
char *udfs_xasprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* A formatted string in a malloc-ed buffer (caller frees); NULL when out
 * of memory. What the mount daemon uses: it answers ENOMEM, never aborts. */
char *udfs_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* pread/pwrite the whole range, retrying EINTR and short transfers.
 * Return 0 or -errno; a read past EOF is -EIO. */
int udfs_pread_full(int fd, void *buf, size_t len, uint64_t off);
int udfs_write_full(int fd, const void *buf, size_t len);

/* fsync a directory by path; 0 or -errno. */
int udfs_fsync_dir(const char *path);

/*
 * A per-thread scratch buffer of at least n bytes for slot (0 to
 * UDFS_SCRATCH_SLOTS - 1), grown as needed, valid until the next call with
 * the same slot on this thread, freed when the thread exits. Hot paths use
 * it instead of malloc: a fresh 1 MiB buffer per chunk costs more in page
 * faults than the chunk costs to decode. NULL on allocation failure.
 */
enum udfs_scratch_slot {
	UDFS_SCRATCH_STORED = 0,  /* recon.c: a chunk's stored bytes */
	UDFS_SCRATCH_TRELLIS = 1, /* lossy.c: a trellis value table */
	UDFS_SCRATCH_PLANES = 2,  /* plane.c: the byte planes of a chunk */
	UDFS_SCRATCH_CHUNK = 3,	  /* recon.c: a decoded chunk */
	UDFS_SCRATCH_MASK = 4,	  /* lossy.c: keep bits or a bitmap */
	UDFS_SCRATCH_VALUES = 5,  /* lossy.c: decompressed value bytes */
	UDFS_SCRATCH_MIX = 6,	  /* mix.c: a chunk's low-rank factors */
	UDFS_SCRATCH_SEARCH = 7,  /* write/trellis.c: the Viterbi choices */
	UDFS_SCRATCH_SPARSE = 8,  /* plane.c: a sparse plane's bitmap, bytes */
	UDFS_SCRATCH_DELTA = 9,	  /* plan_budget.c: a block of a delta */
	UDFS_SCRATCH_SLOTS
};
void *udfs_scratch(int slot, size_t n);

/* A random file name under tmp/ or packs/: 16 hex digits. Caller frees. */
char *udfs_random_name(void);

/* rename(2) that never replaces an existing entry: -1 with errno EEXIST
 * when to exists. */
int udfs_rename_noreplace(const char *from, const char *to);

/* Set by the programs' SIGINT/SIGTERM handler; long loops check it. */
extern volatile sig_atomic_t udfs_interrupted;

/* Remove a file or a directory tree; 0 or -errno (ENOENT is 0). */
int udfs_rm_tree(const char *path);

/*
 * Raise the soft limit on open files (RLIMIT_NOFILE) to the hard limit,
 * once at the start of a program: a store or a source of a thousand files
 * must not fail at the usual soft limit of 1024. 0, or -errno when the
 * limit stays as it was (not fatal: callers go on).
 */
int udfs_raise_nofile(void);

/* 64-bit FNV-1a of a string: stable names for seeds and keys. */
uint64_t udfs_hash_str(const char *s);

/* Monotonic time in seconds. */
double udfs_now(void);

/* Parse "256M", "1G", "4096" into bytes; -EINVAL on junk. */
int udfs_parse_size(const char *s, uint64_t *out);
/* Format bytes as "1.5 GiB" into buf (at least 16 bytes); returns buf. */
char *udfs_fmt_bytes(uint64_t n, char *buf, size_t len);

#endif

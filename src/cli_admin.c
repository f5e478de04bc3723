// SPDX-License-Identifier: MIT
/*
 * The admin verbs of `udfs` that work on a store without FUSE: ls, info,
 * verify, export, rm, gc. Every byte they show or write comes through the
 * same reconstruction code as the mount (recon.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_i.h"
#include "compress_i.h"
#include "udfs/compress.h"
#include "udfs/dtype.h"
#include "udfs/pool.h"
#include "udfs/recon.h"
#include "udfs/store.h"
#include "udfs/util.h"

#define IO_BYTES (4u << 20)

int udfs_cli_parse(int argc, char **argv, struct cli_opts *o, const char *usage)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"against", required_argument, NULL, 'a'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* one line of our own instead of getopt's */
	while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			o->json = 1;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'a':
			o->against = optarg;
			break;
		case 'h':
			printf("usage: %s\n", usage);
			exit(0);
		case ':':
			udfs_die("%s needs an argument; usage: %s",
				 argv[optind - 1], usage);
		default:
			if (optopt)
				udfs_die("unknown option -%c; usage: %s",
					 optopt, usage);
			udfs_die("unknown option %s; usage: %s",
				 argv[optind - 1], usage);
		}
	}
	return optind;
}

static udfs_store *open_store(const char *dir, unsigned flags)
{
	udfs_store *s;
	int err = udfs_store_open(dir, flags, &s);

	if (err)
		udfs_die("%s", udfs_error_msg(err));
	return s;
}

static double ratio(uint64_t src, uint64_t stored)
{
	return stored ? (double)src / (double)stored : 0.0;
}

/* ---- ls --------------------------------------------------------------- */

int udfs_cli_ls(int argc, char **argv)
{
	static const char usage[] = "udfs ls STORE [--json]";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	udfs_model_info *v = NULL;
	udfs_store *s;
	size_t n = 0;
	int err;

	if (argc - i != 1)
		udfs_die("usage: %s", usage);
	s = open_store(argv[i], UDFS_STORE_RDONLY);
	err = udfs_store_list(s, &v, &n);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (o.json) {
		json_t *a = json_array();

		for (size_t k = 0; k < n; k++)
			json_array_append_new(
			    a,
			    json_pack(
				"{s:s,s:s,s:s,s:s,s:I,s:I,s:f,s:I}", "name",
				v[k].name, "kind",
				v[k].kind == UDFS_MODEL_BASE ? "base" : "delta",
				"base", v[k].base, "method", v[k].method,
				"source_bytes", (json_int_t)v[k].source_bytes,
				"stored_bytes", (json_int_t)v[k].stored_bytes,
				"ratio",
				ratio(v[k].source_bytes, v[k].stored_bytes),
				"files", (json_int_t)v[k].n_files));
		json_dumpf(a, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(a);
	} else {
		printf("%-24s %-5s %-16s %-10s %5s %12s %12s %8s\n", "NAME",
		       "KIND", "BASE", "METHOD", "FILES", "SOURCE", "STORED",
		       "RATIO");
		for (size_t k = 0; k < n; k++) {
			char a[32], b[32];

			printf("%-24s %-5s %-16s %-10s %5zu %12s %12s %7.2fx\n",
			       v[k].name,
			       v[k].kind == UDFS_MODEL_BASE ? "base" : "delta",
			       v[k].base[0] ? v[k].base : "-", v[k].method,
			       v[k].n_files,
			       udfs_fmt_bytes(v[k].source_bytes, a, sizeof(a)),
			       udfs_fmt_bytes(v[k].stored_bytes, b, sizeof(b)),
			       ratio(v[k].source_bytes, v[k].stored_bytes));
		}
	}
	free(v);
	udfs_store_close(s);
	return 0;
}

/* ---- info ------------------------------------------------------------- */

static json_t *shape_json(const udfs_tensor *t)
{
	json_t *a = json_array();

	for (int i = 0; i < t->ndim; i++)
		json_array_append_new(a, json_integer((json_int_t)t->shape[i]));
	return a;
}

static uint64_t tensor_stored(const udfs_tensor *t)
{
	if (t->enc == UDFS_ENC_BASE)
		return t->end - t->begin;
	return udfs_encoded_bytes(t->enc, t->n_chunks, t->stored_bytes);
}

/* The adaptive method's code of a tensor and its measured delta error
 * (udfs-compress(1), recorded in the model's params). */
static void print_code(const json_t *c)
{
	if (c)
		printf("  %-22s %.4f",
		       json_string_value(json_object_get(c, "code")),
		       json_number_value(json_object_get(c, "error")));
}

int udfs_cli_info(int argc, char **argv)
{
	static const char usage[] = "udfs info STORE NAME [--json]";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	uint64_t lossy_src = 0, lossy_dst = 0;
	udfs_model *m = NULL;
	udfs_store *s;
	json_t *jm, *jfiles, *params, *codes;
	int err;

	if (argc - i != 2)
		udfs_die("usage: %s", usage);
	s = open_store(argv[i], UDFS_STORE_RDONLY);
	err = udfs_model_load(s, argv[i + 1], &m);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	params = json_loads(m->params, 0, NULL);
	codes = json_object_get(params, "codes");
	jfiles = json_array();
	for (size_t f = 0; f < m->n_files; f++) {
		const udfs_file *fl = &m->files[f];
		json_t *jt = json_array();
		uint64_t fstored = fl->data_offset;

		for (size_t k = 0; k < fl->n_tensors; k++) {
			const udfs_tensor *t = &fl->tensors[k];
			uint64_t src = t->end - t->begin,
				 dst = tensor_stored(t);
			json_t *e = json_pack(
			    "{s:s,s:s,s:o,s:s,s:I,s:I,s:f}", "name", t->name,
			    "dtype", udfs_dtype_name(t->dtype), "shape",
			    shape_json(t), "encoding",
			    udfs_encoding_name(t->enc), "source_bytes",
			    (json_int_t)src, "stored_bytes", (json_int_t)dst,
			    "ratio", ratio(src, dst));

			if (json_object_get(codes, t->name)) {
				json_t *c = json_object_get(codes, t->name);

				json_object_set(e, "code",
						json_object_get(c, "code"));
				json_object_set(e, "delta_error",
						json_object_get(c, "error"));
			}
			if (udfs_encoding_is_lossy(t->enc)) {
				json_object_set_new(e, "rate",
						    json_real(t->lp.rate));
				json_object_set_new(e, "bits",
						    json_integer(t->lp.bits));
				json_object_set_new(e, "gain",
						    json_real(t->lp.gain));
				json_object_set_new(
				    e, "mask",
				    json_string(t->lp.mask == UDFS_MASK_SEEDED
						    ? "seeded"
						: t->lp.mask == UDFS_MASK_NONE
						    ? "none"
						    : "explicit"));
				lossy_src += src;
				lossy_dst += dst;
			}
			fstored += dst;
			json_array_append_new(jt, e);
		}
		json_array_append_new(
		    jfiles,
		    json_pack("{s:s,s:s,s:I,s:I,s:s,s:o}", "path", fl->path,
			      "kind",
			      fl->kind == UDFS_FILE_SAFETENSORS ? "safetensors"
								: "verbatim",
			      "size", (json_int_t)fl->size, "stored_bytes",
			      (json_int_t)fstored, "sha256", fl->sha256,
			      "tensors", jt));
	}
	jm = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:f,s:f,s:I}", "name", m->name,
		       "kind", m->kind == UDFS_MODEL_BASE ? "base" : "delta",
		       "base", m->base ? m->base->name : "", "method",
		       m->method, "source_bytes", (json_int_t)m->source_bytes,
		       "stored_bytes", (json_int_t)m->stored_bytes, "ratio",
		       ratio(m->source_bytes, m->stored_bytes), "sparsity",
		       m->sparsity, "seed", (json_int_t)m->seed);
	json_object_set(jm, "params", params);
	if (lossy_src) {
		json_object_set_new(jm, "lossy_source_bytes",
				    json_integer((json_int_t)lossy_src));
		json_object_set_new(jm, "lossy_stored_bytes",
				    json_integer((json_int_t)lossy_dst));
		json_object_set_new(jm, "lossy_ratio",
				    json_real(ratio(lossy_src, lossy_dst)));
	}
	json_object_set_new(jm, "files", jfiles);
	if (o.json) {
		json_dumpf(jm, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		char a[32], b[32];

		printf("name:      %s\nkind:      %s\n", m->name,
		       m->kind == UDFS_MODEL_BASE ? "base" : "delta");
		if (m->base)
			printf("base:      %s\n", m->base->name);
		json_t *pc = json_deep_copy(params);
		char *ps;

		/* The per-tensor codes show in the tensor table below. */
		json_object_del(pc, "codes");
		ps = json_dumps(pc, JSON_COMPACT | JSON_SORT_KEYS);
		printf("method:    %s\nparams:    %s\n", m->method,
		       ps ? ps : m->params);
		free(ps);
		json_decref(pc);
		printf("source:    %s\nstored:    %s\nratio:     %.2fx "
		       "(whole model, real bytes)\n",
		       udfs_fmt_bytes(m->source_bytes, a, sizeof(a)),
		       udfs_fmt_bytes(m->stored_bytes, b, sizeof(b)),
		       ratio(m->source_bytes, m->stored_bytes));
		if (lossy_src)
			printf("lossy:     %.2fx over %s of lossy tensors, "
			       "sparsity %.4f\n",
			       ratio(lossy_src, lossy_dst),
			       udfs_fmt_bytes(lossy_src, a, sizeof(a)),
			       m->sparsity);
		for (size_t f = 0; f < m->n_files; f++) {
			const udfs_file *fl = &m->files[f];

			printf("\nfile %s (%s, %" PRIu64 " bytes)\n", fl->path,
			       fl->kind == UDFS_FILE_SAFETENSORS ? "safetensors"
								 : "verbatim",
			       fl->size);
			if (fl->kind != UDFS_FILE_SAFETENSORS)
				continue;
			printf("  %-44s %-5s %-11s %-10s %6s %4s %11s %11s "
			       "%8s%s\n",
			       "TENSOR", "DTYPE", "SHAPE", "ENCODING", "RATE",
			       "BITS", "SOURCE", "STORED", "RATIO",
			       codes ? "  CODE                   ERROR" : "");
			for (size_t k = 0; k < fl->n_tensors; k++) {
				const udfs_tensor *t = &fl->tensors[k];
				char shape[64] = "";
				size_t len = 0;
				uint64_t src = t->end - t->begin;
				uint64_t dst = tensor_stored(t);
				bool lossy = udfs_encoding_is_lossy(t->enc);

				for (int d = 0; d < t->ndim && len < 50; d++)
					len += (size_t)snprintf(
					    shape + len, sizeof(shape) - len,
					    "%s%" PRIu64, d ? "x" : "",
					    t->shape[d]);
				printf("  %-44s %-5s %-11s %-10s", t->name,
				       udfs_dtype_name(t->dtype), shape,
				       udfs_encoding_name(t->enc));
				if (lossy)
					printf(" %6.4f %4u", t->lp.rate,
					       t->lp.bits);
				else
					printf(" %6s %4s", "-", "-");
				printf(" %11" PRIu64 " %11" PRIu64 " %7.2fx",
				       src, dst, ratio(src, dst));
				print_code(json_object_get(codes, t->name));
				putchar('\n');
			}
		}
	}
	json_decref(jm);
	json_decref(params);
	udfs_model_put(m);
	udfs_store_close(s);
	return 0;
}

/* ---- verify ----------------------------------------------------------- */

/* Hash a whole virtual file through the read path. */
static int file_sha256(const udfs_file *f, char out[65])
{
	unsigned char *buf = udfs_xmalloc(IO_BYTES), md[32];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len = 0;
	int err = 0;

	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (uint64_t off = 0; off < f->size && !err;) {
		ssize_t n = udfs_file_read(f, buf, IO_BYTES, off, NULL);

		if (n <= 0) {
			err = n < 0 ? (int)n : -EIO;
			break;
		}
		EVP_DigestUpdate(c, buf, (size_t)n);
		off += (uint64_t)n;
	}
	EVP_DigestFinal_ex(c, md, &len);
	EVP_MD_CTX_free(c);
	free(buf);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return err;
}

/* Decode every chunk of fl, one DAMAGED line per failure; returns them. */
static int check_chunks(const udfs_file *fl, unsigned char *buf)
{
	int bad = 0;

	for (size_t k = 0; k < fl->n_tensors; k++) {
		const udfs_tensor *t = &fl->tensors[k];

		for (uint32_t c = 0; c < t->n_chunks; c++) {
			int err;

			udfs_error_clear();
			err = udfs_chunk_decode(t, c, buf);
			if (err) {
				printf("DAMAGED %s\n", udfs_error_msg(err));
				bad++;
			}
		}
	}
	return bad;
}

static uint64_t count_chunks(const udfs_file *fl)
{
	uint64_t n = 0;

	for (size_t k = 0; k < fl->n_tensors; k++)
		n += fl->tensors[k].n_chunks;
	return n;
}

/*
 * Verify one model; prints one line per problem and returns their number.
 * An exact file is hashed through the read path, which decodes and checks
 * every chunk on the way; only when that fails are its chunks decoded one
 * by one to name each damaged one. Lossy files have no source hash: their
 * chunks are decoded and checked directly.
 */
static int verify_model(udfs_model *m, bool quiet)
{
	unsigned char *buf = udfs_xmalloc(UDFS_CHUNK_BYTES);
	bool exact =
	    m->kind == UDFS_MODEL_BASE || !strcmp(m->method, "lossless");
	uint64_t chunks = 0;
	int bad = 0;

	for (size_t f = 0; f < m->n_files; f++) {
		const udfs_file *fl = &m->files[f];
		char sum[65];
		int file_bad, err;

		chunks += count_chunks(fl);
		if (!exact || !fl->sha256[0]) {
			bad += check_chunks(fl, buf);
			continue;
		}
		udfs_error_clear();
		err = file_sha256(fl, sum);
		if (!err && !strcmp(sum, fl->sha256))
			continue;
		file_bad = check_chunks(fl, buf);
		if (!file_bad && err) {
			printf("DAMAGED model %s: file %s: %s\n", m->name,
			       fl->path, udfs_error_msg(err));
			file_bad = 1;
		} else if (!file_bad) {
			printf("MISMATCH model %s: file %s: sha256 %s, "
			       "recorded %s\n",
			       m->name, fl->path, sum, fl->sha256);
			file_bad = 1;
		}
		bad += file_bad;
	}
	if (!quiet)
		printf("%s %s: %zu files, %" PRIu64 " chunks%s\n",
		       bad ? "FAILED" : "ok", m->name, m->n_files, chunks,
		       exact ? ", sha256 checked" : "");
	free(buf);
	return bad;
}

int udfs_cli_verify(int argc, char **argv)
{
	static const char usage[] = "udfs verify STORE [NAME]";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	udfs_model_info *v = NULL;
	udfs_store *s;
	size_t n = 0;
	int bad = 0, err;

	if (argc - i != 1 && argc - i != 2)
		udfs_die("usage: %s", usage);
	s = open_store(argv[i], UDFS_STORE_RDONLY);
	err = udfs_store_list(s, &v, &n);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (argc - i == 2) {
		size_t k;

		for (k = 0; k < n && strcmp(v[k].name, argv[i + 1]); k++)
			;
		if (k == n)
			udfs_die("no model named \"%s\" in %s", argv[i + 1],
				 argv[i]);
		v[0] = v[k];
		n = 1;
	}
	for (size_t k = 0; k < n; k++) {
		udfs_model *m;

		udfs_error_clear();
		err = udfs_model_load(s, v[k].name, &m);
		if (err) {
			printf("FAILED %s: %s\n", v[k].name,
			       udfs_error_msg(err));
			bad++;
			continue;
		}
		bad += verify_model(m, o.quiet);
		udfs_model_put(m);
	}
	free(v);
	udfs_store_close(s);
	if (bad) {
		fflush(stdout);
		udfs_die("verify found %d problem%s", bad, bad == 1 ? "" : "s");
	}
	return 0;
}

/* ---- export ----------------------------------------------------------- */

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

/* Blocks of a file decoded in parallel, then written in order. */
struct export_window {
	const udfs_file *f;
	uint64_t off;	     /* of block 0 */
	unsigned char **buf; /* IO_BYTES each */
	ssize_t *got;
};

static int export_block(void *ctx, size_t i)
{
	struct export_window *w = ctx;
	uint64_t off = w->off + (uint64_t)i * IO_BYTES;

	if (stop)
		return udfs_error(-EINTR, "interrupted");
	w->got[i] = udfs_file_read(w->f, w->buf[i], IO_BYTES, off, NULL);
	return w->got[i] < 0 ? (int)w->got[i] : 0;
}

static int export_file(const udfs_file *f, const char *dir, mode_t mode)
{
	char *tmp = udfs_xasprintf("%s/.%s.udfs-tmp", dir, f->path);
	char *dst = udfs_xasprintf("%s/%s", dir, f->path);
	size_t nwin = (size_t)udfs_ncpus() * 2;
	struct export_window w = {.f = f};
	int fd, err = 0;

	w.buf = udfs_xcalloc(nwin, sizeof(*w.buf));
	w.got = udfs_xcalloc(nwin, sizeof(*w.got));
	for (size_t i = 0; i < nwin; i++)
		w.buf[i] = udfs_xmalloc(IO_BYTES);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	for (w.off = 0; w.off < f->size && !err;) {
		uint64_t left = (f->size - w.off + IO_BYTES - 1) / IO_BYTES;
		size_t n = (size_t)UDFS_MIN((uint64_t)nwin, left);

		err = udfs_parallel_for(udfs_ncpus(), n, export_block, &w);
		for (size_t i = 0; i < n && !err; i++) {
			if (w.got[i] <= 0)
				err =
				    udfs_error(-EIO, "%s: short read", f->path);
			else if ((err = udfs_write_full(fd, w.buf[i],
							(size_t)w.got[i])))
				udfs_error(err, "%s: %s", tmp, strerror(-err));
		}
		w.off += (uint64_t)n * IO_BYTES;
	}
	if (!err && (fchmod(fd, mode) < 0 || fsync(fd) < 0))
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
	if (fd >= 0 && close(fd) < 0 && !err)
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
	if (!err && rename(tmp, dst) < 0)
		err = udfs_error(-errno, "%s: %s", dst, strerror(errno));
	if (err)
		unlink(tmp);
out:
	for (size_t i = 0; i < nwin; i++)
		free(w.buf[i]);
	free(w.buf);
	free(w.got);
	free(tmp);
	free(dst);
	return err;
}

int udfs_cli_export(int argc, char **argv)
{
	static const char usage[] = "udfs export STORE NAME DIR";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	struct sigaction sa = {.sa_handler = on_stop};
	udfs_model *m = NULL;
	udfs_store *s;
	mode_t mask;
	size_t done = 0;
	int err;

	if (argc - i != 3)
		udfs_die("usage: %s", usage);
	s = open_store(argv[i], UDFS_STORE_RDONLY);
	err = udfs_model_load(s, argv[i + 1], &m);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (mkdir(argv[i + 2], 0755) < 0 && errno != EEXIST)
		udfs_die("%s: %s", argv[i + 2], strerror(errno));
	for (size_t f = 0; f < m->n_files; f++) {
		char *p =
		    udfs_xasprintf("%s/%s", argv[i + 2], m->files[f].path);
		struct stat st;

		if (lstat(p, &st) == 0)
			udfs_die("%s already exists; export into a new or "
				 "empty directory",
				 p);
		free(p);
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	mask = umask(0);
	umask(mask);
	for (size_t f = 0; f < m->n_files && !err; f++) {
		err = export_file(&m->files[f], argv[i + 2], 0666 & ~mask);
		done += !err;
	}
	if (err) {
		/* No half-written output: remove what this run wrote. */
		for (size_t f = 0; f < done; f++) {
			char *p = udfs_xasprintf("%s/%s", argv[i + 2],
						 m->files[f].path);

			unlink(p);
			free(p);
		}
		rmdir(argv[i + 2]);
		udfs_die("%s", udfs_error_msg(err));
	}
	if (!o.quiet && isatty(1))
		printf("exported %s: %zu files to %s\n", m->name, m->n_files,
		       argv[i + 2]);
	udfs_model_put(m);
	udfs_store_close(s);
	return 0;
}

/* ---- rm, gc ----------------------------------------------------------- */

int udfs_cli_rm(int argc, char **argv)
{
	static const char usage[] = "udfs rm STORE NAME";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	udfs_store *s;
	int err;

	if (argc - i != 2)
		udfs_die("usage: %s", usage);
	s = open_store(argv[i], 0);
	err = udfs_store_rm(s, argv[i + 1]);
	udfs_store_close(s);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	return 0;
}

int udfs_cli_gc(int argc, char **argv)
{
	static const char usage[] = "udfs gc STORE";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	udfs_store *s;
	uint64_t freed = 0;
	size_t files = 0;
	int err;

	if (argc - i != 1)
		udfs_die("usage: %s", usage);
	s = open_store(argv[i], 0);
	err = udfs_store_gc(s, &freed, &files);
	udfs_store_close(s);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (!o.quiet) {
		char b[32];

		printf("removed %zu unreferenced entr%s, %s\n", files,
		       files == 1 ? "y" : "ies",
		       udfs_fmt_bytes(freed, b, sizeof(b)));
	}
	return 0;
}

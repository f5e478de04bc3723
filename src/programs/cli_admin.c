// SPDX-License-Identifier: MIT
/*
 * The admin verbs of `udfs` that work on a store without FUSE: ls, info,
 * verify, export, rm, gc. Every byte they show or write comes through the
 * same reconstruction code as the mount (recon.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/pool.h"
#include "common/sha256.h"
#include "common/util.h"
#include "format/tmap.h"
#include "programs/cli_i.h"
#include "read/recon.h"
#include "store/admin.h"
#include "store/store.h"

#define IO_BYTES (4u << 20)

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

int udfs_cli_ls(const struct cli_opts *o)
{
	udfs_model_info *v = NULL;
	udfs_store *s;
	size_t n = 0;
	int err;

	s = open_store(o->args[0], UDFS_STORE_RDONLY);
	err = udfs_store_list(s, &v, &n);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (o->json) {
		json_t *a = json_array();

		for (size_t k = 0; k < n; k++)
			json_array_append_new(
			    a,
			    json_pack(
				"{s:o,s:s,s:o,s:o,s:I,s:I,s:f,s:I}", "name",
				udfs_cli_json_str(v[k].name), "kind",
				udfs_model_kind_name(v[k].kind), "base",
				udfs_cli_json_str(v[k].base), "method",
				udfs_cli_json_str(v[k].method), "source_bytes",
				(json_int_t)v[k].source_bytes, "stored_bytes",
				(json_int_t)v[k].stored_bytes, "ratio",
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
			       udfs_cli_str(v[k].name),
			       udfs_model_kind_name(v[k].kind),
			       v[k].base[0] ? udfs_cli_str(v[k].base) : "-",
			       udfs_cli_str(v[k].method), v[k].n_files,
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
	return udfs_encoded_bytes(t);
}

/* Source and stored bytes of m's lossy tensors. */
static void lossy_totals(const udfs_model *m, uint64_t *src, uint64_t *dst)
{
	*src = *dst = 0;
	for (size_t f = 0; f < m->n_files; f++)
		for (size_t k = 0; k < m->files[f].n_tensors; k++) {
			const udfs_tensor *t = &m->files[f].tensors[k];

			if (!udfs_encoding_is_lossy(t->enc))
				continue;
			*src += t->end - t->begin;
			*dst += tensor_stored(t);
		}
}

/* The adaptive method's code of tensor t and its measured delta error, as
 * recorded in the model's params (udfs-compress(1)); NULL for others. */
static const json_t *tensor_code(const json_t *codes, const udfs_tensor *t)
{
	return json_object_get(codes, t->name);
}

static json_t *tensor_json(const udfs_tensor *t, const json_t *codes)
{
	uint64_t src = t->end - t->begin, dst = tensor_stored(t);
	json_t *e = json_pack("{s:o,s:s,s:o,s:s,s:I,s:I,s:f}", "name",
			      udfs_cli_json_str(t->name), "dtype",
			      udfs_dtype_name(t->dtype), "shape", shape_json(t),
			      "encoding", udfs_encoding_name(t->enc),
			      "source_bytes", (json_int_t)src, "stored_bytes",
			      (json_int_t)dst, "ratio", ratio(src, dst));

	if (tensor_code(codes, t)) {
		json_object_set(e, "code",
				json_object_get(tensor_code(codes, t), "code"));
		json_object_set(
		    e, "delta_error",
		    json_object_get(tensor_code(codes, t), "error"));
	}
	if (udfs_encoding_is_lossy(t->enc)) {
		json_object_set_new(e, "rate", json_real(t->lp.rate));
		json_object_set_new(e, "bits", json_integer(t->lp.bits));
		json_object_set_new(e, "gain", json_real(t->lp.gain));
		json_object_set_new(e, "mask",
				    json_string(udfs_mask_name(t->lp.mask)));
	}
	return e;
}

static json_t *file_json(const udfs_file *fl, const json_t *codes)
{
	json_t *jt = json_array();
	uint64_t stored = fl->data_offset;

	for (size_t k = 0; k < fl->n_tensors; k++) {
		json_array_append_new(jt, tensor_json(&fl->tensors[k], codes));
		stored += tensor_stored(&fl->tensors[k]);
	}
	return json_pack(
	    "{s:o,s:s,s:I,s:I,s:s,s:o}", "path", udfs_cli_json_str(fl->path),
	    "kind", udfs_file_kind_name(fl->kind), "size", (json_int_t)fl->size,
	    "stored_bytes", (json_int_t)stored, "sha256", fl->sha256, "tensors",
	    jt);
}

/* udfs info --json: the model as one object (udfs(1)). */
static json_t *model_json(const udfs_model *m)
{
	json_t *jm, *jfiles = json_array();
	json_t *params = json_loads(m->params, 0, NULL);
	uint64_t lossy_src, lossy_dst;

	for (size_t f = 0; f < m->n_files; f++)
		json_array_append_new(
		    jfiles,
		    file_json(&m->files[f], json_object_get(params, "codes")));
	jm = json_pack("{s:o,s:s,s:o,s:o,s:I,s:I,s:f,s:f,s:I}", "name",
		       udfs_cli_json_str(m->name), "kind",
		       udfs_model_kind_name(m->kind), "base",
		       udfs_cli_json_str(m->base ? m->base->name : ""),
		       "method", udfs_cli_json_str(m->method), "source_bytes",
		       (json_int_t)m->source_bytes, "stored_bytes",
		       (json_int_t)m->stored_bytes, "ratio",
		       ratio(m->source_bytes, m->stored_bytes), "sparsity",
		       m->sparsity, "seed", (json_int_t)m->seed);
	json_object_set_new(jm, "params", params);
	lossy_totals(m, &lossy_src, &lossy_dst);
	if (lossy_src) {
		json_object_set_new(jm, "lossy_source_bytes",
				    json_integer((json_int_t)lossy_src));
		json_object_set_new(jm, "lossy_stored_bytes",
				    json_integer((json_int_t)lossy_dst));
		json_object_set_new(jm, "lossy_ratio",
				    json_real(ratio(lossy_src, lossy_dst)));
	}
	json_object_set_new(jm, "files", jfiles);
	return jm;
}

/* One row of info's tensor table. */
static void print_tensor(const udfs_tensor *t, const json_t *codes)
{
	const json_t *c = tensor_code(codes, t);
	uint64_t src = t->end - t->begin, dst = tensor_stored(t);
	char shape[64] = "";
	size_t len = 0;

	for (int d = 0; d < t->ndim && len < 50; d++)
		len +=
		    (size_t)snprintf(shape + len, sizeof(shape) - len,
				     "%s%" PRIu64, d ? "x" : "", t->shape[d]);
	printf("  %-44s %-5s %-11s %-10s", udfs_cli_str(t->name),
	       udfs_dtype_name(t->dtype), shape, udfs_encoding_name(t->enc));
	if (udfs_encoding_is_lossy(t->enc))
		printf(" %6.4f %4u", t->lp.rate, t->lp.bits);
	else
		printf(" %6s %4s", "-", "-");
	printf(" %11" PRIu64 " %11" PRIu64 " %7.2fx", src, dst,
	       ratio(src, dst));
	if (c)
		printf("  %-22s %.4f",
		       json_string_value(json_object_get(c, "code")),
		       json_number_value(json_object_get(c, "error")));
	putchar('\n');
}

static void print_file(const udfs_file *fl, const json_t *codes)
{
	printf("\nfile %s (%s, %" PRIu64 " bytes)\n", udfs_cli_str(fl->path),
	       udfs_file_kind_name(fl->kind), fl->size);
	if (fl->kind != UDFS_FILE_SAFETENSORS)
		return;
	printf("  %-44s %-5s %-11s %-10s %6s %4s %11s %11s %8s%s\n", "TENSOR",
	       "DTYPE", "SHAPE", "ENCODING", "RATE", "BITS", "SOURCE", "STORED",
	       "RATIO", codes ? "  CODE                   ERROR" : "");
	for (size_t k = 0; k < fl->n_tensors; k++)
		print_tensor(&fl->tensors[k], codes);
}

/* udfs info: the model, then a table per file. */
static void print_model(const udfs_model *m)
{
	uint64_t lossy_src, lossy_dst;
	json_t *params = json_loads(m->params, 0, NULL);
	json_t *shown = json_deep_copy(params);
	char a[32], b[32], *ps;

	printf("name:      %s\nkind:      %s\n", udfs_cli_str(m->name),
	       udfs_model_kind_name(m->kind));
	if (m->base)
		printf("base:      %s\n", udfs_cli_str(m->base->name));
	/* The per-tensor codes show in the tensor tables below. */
	json_object_del(shown, "codes");
	ps = json_dumps(shown, JSON_COMPACT | JSON_SORT_KEYS);
	printf("method:    %s\nparams:    %s\n", udfs_cli_str(m->method),
	       udfs_cli_str(ps ? ps : m->params));
	free(ps);
	json_decref(shown);
	printf(
	    "source:    %s\nstored:    %s\nratio:     %.2fx (whole model, real bytes)\n",
	    udfs_fmt_bytes(m->source_bytes, a, sizeof(a)),
	    udfs_fmt_bytes(m->stored_bytes, b, sizeof(b)),
	    ratio(m->source_bytes, m->stored_bytes));
	lossy_totals(m, &lossy_src, &lossy_dst);
	if (lossy_src)
		printf(
		    "lossy:     %.2fx over %s of lossy tensors, sparsity %.4f\n",
		    ratio(lossy_src, lossy_dst),
		    udfs_fmt_bytes(lossy_src, a, sizeof(a)), m->sparsity);
	for (size_t f = 0; f < m->n_files; f++)
		print_file(&m->files[f], json_object_get(params, "codes"));
	json_decref(params);
}

int udfs_cli_info(const struct cli_opts *o)
{
	udfs_store *s = open_store(o->args[0], UDFS_STORE_RDONLY);
	udfs_model *m = NULL;
	int err = udfs_model_load(s, o->args[1], &m);

	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (o->json) {
		json_t *jm = model_json(m);

		json_dumpf(jm, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(jm);
	} else {
		print_model(m);
	}
	udfs_model_put(m);
	udfs_store_close(s);
	return 0;
}

/* ---- verify ----------------------------------------------------------- */

/* Hash a whole virtual file through the read path. */
static int file_sha256(const udfs_file *f, char out[65])
{
	unsigned char *buf = udfs_xmalloc(IO_BYTES);
	udfs_sha256 *h = udfs_sha256_new();
	int err = 0, ferr;

	for (uint64_t off = 0; off < f->size && !err;) {
		ssize_t n = udfs_file_read(f, buf, IO_BYTES, off, NULL);

		if (n <= 0) {
			err = n < 0 ? (int)n : -EIO;
			break;
		}
		if (h)
			err = udfs_sha256_update(h, buf, (uint64_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	ferr = udfs_sha256_final(h, out);
	return err ? err : ferr;
}

/*
 * Where verify's findings go: one line each on stdout, or, with --json,
 * into one JSON document printed at the end.
 */
struct verify_out {
	bool json, quiet;
	json_t *models;	  /* per-model objects (json) */
	json_t *problems; /* the current model's problems (json) */
};

/*
 * One problem: kind is DAMAGED, MISMATCH or FAILED, msg the whole line
 * after it; fl, t (NULL) and chunk (-1) say where, when known.
 */
static void problem(struct verify_out *vo, const char *kind,
		    const udfs_file *fl, const udfs_tensor *t, int64_t chunk,
		    const char *msg)
{
	json_t *p;

	if (!vo->json) {
		printf("%s %s\n", kind, udfs_cli_str(msg));
		return;
	}
	p = json_pack("{s:s,s:o}", "kind", kind, "message",
		      udfs_cli_json_str(msg));
	if (fl)
		json_object_set_new(p, "file", udfs_cli_json_str(fl->path));
	if (t)
		json_object_set_new(p, "tensor", udfs_cli_json_str(t->name));
	if (chunk >= 0)
		json_object_set_new(p, "chunk", json_integer(chunk));
	json_array_append_new(vo->problems, p);
}

/* Decode every chunk of fl, one DAMAGED problem per failure; returns
 * their number. */
static int check_chunks(struct verify_out *vo, const udfs_file *fl,
			unsigned char *buf)
{
	int bad = 0;

	for (size_t k = 0; k < fl->n_tensors; k++) {
		const udfs_tensor *t = &fl->tensors[k];

		for (uint32_t c = 0; c < t->n_chunks; c++) {
			int err;

			udfs_error_clear();
			err = udfs_chunk_decode(t, c, buf);
			if (err) {
				problem(vo, "DAMAGED", fl, t, c,
					udfs_error_msg(err));
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

/* Check an exact file: its sha256 through the read path, and only when
 * that fails each chunk, to name the damage. Returns the problems. */
static int check_exact_file(struct verify_out *vo, const udfs_model *m,
			    const udfs_file *fl, unsigned char *buf)
{
	char sum[65], *msg;
	int bad, err;

	udfs_error_clear();
	err = file_sha256(fl, sum);
	if (!err && !strcmp(sum, fl->sha256))
		return 0;
	bad = check_chunks(vo, fl, buf);
	if (bad)
		return bad;
	if (err) {
		msg = udfs_xasprintf("model %s: file %s: %s", m->name, fl->path,
				     udfs_error_msg(err));
		problem(vo, "DAMAGED", fl, NULL, -1, msg);
	} else {
		msg =
		    udfs_xasprintf("model %s: file %s: sha256 %s, recorded %s",
				   m->name, fl->path, sum, fl->sha256);
		problem(vo, "MISMATCH", fl, NULL, -1, msg);
	}
	free(msg);
	return 1;
}

/* The per-model summary: a line, or the model's JSON object. */
static void model_done(struct verify_out *vo, const char *name, int bad,
		       size_t files, uint64_t chunks, bool exact)
{
	if (vo->json) {
		json_array_append_new(
		    vo->models,
		    json_pack("{s:o,s:s,s:I,s:I,s:b,s:o}", "name",
			      udfs_cli_json_str(name), "status",
			      bad ? "failed" : "ok", "files", (json_int_t)files,
			      "chunks", (json_int_t)chunks, "sha256_checked",
			      exact, "problems", vo->problems));
		vo->problems = json_array(); /* the next model's */
	} else if (!vo->quiet) {
		printf("%s %s: %zu files, %" PRIu64 " chunks%s\n",
		       bad ? "FAILED" : "ok", udfs_cli_str(name), files, chunks,
		       exact ? ", sha256 checked" : "");
	}
}

/*
 * Verify one model; reports each problem and returns their number. An
 * exact file is hashed through the read path, which decodes and checks
 * every chunk on the way. Lossy files have no source hash: their chunks
 * are decoded and checked directly.
 */
static int verify_model(struct verify_out *vo, udfs_model *m)
{
	unsigned char *buf = udfs_xmalloc(UDFS_CHUNK_BYTES);
	bool exact =
	    m->kind == UDFS_MODEL_BASE || !strcmp(m->method, "lossless");
	uint64_t chunks = 0;
	int bad = 0;

	for (size_t f = 0; f < m->n_files; f++) {
		const udfs_file *fl = &m->files[f];

		chunks += count_chunks(fl);
		if (exact && fl->sha256[0])
			bad += check_exact_file(vo, m, fl, buf);
		else
			bad += check_chunks(vo, fl, buf);
	}
	model_done(vo, m->name, bad, m->n_files, chunks, exact);
	free(buf);
	return bad;
}

/* The models to verify: all, or the one named (exit 1 if missing). */
static udfs_model_info *verify_list(udfs_store *s, const struct cli_opts *o,
				    size_t *n)
{
	udfs_model_info *v = NULL;
	size_t k;
	int err = udfs_store_list(s, &v, n);

	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (o->n_args < 2)
		return v;
	for (k = 0; k < *n && strcmp(v[k].name, o->args[1]); k++)
		;
	if (k == *n)
		udfs_die("no model named \"%s\" in %s", o->args[1], o->args[0]);
	v[0] = v[k];
	*n = 1;
	return v;
}

int udfs_cli_verify(const struct cli_opts *o)
{
	struct verify_out vo = {.json = o->json, .quiet = o->quiet};
	udfs_store *s = open_store(o->args[0], UDFS_STORE_RDONLY);
	udfs_model_info *v;
	size_t n = 0;
	int bad = 0;

	vo.models = json_array();
	vo.problems = json_array();
	v = verify_list(s, o, &n);
	for (size_t k = 0; k < n; k++) {
		udfs_model *m;
		char *msg;
		int err;

		udfs_error_clear();
		err = udfs_model_load(s, v[k].name, &m);
		if (!err) {
			bad += verify_model(&vo, m);
			udfs_model_put(m);
			continue;
		}
		msg = udfs_xasprintf("%s: %s", v[k].name, udfs_error_msg(err));
		problem(&vo, "FAILED", NULL, NULL, -1, msg);
		free(msg);
		if (vo.json) /* the line above is the text form's summary */
			model_done(&vo, v[k].name, 1, 0, 0, false);
		bad++;
	}
	if (vo.json) {
		json_t *j = json_pack("{s:O,s:i}", "models", vo.models,
				      "problems", bad);

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	}
	json_decref(vo.models);
	json_decref(vo.problems);
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

/* The temporary name of dst: ".NAME.udfs-tmp" next to it. */
static char *tmp_name(const char *dst)
{
	const char *slash = strrchr(dst, '/');

	if (!slash)
		return udfs_xasprintf(".%s.udfs-tmp", dst);
	return udfs_xasprintf("%.*s/.%s.udfs-tmp", (int)(slash - dst), dst,
			      slash + 1);
}

/*
 * Open tmp for writing, replacing a stale one of our naming that a killed
 * export left (a symlink there is removed, never followed).
 */
static int open_tmp(const char *tmp)
{
	int fd;

	if (unlink(tmp) < 0 && errno != ENOENT)
		return udfs_error(-errno, "%s: %s", tmp, strerror(errno));
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return udfs_error(-errno, "%s: %s", tmp, strerror(errno));
	return fd;
}

/* Write f to dst through a temporary file, synced, then renamed. */
static int export_file(const udfs_file *f, const char *dst, mode_t mode)
{
	char *tmp = tmp_name(dst);
	size_t nwin = (size_t)udfs_ncpus() * 2;
	struct export_window w = {.f = f};
	int fd, err = 0;

	w.buf = udfs_xcalloc(nwin, sizeof(*w.buf));
	w.got = udfs_xcalloc(nwin, sizeof(*w.got));
	for (size_t i = 0; i < nwin; i++)
		w.buf[i] = udfs_xmalloc(IO_BYTES);
	fd = err = open_tmp(tmp);
	if (fd < 0)
		goto out;
	err = 0;
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
	if (close(fd) < 0 && !err)
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
	if (!err && stop)
		err = udfs_error(-EINTR, "interrupted");
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
	return err;
}

/* Directories an export created, removed again (deepest first) when it
 * fails, so that a failed export leaves nothing behind. */
struct made_dirs {
	char **path;
	size_t n;
};

/* mkdir path, recorded in md; an existing directory is fine. */
static int make_dir(const char *path, struct made_dirs *md)
{
	struct stat st;

	if (mkdir(path, 0755) == 0) {
		md->path =
		    udfs_xrealloc(md->path, (md->n + 1) * sizeof(*md->path));
		md->path[md->n++] = udfs_xstrdup(path);
		return 0;
	}
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (errno == EEXIST)
		errno = ENOTDIR;
	return udfs_error(-errno, "%s: %s", path, strerror(errno));
}

/* mkdir -p: path and every missing parent. */
static int make_dirs(const char *path, struct made_dirs *md)
{
	char *p = udfs_xstrdup(path);
	int err = 0;

	for (char *c = p; *c && !err; c++) {
		if (c == p || *c != '/' || c[-1] == '/')
			continue;
		*c = '\0';
		err = make_dir(p, md);
		*c = '/';
	}
	if (!err)
		err = make_dir(p, md);
	free(p);
	return err;
}

/* Remove the directories of md that are empty, deepest first. */
static void unmake_dirs(struct made_dirs *md, bool remove)
{
	for (size_t i = md->n; i-- > 0;) {
		if (remove)
			rmdir(md->path[i]);
		free(md->path[i]);
	}
	free(md->path);
	md->path = NULL;
	md->n = 0;
}

/*
 * A file path of the catalog is relative and '/'-separated, with no empty,
 * "." or ".." component (udfs(5)); anything else could write outside DIR.
 */
static bool path_ok(const char *p)
{
	if (*p == '/')
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");

		if (n == 0 || n > 255 || !strncmp(p, ".", n) ||
		    !strncmp(p, "..", n))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* Refuse before anything is written: a path that leaves DIR, or a file
 * that exists already. */
static void check_targets(const udfs_model *m, const char *dir)
{
	for (size_t f = 0; f < m->n_files; f++) {
		const char *path = m->files[f].path;
		char *p;
		struct stat st;

		if (!path_ok(path))
			udfs_die(
			    "model %s: file path \"%s\" is not a relative path inside the model; not exported",
			    m->name, path);
		p = udfs_xasprintf("%s/%s", dir, path);
		if (lstat(p, &st) == 0)
			udfs_die(
			    "%s already exists; export into a new or empty directory",
			    p);
		free(p);
	}
}

/* Write every file of m under dir; on failure remove what was written. */
static int export_model(const udfs_model *m, const char *dir, mode_t mode)
{
	struct made_dirs md = {0};
	size_t done = 0;
	int err = make_dirs(dir, &md);

	for (size_t f = 0; f < m->n_files && !err; f++) {
		char *dst = udfs_xasprintf("%s/%s", dir, m->files[f].path);
		char *slash = strrchr(dst, '/');

		*slash = '\0';
		err = make_dirs(dst, &md);
		*slash = '/';
		if (!err)
			err = export_file(&m->files[f], dst, mode);
		done += !err;
		free(dst);
	}
	if (err) {
		for (size_t f = 0; f < done; f++) {
			char *p =
			    udfs_xasprintf("%s/%s", dir, m->files[f].path);

			unlink(p);
			free(p);
		}
	}
	unmake_dirs(&md, err != 0);
	return err;
}

int udfs_cli_export(const struct cli_opts *o)
{
	const char *dir = o->args[2];
	struct sigaction sa = {.sa_handler = on_stop};
	udfs_model *m = NULL;
	udfs_store *s;
	mode_t mask;
	int err;

	/* From here on an interrupt removes what this run wrote. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	s = open_store(o->args[0], UDFS_STORE_RDONLY);
	err = udfs_model_load(s, o->args[1], &m);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	check_targets(m, dir);
	mask = umask(0);
	umask(mask);
	err = export_model(m, dir, 0666 & ~mask);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (!o->quiet && isatty(1))
		printf("exported %s: %zu files to %s\n", udfs_cli_str(m->name),
		       m->n_files, udfs_cli_str(dir));
	udfs_model_put(m);
	udfs_store_close(s);
	return 0;
}

/* ---- rm, gc ----------------------------------------------------------- */

int udfs_cli_rm(const struct cli_opts *o)
{
	udfs_store *s = open_store(o->args[0], 0);
	int err = udfs_store_rm(s, o->args[1]);

	udfs_store_close(s);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	return 0;
}

/* gc --dry-run: one line per entry gc would remove. */
static void would_remove(const char *rel, uint64_t bytes, void *ctx)
{
	char b[32];

	(void)ctx;
	printf("would remove %s (%s)\n", udfs_cli_str(rel),
	       udfs_fmt_bytes(bytes, b, sizeof(b)));
}

int udfs_cli_gc(const struct cli_opts *o)
{
	udfs_store *s = open_store(o->args[0], 0);
	uint64_t freed = 0;
	size_t files = 0;
	int err;

	err = udfs_store_gc(s, o->dry_run, o->dry_run ? would_remove : NULL,
			    NULL, &freed, &files);
	udfs_store_close(s);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (!o->quiet) {
		char b[32];

		printf("%s %zu unreferenced entr%s, %s\n",
		       o->dry_run ? "would remove" : "removed", files,
		       files == 1 ? "y" : "ies",
		       udfs_fmt_bytes(freed, b, sizeof(b)));
	}
	return 0;
}

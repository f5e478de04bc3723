// SPDX-License-Identifier: MIT
/*
 * `udfs eval STORE NAME --against SRC`: how far a stored (lossy) model is
 * from its original. For every floating-point tensor, the delta the store
 * reconstructs (W_rec - W_base) is compared with the true delta
 * (W_src - W_base): relative L2 error, cosine similarity, max absolute
 * error of the weights, and SNR in dB. Reads go through the same
 * reconstruction code as the mount.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_i.h"
#include "udfs/dtype.h"
#include "udfs/recon.h"
#include "udfs/source.h"
#include "udfs/store.h"
#include "udfs/util.h"

struct fidelity {
	double err2, src2, rec2, dot, max_abs;
	uint64_t n;
};

static void accumulate(struct fidelity *a, const struct fidelity *b)
{
	a->err2 += b->err2;
	a->src2 += b->src2;
	a->rec2 += b->rec2;
	a->dot += b->dot;
	a->max_abs = fmax(a->max_abs, b->max_abs);
	a->n += b->n;
}

static double rel_err(const struct fidelity *f)
{
	return f->src2 > 0 ? sqrt(f->err2 / f->src2)
			   : (f->err2 > 0 ? INFINITY : 0);
}

static double cosine(const struct fidelity *f)
{
	return f->src2 > 0 && f->rec2 > 0 ? f->dot / sqrt(f->src2 * f->rec2)
					  : (f->src2 == f->rec2 ? 1.0 : 0.0);
}

static double snr_db(const struct fidelity *f)
{
	if (f->err2 == 0)
		return INFINITY;
	return 10 * log10(f->src2 / f->err2);
}

/* The fidelity of one tensor: reconstructed rec and original orig, both
 * against base. */
static void compare(const udfs_tensor *t, const unsigned char *base,
		    const unsigned char *rec, const unsigned char *orig,
		    struct fidelity *f)
{
	memset(f, 0, sizeof(*f));
	for (uint64_t e = 0; e < t->nelems; e++) {
		double b = udfs_dtype_load_f32(t->dtype, base, e);
		double r = udfs_dtype_load_f32(t->dtype, rec, e);
		double w = udfs_dtype_load_f32(t->dtype, orig, e);
		double ds = w - b, dr = r - b;

		f->err2 += (dr - ds) * (dr - ds);
		f->src2 += ds * ds;
		f->rec2 += dr * dr;
		f->dot += dr * ds;
		f->max_abs = fmax(f->max_abs, fabs(r - w));
	}
	f->n = t->nelems;
}

/* Read a whole tensor of a virtual file. */
static unsigned char *read_tensor(const udfs_tensor *t)
{
	uint64_t len = t->end - t->begin;
	unsigned char *buf = udfs_xmalloc(len + 1);
	ssize_t n = udfs_file_read(t->file, buf, len,
				   t->file->data_offset + t->begin, NULL);

	if (n < 0 || (uint64_t)n != len)
		udfs_die("%s", udfs_error_msg(n < 0 ? (int)n : -EIO));
	return buf;
}

/* A metric as JSON: JSON has no inf or nan, so a metric that is not a
 * finite number (the SNR of an exact reconstruction is +inf) is null. */
static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* The four metrics of f as a JSON object. */
static json_t *metrics(const struct fidelity *f)
{
	return json_pack("{s:o,s:o,s:o,s:o}", "rel_err", num(rel_err(f)),
			 "cosine", num(cosine(f)), "max_abs", num(f->max_abs),
			 "snr_db", num(snr_db(f)));
}

/* One row of the text table. */
static void row(const char *name, const char *enc, const struct fidelity *f)
{
	printf("%-44s %-10s %10.4f %9.5f %11.3g %8.2f\n", udfs_cli_str(name),
	       enc, rel_err(f), cosine(f), f->max_abs, snr_db(f));
}

int udfs_cli_eval(const struct cli_opts *o)
{
	struct fidelity all = {0}, lossy = {0};
	udfs_source *src = NULL;
	udfs_model *m = NULL;
	udfs_store *s = NULL;
	json_t *jt = json_array();
	int err;

	err = udfs_store_open(o->args[0], UDFS_STORE_RDONLY, &s);
	if (!err)
		err = udfs_model_load(s, o->args[1], &m);
	if (!err)
		err = udfs_source_open(o->against, &src);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (!m->base)
		udfs_die("\"%s\" is a base model: nothing to evaluate",
			 m->name);
	if (!o->json)
		printf("%-44s %-10s %10s %9s %11s %8s\n", "TENSOR", "ENCODING",
		       "REL_ERR", "COSINE", "MAX_ABS", "SNR_DB");
	for (size_t k = 0; k < m->n_index; k++) {
		const udfs_tensor *t = m->index[k];
		const udfs_source_file *sf;
		const udfs_st_tensor *st = udfs_source_find(src, t->name, &sf);
		const udfs_tensor *bt = udfs_model_tensor(m->base, t->name);
		unsigned char *rec, *base;
		const unsigned char *orig;
		struct fidelity f;

		if (!udfs_dtype_is_lossy_float(t->dtype))
			continue;
		if (!st || st->dtype != t->dtype || st->nelems != t->nelems)
			udfs_die("tensor \"%s\" is missing from %s or has "
				 "another dtype or shape there",
				 t->name, o->against);
		if (!bt || bt->dtype != t->dtype || bt->nelems != t->nelems)
			continue; /* raw: no delta to compare */
		rec = read_tensor(t);
		base = read_tensor(bt);
		orig = sf->map + sf->st->data_offset + st->begin;
		compare(t, base, rec, orig, &f);
		free(rec);
		free(base);
		accumulate(&all, &f);
		if (udfs_encoding_is_lossy(t->enc))
			accumulate(&lossy, &f);
		if (o->json) {
			json_t *e = metrics(&f);

			json_object_set_new(e, "name",
					    udfs_cli_json_str(t->name));
			json_object_set_new(
			    e, "encoding",
			    json_string(udfs_encoding_name(t->enc)));
			json_array_append_new(jt, e);
		} else {
			row(t->name, udfs_encoding_name(t->enc), &f);
		}
	}
	if (o->json) {
		json_t *j = json_pack("{s:o,s:o,s:o,s:o}", "name",
				      udfs_cli_json_str(m->name), "tensors", jt,
				      "overall", metrics(&all), "lossy",
				      metrics(&lossy));

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		json_decref(jt);
		row("(lossy tensors)", "", &lossy);
		row("(all float tensors)", "", &all);
	}
	udfs_source_close(src);
	udfs_model_put(m);
	udfs_store_close(s);
	return 0;
}

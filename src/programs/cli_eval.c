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

#include "codec/fidelity.h"
#include "common/dtype.h"
#include "common/util.h"
#include "format/source.h"
#include "programs/cli_i.h"
#include "read/recon.h"
#include "store/store.h"

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
static json_t *metrics(const udfs_fidelity *f)
{
	return json_pack(
	    "{s:o,s:o,s:o,s:o}", "rel_err", num(udfs_fidelity_rel_err(f)),
	    "cosine", num(udfs_fidelity_cosine(f)), "max_abs", num(f->max_abs),
	    "snr_db", num(udfs_fidelity_snr_db(f)));
}

/* One row of the text table. */
static void row(const char *name, const char *enc, const udfs_fidelity *f)
{
	printf("%-44s %-10s %10.4f %9.5f %11.3g %8.2f\n", udfs_cli_str(name),
	       enc, udfs_fidelity_rel_err(f), udfs_fidelity_cosine(f),
	       f->max_abs, udfs_fidelity_snr_db(f));
}

int udfs_cli_eval(const struct cli_opts *o)
{
	udfs_fidelity all = {0}, lossy = {0};
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
		udfs_fidelity f = {0};

		if (!udfs_dtype_is_lossy_float(t->dtype))
			continue;
		if (!st || st->dtype != t->dtype || st->nelems != t->nelems)
			udfs_die(
			    "tensor \"%s\" is missing from %s or has another dtype or shape there",
			    t->name, o->against);
		if (!bt || bt->dtype != t->dtype || bt->nelems != t->nelems)
			continue; /* raw: no delta to compare */
		rec = read_tensor(t);
		base = read_tensor(bt);
		orig = udfs_source_tensor_bytes(sf, st);
		udfs_fidelity_add(&f, t->dtype, base, rec, orig, t->nelems);
		free(rec);
		free(base);
		udfs_fidelity_merge(&all, &f);
		if (udfs_encoding_is_lossy(t->enc))
			udfs_fidelity_merge(&lossy, &f);
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

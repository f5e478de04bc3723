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
#include "udfs/fidelity.h"
#include "udfs/recon.h"
#include "udfs/source.h"
#include "udfs/store.h"
#include "udfs/util.h"

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

static double num(double v)
{
	return isfinite(v) ? v : (v > 0 ? 1e308 : -1e308);
}

int udfs_cli_eval(int argc, char **argv)
{
	static const char usage[] =
	    "udfs eval STORE NAME --against SRC [--json]";
	struct cli_opts o;
	int i = udfs_cli_parse(argc, argv, &o, usage);
	udfs_fidelity all = {0}, lossy = {0};
	udfs_source *src = NULL;
	udfs_model *m = NULL;
	udfs_store *s = NULL;
	json_t *jt = json_array();
	int err;

	if (argc - i != 2 || !o.against)
		udfs_die("usage: %s", usage);
	err = udfs_store_open(argv[i], UDFS_STORE_RDONLY, &s);
	if (!err)
		err = udfs_model_load(s, argv[i + 1], &m);
	if (!err)
		err = udfs_source_open(o.against, &src);
	if (err)
		udfs_die("%s", udfs_error_msg(err));
	if (!m->base)
		udfs_die("\"%s\" is a base model: nothing to evaluate",
			 m->name);
	if (!o.json)
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
			    "%s: tensor \"%s\" is missing or differs in %s",
			    o.against, t->name, o.against);
		if (!bt || bt->dtype != t->dtype || bt->nelems != t->nelems)
			continue; /* raw: no delta to compare */
		rec = read_tensor(t);
		base = read_tensor(bt);
		orig = sf->map + sf->st->data_offset + st->begin;
		udfs_fidelity_add(&f, t->dtype, base, rec, orig, t->nelems);
		free(rec);
		free(base);
		udfs_fidelity_merge(&all, &f);
		if (udfs_encoding_is_lossy(t->enc))
			udfs_fidelity_merge(&lossy, &f);
		if (o.json)
			json_array_append_new(
			    jt, json_pack("{s:s,s:s,s:f,s:f,s:f,s:f}", "name",
					  t->name, "encoding",
					  udfs_encoding_name(t->enc), "rel_err",
					  num(udfs_fidelity_rel_err(&f)),
					  "cosine", udfs_fidelity_cosine(&f),
					  "max_abs", f.max_abs, "snr_db",
					  num(udfs_fidelity_snr_db(&f))));
		else
			printf("%-44s %-10s %10.4f %9.5f %11.3g %8.2f\n",
			       t->name, udfs_encoding_name(t->enc),
			       udfs_fidelity_rel_err(&f),
			       udfs_fidelity_cosine(&f), f.max_abs,
			       udfs_fidelity_snr_db(&f));
	}
	if (o.json) {
		json_t *j = json_pack(
		    "{s:s,s:o,s:{s:f,s:f,s:f,s:f},s:{s:f,s:f,s:f,s:f}}", "name",
		    m->name, "tensors", jt, "overall", "rel_err",
		    num(udfs_fidelity_rel_err(&all)), "cosine",
		    udfs_fidelity_cosine(&all), "max_abs", all.max_abs,
		    "snr_db", num(udfs_fidelity_snr_db(&all)), "lossy",
		    "rel_err", num(udfs_fidelity_rel_err(&lossy)), "cosine",
		    udfs_fidelity_cosine(&lossy), "max_abs", lossy.max_abs,
		    "snr_db", num(udfs_fidelity_snr_db(&lossy)));

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		json_decref(jt);
		printf("%-44s %-10s %10.4f %9.5f %11.3g %8.2f\n",
		       "(lossy tensors)", "", udfs_fidelity_rel_err(&lossy),
		       udfs_fidelity_cosine(&lossy), lossy.max_abs,
		       udfs_fidelity_snr_db(&lossy));
		printf("%-44s %-10s %10.4f %9.5f %11.3g %8.2f\n",
		       "(all float tensors)", "", udfs_fidelity_rel_err(&all),
		       udfs_fidelity_cosine(&all), all.max_abs,
		       udfs_fidelity_snr_db(&all));
	}
	udfs_source_close(src);
	udfs_model_put(m);
	udfs_store_close(s);
	return 0;
}

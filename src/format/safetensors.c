// SPDX-License-Identifier: MIT
/*
 * Strict safetensors header parser (see safetensors.h for the rules).
 *
 * The parser never trusts a number from the file before checking it: the
 * header length is checked against the real file size before the header is
 * read or copied, and element counts and byte sizes are computed with
 * overflow checks and compared with the data area; nothing is allocated
 * from them. Allocations are bounded by the header length, which is bounded
 * by the file size and UDFS_ST_MAX_HEADER.
 *
 * The JSON is parsed with jansson (duplicate keys rejected, UTF-8 checked).
 * Each header carries a private name index (tensor pointers sorted by name)
 * so that udfs_st_find() is a binary search.
 */
#include "format/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/dtype.h"
#include "common/util.h"

/* The public header plus its private name index; udfs_st_header is always
 * the first member so a header pointer converts back. */
struct st_priv {
	udfs_st_header h;
	udfs_st_tensor **by_name; /* n_tensors pointers sorted by name */
};

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int cmp_begin(const void *a, const void *b)
{
	const udfs_st_tensor *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b)
{
	const udfs_st_tensor *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* Format a shape as "[2, 3]" into buf for messages (truncated if long). */
static const char *fmt_shape(const udfs_st_tensor *t, char *buf, size_t len)
{
	size_t o = 0;

	o += (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < t->ndim && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%" PRIu64,
				      i ? ", " : "", t->shape[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
	return buf;
}

/* A JSON integer >= 0, stored in *v. */
static bool get_uint(const json_t *j, uint64_t *v)
{
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

/*
 * The parser runs in the mount daemon too (a catalog's headers are parsed
 * when it is loaded), so it allocates with plain malloc and answers
 * -ENOMEM instead of aborting (udfs_x* are for the programs that write).
 */
static int no_memory(const char *label)
{
	return udfs_error(-ENOMEM, "%s: out of memory", label);
}

/* strdup by way of malloc: glibc's strdup allocates inside libc, where
 * test_st_nomem's malloc wrapper cannot fail it. */
static char *copy_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

static int parse_meta(const char *label, json_t *meta, udfs_st_header *h)
{
	const char *key;
	json_t *val;
	size_t i = 0;

	if (!json_is_object(meta))
		return udfs_error(-EINVAL, "%s: __metadata__ is not an object",
				  label);
	h->meta_keys = calloc(json_object_size(meta) + 1, sizeof(char *));
	h->meta_values = calloc(json_object_size(meta) + 1, sizeof(char *));
	if (!h->meta_keys || !h->meta_values)
		return no_memory(label);
	/* Counted as they are set, so udfs_st_free() releases just those. */
	json_object_foreach(meta, key, val)
	{
		if (!json_is_string(val))
			return udfs_error(
			    -EINVAL,
			    "%s: __metadata__ value of \"%s\" is not a string",
			    label, key);
		h->meta_keys[i] = copy_str(key);
		h->meta_values[i] = copy_str(json_string_value(val));
		h->n_meta = ++i;
		if (!h->meta_keys[i - 1] || !h->meta_values[i - 1])
			return no_memory(label);
	}
	return 0;
}

/* The dtype, shape and data_offsets of tensor object obj, and no other
 * field. */
static int tensor_fields(const char *label, const char *name, json_t *obj,
			 json_t **dtype, json_t **shape, json_t **offs)
{
	const char *key;
	json_t *val;

	if (!json_is_object(obj))
		return udfs_error(-EINVAL, "%s: tensor \"%s\" is not an object",
				  label, name);
	json_object_foreach(obj, key, val)
	{
		if (strcmp(key, "dtype") && strcmp(key, "shape") &&
		    strcmp(key, "data_offsets"))
			return udfs_error(
			    -EINVAL, "%s: tensor \"%s\": unknown field \"%s\"",
			    label, name, key);
	}
	*dtype = json_object_get(obj, "dtype");
	*shape = json_object_get(obj, "shape");
	*offs = json_object_get(obj, "data_offsets");
	if (!*dtype || !*shape || !*offs)
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": missing field \"%s\"",
				  label, name,
				  !*dtype   ? "dtype"
				  : !*shape ? "shape"
					    : "data_offsets");
	return 0;
}

/* t->shape and t->nelems from the JSON array shape. */
static int parse_shape(const char *label, json_t *shape, udfs_st_tensor *t)
{
	const char *name = t->name;
	char sbuf[128];

	if (!json_is_array(shape))
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": shape is not an array",
				  label, name);
	/* The array is already in memory, so its size is bounded by the
	 * header length: this allocation is safe. */
	t->ndim = (int)json_array_size(shape);
	if ((size_t)t->ndim != json_array_size(shape))
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": too many dimensions",
				  label, name);
	t->shape = calloc((size_t)t->ndim + 1, sizeof(uint64_t));
	if (!t->shape)
		return no_memory(label);
	t->nelems = 1;
	for (int i = 0; i < t->ndim; i++) {
		if (!get_uint(json_array_get(shape, (size_t)i), &t->shape[i]))
			return udfs_error(
			    -EINVAL,
			    "%s: tensor \"%s\": shape must hold non-negative integers",
			    label, name);
		/* Like the reference, an overflowing running product is an
		 * error even if a later dimension is 0. */
		if (__builtin_mul_overflow(t->nelems, t->shape[i], &t->nelems))
			return udfs_error(
			    -EINVAL,
			    "%s: tensor \"%s\": shape %s overflows the element count",
			    label, name, fmt_shape(t, sbuf, sizeof(sbuf)));
	}
	return 0;
}

/* t->begin and t->end from data_offsets, which must hold exactly the
 * bytes of t's shape and dtype. */
static int parse_offsets(const char *label, json_t *offs, udfs_st_tensor *t)
{
	const char *name = t->name;
	unsigned bits;
	uint64_t nbits, bytes;
	char sbuf[128];

	if (!json_is_array(offs) || json_array_size(offs) != 2 ||
	    !get_uint(json_array_get(offs, 0), &t->begin) ||
	    !get_uint(json_array_get(offs, 1), &t->end))
		return udfs_error(
		    -EINVAL,
		    "%s: tensor \"%s\": data_offsets must be [begin, end] of non-negative integers",
		    label, name);
	if (t->begin > t->end)
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": data_offsets [%" PRIu64
				  ", %" PRIu64 "] begin after end",
				  label, name, t->begin, t->end);

	bits = udfs_dtype_bits(t->dtype);
	if (__builtin_mul_overflow(t->nelems, (uint64_t)bits, &nbits))
		return udfs_error(
		    -EINVAL,
		    "%s: tensor \"%s\": shape %s of %s overflows the byte size",
		    label, name, fmt_shape(t, sbuf, sizeof(sbuf)),
		    udfs_dtype_name(t->dtype));
	if (nbits % 8)
		return udfs_error(
		    -EINVAL,
		    "%s: tensor \"%s\": shape %s of %s is not a whole number of bytes (misaligned)",
		    label, name, fmt_shape(t, sbuf, sizeof(sbuf)),
		    udfs_dtype_name(t->dtype));
	bytes = nbits / 8;
	if (bytes != t->end - t->begin)
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": data_offsets [%" PRIu64
				  ", %" PRIu64 "] hold %" PRIu64
				  " bytes but shape %s of %s needs %" PRIu64,
				  label, name, t->begin, t->end,
				  t->end - t->begin,
				  fmt_shape(t, sbuf, sizeof(sbuf)),
				  udfs_dtype_name(t->dtype), bytes);
	return 0;
}

/* Fill t from the tensor object obj; t->name is already set. */
static int parse_tensor(const char *label, json_t *obj, udfs_st_tensor *t)
{
	const char *name = t->name;
	json_t *dtype = NULL, *shape = NULL, *offs = NULL;
	int err = tensor_fields(label, name, obj, &dtype, &shape, &offs);

	if (err)
		return err;
	if (!json_is_string(dtype))
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": dtype is not a string",
				  label, name);
	t->dtype = udfs_dtype_parse(json_string_value(dtype));
	if (t->dtype < 0)
		return udfs_error(-EINVAL,
				  "%s: tensor \"%s\": unknown dtype \"%s\"",
				  label, name, json_string_value(dtype));
	err = parse_shape(label, shape, t);
	return err ? err : parse_offsets(label, offs, t);
}

/* Check that the tensors, sorted by begin, tile [0, data_len). */
static int check_tiling(const char *label, const udfs_st_header *h)
{
	uint64_t pos = 0;

	for (size_t i = 0; i < h->n_tensors; i++) {
		const udfs_st_tensor *t = &h->tensors[i];

		if (t->begin > pos)
			return udfs_error(
			    -EINVAL,
			    "%s: tensor \"%s\": data_offsets begin at %" PRIu64
			    " leaving a hole [%" PRIu64 ", %" PRIu64
			    ") that no tensor covers",
			    label, t->name, t->begin, pos, t->begin);
		if (t->begin < pos)
			return udfs_error(
			    -EINVAL,
			    "%s: tensor \"%s\": data_offsets [%" PRIu64
			    ", %" PRIu64 "] overlap tensor \"%s\"",
			    label, t->name, t->begin, t->end,
			    h->tensors[i - 1].name);
		if (t->end > h->data_len)
			return udfs_error(
			    -EINVAL,
			    "%s: tensor \"%s\": data_offsets [%" PRIu64
			    ", %" PRIu64 "] go past the end of the %" PRIu64
			    "-byte data area",
			    label, t->name, t->begin, t->end, h->data_len);
		pos = t->end;
	}
	if (pos != h->data_len)
		return udfs_error(
		    -EINVAL,
		    "%s: %" PRIu64
		    " trailing byte%s after the last tensor (tensors cover %" PRIu64
		    " of %" PRIu64 " data bytes)",
		    label, h->data_len - pos, h->data_len - pos == 1 ? "" : "s",
		    pos, h->data_len);
	return 0;
}

/* Turn a jansson failure into one message. */
static int json_fail(const char *label, const json_error_t *jerr)
{
	switch (json_error_code(jerr)) {
	case json_error_invalid_utf8:
		return udfs_error(-EINVAL, "%s: header is not valid UTF-8 (%s)",
				  label, jerr->text);
	case json_error_duplicate_key:
		return udfs_error(
		    -EINVAL,
		    "%s: header has a duplicate key (tensor names must be unique): %s",
		    label, jerr->text);
	case json_error_wrong_type:
		return udfs_error(-EINVAL, "%s: header is not a JSON object",
				  label);
	default:
		return udfs_error(-EINVAL,
				  "%s: header is not valid JSON: %s at byte %d",
				  label, jerr->text, jerr->position);
	}
}

/* The length n of the JSON header of a file of file_size bytes whose
 * first len bytes are at p: -EAGAIN with *need when more bytes are
 * needed, -EINVAL with a message when the prefix is not a header. */
static int header_len(const char *label, const unsigned char *p, size_t len,
		      uint64_t file_size, uint64_t *need, uint64_t *out_n)
{
	uint64_t n;

	if (file_size < 8)
		return udfs_error(
		    -EINVAL,
		    "%s: file is %" PRIu64
		    " byte%s, too short for a safetensors header length",
		    label, file_size, file_size == 1 ? "" : "s");
	if (len < 8) {
		if (need)
			*need = 8;
		return -EAGAIN;
	}
	n = le64(p);
	if (n > UDFS_ST_MAX_HEADER)
		return udfs_error(-EINVAL,
				  "%s: header length %" PRIu64
				  " exceeds the limit of %llu bytes",
				  label, n, UDFS_ST_MAX_HEADER);
	if (8 + n > file_size)
		return udfs_error(-EINVAL,
				  "%s: header length %" PRIu64
				  " exceeds file size %" PRIu64,
				  label, n, file_size);
	if (len < 8 + n) {
		if (need)
			*need = 8 + n;
		return -EAGAIN;
	}
	if (n == 0 || p[8] != '{')
		return udfs_error(
		    -EINVAL,
		    "%s: header is not a JSON object (it must start with '{')",
		    label);
	if (memchr(p + 8, '\0', n))
		return udfs_error(-EINVAL, "%s: header contains a NUL byte",
				  label);
	*out_n = n;
	return 0;
}

int udfs_st_parse(const char *label, const void *buf, size_t len,
		  uint64_t file_size, uint64_t *need, udfs_st_header **out)
{
	const unsigned char *p = buf;
	struct st_priv *sp = NULL;
	udfs_st_header *h;
	json_t *root = NULL;
	json_error_t jerr;
	const char *key;
	json_t *val;
	uint64_t n = 0;
	size_t i;
	int err;

	*out = NULL;
	err = header_len(label, p, len, file_size, need, &n);
	if (err)
		return err;
	root =
	    json_loadb((const char *)p + 8, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return json_fail(label, &jerr);
	if (!json_is_object(root)) {
		err = udfs_error(-EINVAL, "%s: header is not a JSON object",
				 label);
		goto out;
	}

	sp = calloc(1, sizeof(*sp));
	if (!sp) {
		err = no_memory(label);
		goto out;
	}
	h = &sp->h;
	h->header_len = n;
	h->data_offset = 8 + n;
	h->data_len = file_size - 8 - n;
	h->raw = malloc(8 + n);
	h->tensors = calloc(json_object_size(root) + 1, sizeof(udfs_st_tensor));
	if (!h->raw || !h->tensors) {
		err = no_memory(label);
		goto out;
	}
	memcpy(h->raw, p, 8 + n);
	json_object_foreach(root, key, val)
	{
		if (strcmp(key, "__metadata__") == 0) {
			err = parse_meta(label, val, h);
			if (err)
				goto out;
			continue;
		}
		h->tensors[h->n_tensors].name = copy_str(key);
		/* Count it first so udfs_st_free() releases its fields. */
		if (!h->tensors[h->n_tensors++].name) {
			err = no_memory(label);
			goto out;
		}
		err = parse_tensor(label, val, &h->tensors[h->n_tensors - 1]);
		if (err)
			goto out;
	}
	qsort(h->tensors, h->n_tensors, sizeof(*h->tensors), cmp_begin);
	err = check_tiling(label, h);
	if (err)
		goto out;

	sp->by_name = calloc(h->n_tensors + 1, sizeof(*sp->by_name));
	if (!sp->by_name) {
		err = no_memory(label);
		goto out;
	}
	for (i = 0; i < h->n_tensors; i++)
		sp->by_name[i] = &h->tensors[i];
	qsort(sp->by_name, h->n_tensors, sizeof(*sp->by_name), cmp_name);
	*out = h;
	sp = NULL;
	err = 0;
out:
	if (sp)
		udfs_st_free(&sp->h);
	json_decref(root);
	return err;
}

int udfs_st_read_fd(const char *label, int fd, udfs_st_header **out)
{
	unsigned char small[8];
	unsigned char *buf = NULL;
	uint64_t need = 0;
	struct stat st;
	int err;

	*out = NULL;
	if (fstat(fd, &st) < 0)
		return udfs_error(-errno, "%s: %s", label, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return udfs_error(-EINVAL, "%s: not a regular file", label);
	if (st.st_size < 8)
		return udfs_st_parse(label, small, 0, (uint64_t)st.st_size,
				     &need, out);
	err = udfs_pread_full(fd, small, 8, 0);
	if (err)
		return udfs_error(err, "%s: read: %s", label, strerror(-err));
	err = udfs_st_parse(label, small, 8, (uint64_t)st.st_size, &need, out);
	if (err != -EAGAIN)
		return err;
	/* need <= file size and <= 8 + UDFS_ST_MAX_HEADER: checked above. */
	buf = malloc(need);
	if (!buf)
		return no_memory(label);
	err = udfs_pread_full(fd, buf, need, 0);
	if (err) {
		err = udfs_error(err, "%s: read: %s", label, strerror(-err));
		goto out;
	}
	err = udfs_st_parse(label, buf, need, (uint64_t)st.st_size, &need, out);
	if (err == -EAGAIN) /* cannot happen: the buffer is what it asked */
		err =
		    udfs_error(-EIO, "%s: header changed while reading", label);
out:
	free(buf);
	return err;
}

const udfs_st_tensor *udfs_st_find(const udfs_st_header *h, const char *name)
{
	const struct st_priv *sp = (const struct st_priv *)h;
	size_t lo = 0, hi;

	if (!h || !sp->by_name)
		return NULL;
	hi = h->n_tensors;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, sp->by_name[mid]->name);

		if (c == 0)
			return sp->by_name[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void udfs_st_free(udfs_st_header *h)
{
	struct st_priv *sp = (struct st_priv *)h;

	if (!h)
		return;
	for (size_t i = 0; i < h->n_tensors; i++) {
		free(h->tensors[i].name);
		free(h->tensors[i].shape);
	}
	free(h->tensors);
	for (size_t i = 0; i < h->n_meta; i++) {
		free(h->meta_keys[i]);
		free(h->meta_values[i]);
	}
	free(h->meta_keys);
	free(h->meta_values);
	free(h->raw);
	free(sp->by_name);
	free(sp);
}

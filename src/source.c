// SPDX-License-Identifier: MIT
/*
 * Model sources for udfs-compress: one .safetensors file, or a Hugging Face
 * model directory. Opening validates everything before the caller writes a
 * byte: each file is a regular file (or a symlink that stays inside the
 * directory), every safetensors header parses strictly, tensor names are
 * unique across shards, and model.safetensors.index.json, when present,
 * maps exactly the tensors of the shards to the shards that hold them.
 *
 * Files are mmap-ed read-only and shared, so reading a multi-gigabyte
 * source costs page cache, not heap. One name index (sorted array over all
 * shards) serves udfs_source_find().
 */
#include "udfs/source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source_i.h"
#include "udfs/store.h"
#include "udfs/util.h"

#define ST_SUFFIX ".safetensors"

struct src_ent {
	const char *name;
	const udfs_st_tensor *t;
	const udfs_source_file *file;
};

/* The public source plus its private name index; the public part comes
 * first so a source pointer converts back. */
struct src_priv {
	udfs_source s;
	struct src_ent *idx; /* s.n_tensors entries sorted by name */
};

static bool has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* A name that can only mean a file directly inside the directory. */
static bool plain_name(const char *s)
{
	return s[0] && s[0] != '.' && !strchr(s, '/');
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_ent(const void *a, const void *b)
{
	const struct src_ent *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Where the index names tensor name when it is not there: the shard that
 * really holds it, or NULL. */
static const char *holder(const char *name, size_t n_shards,
			  const char *const *names,
			  const udfs_st_header *const *shards)
{
	for (size_t i = 0; i < n_shards; i++)
		if (udfs_st_find(shards[i], name))
			return names[i];
	return NULL;
}

int udfs_index_check(const char *label, const void *buf, size_t len,
		     size_t n_shards, const char *const *names,
		     const udfs_st_header *const *shards)
{
	json_t *root = NULL, *wm, *val;
	json_error_t jerr;
	const char *key;
	int err = -EINVAL;

	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return udfs_error(-EINVAL, "%s: not valid JSON: %s at byte %d",
				  label, jerr.text, jerr.position);
	if (!json_is_object(root)) {
		udfs_error(err, "%s: not a JSON object", label);
		goto out;
	}
	wm = json_object_get(root, "weight_map");
	if (!json_is_object(wm)) {
		udfs_error(err, "%s: \"weight_map\" is %s", label,
			   wm ? "not an object" : "missing");
		goto out;
	}

	json_object_foreach(wm, key, val)
	{
		const char *shard, *real;
		size_t k;

		if (!json_is_string(val)) {
			udfs_error(err,
				   "%s: tensor \"%s\": shard name is not "
				   "a string",
				   label, key);
			goto out;
		}
		shard = json_string_value(val);
		if (!plain_name(shard)) {
			udfs_error(err,
				   "%s: tensor \"%s\": shard name \"%s\" "
				   "is not a plain file name in the model "
				   "directory",
				   label, key, shard);
			goto out;
		}
		for (k = 0; k < n_shards; k++)
			if (strcmp(names[k], shard) == 0)
				break;
		if (k == n_shards) {
			udfs_error(err,
				   "%s: tensor \"%s\": shard %s is not a "
				   "safetensors file of the model",
				   label, key, shard);
			goto out;
		}
		if (udfs_st_find(shards[k], key))
			continue;
		real = holder(key, n_shards, names, shards);
		if (real)
			udfs_error(err,
				   "%s: tensor \"%s\" is in %s but the "
				   "index names %s",
				   label, key, real, shard);
		else
			udfs_error(err,
				   "%s: tensor \"%s\" is not in %s (nor "
				   "in any shard)",
				   label, key, shard);
		goto out;
	}

	for (size_t i = 0; i < n_shards; i++) {
		for (size_t j = 0; j < shards[i]->n_tensors; j++) {
			const char *name = shards[i]->tensors[j].name;

			val = json_object_get(wm, name);
			if (!val) {
				udfs_error(err,
					   "%s: tensor \"%s\" of %s is "
					   "missing from the weight_map",
					   label, name, names[i]);
				goto out;
			}
			if (strcmp(json_string_value(val), names[i])) {
				udfs_error(err,
					   "%s: tensor \"%s\" is in %s "
					   "but the index names %s",
					   label, name, names[i],
					   json_string_value(val));
				goto out;
			}
		}
	}
	err = 0;
out:
	json_decref(root);
	return err;
}

/*
 * Decide whether directory entry name is a file of the model: 1 yes, 0 skip
 * it silently, or a negative errno for an entry that must not be there.
 */
static int admit(const char *label, int dfd, const char *realdir,
		 const char *name)
{
	struct stat st;
	char *full = NULL, *target = NULL;
	size_t n = strlen(realdir);
	int ret;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return udfs_error(-errno, "%s: %s: %s", label, name,
				  strerror(errno));
	if (S_ISDIR(st.st_mode))
		return 0;
	if (S_ISREG(st.st_mode))
		return 1;
	if (!S_ISLNK(st.st_mode))
		return udfs_error(-EINVAL,
				  "%s: %s is not a regular file "
				  "(device, fifo or socket)",
				  label, name);

	full = udfs_xasprintf("%s/%s", realdir, name);
	target = realpath(full, NULL);
	if (!target) {
		ret = udfs_error(-errno, "%s: symlink %s: %s", label, name,
				 strerror(errno));
		goto out;
	}
	/* realdir "/" is a prefix of everything: no separator to add. */
	if (n == 1)
		n = 0;
	if (strncmp(target, realdir, n) || target[n] != '/') {
		ret = udfs_error(-EINVAL,
				 "%s: symlink %s points outside the "
				 "model directory (to %s)",
				 label, name, target);
		goto out;
	}
	if (stat(target, &st) < 0) {
		ret = udfs_error(-errno, "%s: %s: %s", label, name,
				 strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode))
		ret = 0;
	else if (S_ISREG(st.st_mode))
		ret = 1;
	else
		ret = udfs_error(-EINVAL,
				 "%s: symlink %s points to something "
				 "that is not a regular file",
				 label, name);
out:
	free(target);
	free(full);
	return ret;
}

/* 0 when open descriptor fd is a file below realdir, else -EINVAL. */
static int check_inside(const char *shown, const char *realdir, int fd)
{
	char link[64], target[PATH_MAX];
	size_t n = strlen(realdir);
	ssize_t len;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	len = readlink(link, target, sizeof(target) - 1);
	if (len < 0)
		return 0; /* no /proc: the check by name stands */
	target[len] = '\0';
	if (n == 1)
		n = 0;
	if (strncmp(target, realdir, n) || target[n] != '/')
		return udfs_error(-EINVAL,
				  "%s: opened %s, outside the model "
				  "directory",
				  shown, target);
	return 0;
}

/* Open, map and (for .safetensors) parse one file into f; f->path is set
 * and f->fd is -1 on entry. msg_name names the file in messages. */
static int open_file(int dfd, const char *rel, const char *msg_name,
		     udfs_source_file *f)
{
	struct stat st;
	void *map;
	int err;

	f->fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f->fd < 0)
		return udfs_error(-errno, "%s: %s", msg_name, strerror(errno));
	if (fstat(f->fd, &st) < 0)
		return udfs_error(-errno, "%s: %s", msg_name, strerror(errno));
	/* Checked again on the descriptor: the entry may have changed. */
	if (!S_ISREG(st.st_mode))
		return udfs_error(-EINVAL, "%s: not a regular file", msg_name);
	f->size = (uint64_t)st.st_size;
	f->kind = has_suffix(f->path, ST_SUFFIX) ? UDFS_FILE_SAFETENSORS
						 : UDFS_FILE_VERBATIM;
	if (f->size) {
		if (f->size > SIZE_MAX)
			return udfs_error(-EFBIG, "%s: too large to map",
					  msg_name);
		map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, f->fd,
			   0);
		if (map == MAP_FAILED)
			return udfs_error(-errno, "%s: mmap: %s", msg_name,
					  strerror(errno));
		f->map = map;
	}
	if (f->kind != UDFS_FILE_SAFETENSORS)
		return 0;
	err = udfs_st_parse(msg_name, f->map, (size_t)f->size, f->size, NULL,
			    &f->st);
	/* The whole file is mapped, so the parser never asks for more. */
	if (err == -EAGAIN)
		err = udfs_error(-EINVAL, "%s: truncated header", msg_name);
	return err;
}

/* List the model files of directory path into *names (sorted). */
static int scan_dir(const char *path, int dfd, char ***names, size_t *n)
{
	DIR *d = NULL;
	struct dirent *de;
	char *realdir = NULL;
	size_t cap = 0;
	int dfd2 = -1, err = 0;

	*names = NULL;
	*n = 0;
	realdir = realpath(path, NULL);
	if (!realdir)
		return udfs_error(-errno, "%s: %s", path, strerror(errno));
	dfd2 = dup(dfd);
	if (dfd2 < 0 || !(d = fdopendir(dfd2))) {
		err = udfs_error(-errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	dfd2 = -1;
	while ((errno = 0, de = readdir(d))) {
		int ok;

		if (de->d_name[0] == '.')
			continue;
		ok = admit(path, dfd, realdir, de->d_name);
		if (ok < 0) {
			err = ok;
			goto out;
		}
		if (!ok)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			*names = udfs_xrealloc(*names, cap * sizeof(char *));
		}
		(*names)[(*n)++] = udfs_xstrdup(de->d_name);
	}
	if (errno) {
		err = udfs_error(-errno, "%s: readdir: %s", path,
				 strerror(errno));
		goto out;
	}
	if (*n)
		qsort(*names, *n, sizeof(char *), cmp_str);
out:
	if (dfd2 >= 0)
		close(dfd2);
	if (d)
		closedir(d);
	free(realdir);
	return err;
}

/* Build the name index over all shards; tensor names must be unique. */
static int build_index(struct src_priv *sp)
{
	udfs_source *s = &sp->s;
	size_t k = 0;

	s->n_tensors = 0;
	for (size_t i = 0; i < s->n_files; i++)
		if (s->files[i].st)
			s->n_tensors += s->files[i].st->n_tensors;
	sp->idx = udfs_xcalloc(s->n_tensors + 1, sizeof(*sp->idx));
	for (size_t i = 0; i < s->n_files; i++) {
		const udfs_st_header *h = s->files[i].st;

		for (size_t j = 0; h && j < h->n_tensors; j++)
			sp->idx[k++] = (struct src_ent){
			    h->tensors[j].name, &h->tensors[j], &s->files[i]};
	}
	qsort(sp->idx, k, sizeof(*sp->idx), cmp_ent);
	for (size_t i = 1; i < k; i++)
		if (strcmp(sp->idx[i - 1].name, sp->idx[i].name) == 0)
			return udfs_error(-EINVAL,
					  "%s: tensor \"%s\" is in both "
					  "%s and %s",
					  s->label, sp->idx[i].name,
					  sp->idx[i - 1].file->path,
					  sp->idx[i].file->path);
	return 0;
}

/* Check model.safetensors.index.json against the shards, if present. */
static int check_index(const udfs_source *s)
{
	const udfs_source_file *index = NULL;
	const char **names = NULL;
	const udfs_st_header **shards = NULL;
	size_t n = 0;
	int err;

	for (size_t i = 0; i < s->n_files; i++)
		if (strcmp(s->files[i].path, UDFS_INDEX_NAME) == 0)
			index = &s->files[i];
	if (!index)
		return 0;
	names = udfs_xcalloc(s->n_files, sizeof(*names));
	shards = udfs_xcalloc(s->n_files, sizeof(*shards));
	for (size_t i = 0; i < s->n_files; i++) {
		if (!s->files[i].st)
			continue;
		names[n] = s->files[i].path;
		shards[n++] = s->files[i].st;
	}
	err = udfs_index_check(index->path,
			       index->map ? (const void *)index->map : "",
			       (size_t)index->size, n, names, shards);
	free(names);
	free(shards);
	return err;
}

int udfs_source_open(const char *path, udfs_source **out)
{
	struct src_priv *sp = NULL;
	udfs_source *s;
	char **names = NULL, *realdir = NULL;
	size_t n_names = 0, n_st = 0;
	struct stat st;
	int dfd = -1, err;

	*out = NULL;
	if (stat(path, &st) < 0)
		return udfs_error(-errno, "%s: %s", path, strerror(errno));
	sp = udfs_xcalloc(1, sizeof(*sp));
	s = &sp->s;
	s->label = udfs_xstrdup(path);

	if (S_ISREG(st.st_mode)) {
		const char *base = strrchr(path, '/');

		if (!has_suffix(path, ST_SUFFIX)) {
			err = udfs_error(-EINVAL,
					 "%s: not a .safetensors file "
					 "or a model directory",
					 path);
			goto out;
		}
		s->files = udfs_xcalloc(1, sizeof(*s->files));
		s->files[0].fd = -1;
		s->files[0].path = udfs_xstrdup(base ? base + 1 : path);
		s->n_files = 1;
		err = open_file(AT_FDCWD, path, path, &s->files[0]);
		if (err)
			goto out;
	} else if (S_ISDIR(st.st_mode)) {
		dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			err =
			    udfs_error(-errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		err = scan_dir(path, dfd, &names, &n_names);
		if (err)
			goto out;
		realdir = realpath(path, NULL);
		if (!realdir) {
			err =
			    udfs_error(-errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		s->files = udfs_xcalloc(n_names + 1, sizeof(*s->files));
		for (size_t i = 0; i < n_names; i++) {
			udfs_source_file *f = &s->files[s->n_files++];
			char *shown;

			f->fd = -1;
			f->path = names[i];
			names[i] = NULL;
			/* Messages name the file with its directory. */
			shown = udfs_xasprintf("%s/%s", path, f->path);
			err = open_file(dfd, f->path, shown, f);
			/* The entry was checked by name before it was opened;
			 * check what was opened, so that a symlink swapped in
			 * between cannot lead out of the directory. */
			if (!err)
				err = check_inside(shown, realdir, f->fd);
			free(shown);
			if (err)
				goto out;
			n_st += f->kind == UDFS_FILE_SAFETENSORS;
		}
		if (!n_st) {
			err = udfs_error(-EINVAL,
					 "%s: no .safetensors files in "
					 "the directory",
					 path);
			goto out;
		}
	} else {
		err = udfs_error(-EINVAL,
				 "%s: not a regular file or a "
				 "directory",
				 path);
		goto out;
	}

	err = build_index(sp);
	if (err)
		goto out;
	err = check_index(s);
	if (err)
		goto out;
	*out = s;
	sp = NULL;
out:
	for (size_t i = 0; i < n_names; i++)
		free(names[i]);
	free(names);
	free(realdir);
	if (dfd >= 0)
		close(dfd);
	if (sp)
		udfs_source_close(&sp->s);
	return err;
}

void udfs_source_close(udfs_source *src)
{
	struct src_priv *sp = (struct src_priv *)src;

	if (!src)
		return;
	for (size_t i = 0; i < src->n_files; i++) {
		udfs_source_file *f = &src->files[i];

		udfs_st_free(f->st);
		if (f->map)
			munmap((void *)f->map, (size_t)f->size);
		if (f->fd >= 0)
			close(f->fd);
		free(f->path);
	}
	free(src->files);
	free(src->label);
	free(sp->idx);
	free(sp);
}

const udfs_st_tensor *udfs_source_find(const udfs_source *src, const char *name,
				       const udfs_source_file **file)
{
	const struct src_priv *sp = (const struct src_priv *)src;
	struct src_ent key = {.name = name};
	const struct src_ent *e;

	if (file)
		*file = NULL;
	if (!src || !sp->idx)
		return NULL;
	e = bsearch(&key, sp->idx, src->n_tensors, sizeof(*sp->idx), cmp_ent);
	if (!e)
		return NULL;
	if (file)
		*file = e->file;
	return e->t;
}

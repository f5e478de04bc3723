// SPDX-License-Identifier: MIT
/*
 * add-base: copy (or hard-link) a model's files into STORE/tmp/<id>,
 * fsync them and their directories, and in one catalog transaction move
 * the directory to STORE/bases/<id> and insert the model's rows. A base is
 * stored verbatim: its bytes are what every delta is read against.
 */
#include "write/add.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sha256.h"
#include "common/util.h"
#include "format/source.h"
#include "format/tmap.h"
#include "store/catalog.h"
#include "store/cluster.h"
#include "write/add_i.h"
#include "write/progress.h"

/* Copy source file sf to the new file dst with permission bits mode. */
static int copy_file(const udfs_source_file *sf, const char *dst, unsigned mode)
{
	int fd, err = 0;

	fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return udfs_error(-errno, "%s: %s", dst, strerror(errno));
	for (uint64_t off = 0; off < sf->size && !err; off += 16 << 20) {
		if (udfs_interrupted)
			err = udfs_error(-EINTR, "interrupted");
		else
			err = udfs_write_full(
			    fd, sf->map + off,
			    (size_t)UDFS_MIN(sf->size - off, 16ull << 20));
	}
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (err)
		udfs_error(err, "%s: %s", dst, strerror(-err));
	return err;
}

/* Hard-link the file that sf was read from (its resolved path, so a
 * symlink of a Hugging Face snapshot links the blob, never itself) to
 * dst. 0, or -errno with dst absent. */
static int link_file(const udfs_source_file *sf, const char *dst)
{
	struct stat st;

	if (link(sf->real, dst) < 0)
		return -errno;
	/* The file may have been replaced since it was read and hashed. */
	if (lstat(dst, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_dev == sf->dev && (uint64_t)st.st_ino == sf->ino)
		return 0;
	unlink(dst);
	return -ESTALE;
}

/*
 * Place source file sf at dst: a hard link when link_ok and the link
 * would carry exactly the permission bits mode that a copy gets, else a
 * copy. A hard link shares the source's inode, mode included, and
 * changing that mode would change the user's file: so a file more open
 * than the model's mode (a 0644 file beside a 0600 one, anything group-
 * or world-writable, an executable) is copied, never linked. A link that
 * cannot be made (another filesystem, protected_hardlinks) is a copy too.
 */
static int place_file(const udfs_source_file *sf, const char *dst, bool link_ok,
		      unsigned mode)
{
	if (link_ok && sf->mode == mode && link_file(sf, dst) == 0)
		return 0;
	return copy_file(sf, dst, mode);
}

/* Directories of a base: owner rwx, and group/other r-x where the files
 * are readable by them. */
static mode_t dir_mode(unsigned mode)
{
	return (mode_t)(0700 | (mode & 044) | (mode & 044) >> 2);
}

/* Create the directories above path (a file of the model) under dir;
 * those made for an earlier file are there already (EEXIST). */
static int make_parents(const char *dir, const char *path, unsigned mode)
{
	char *p = udfs_xasprintf("%s/%s", dir, path);
	char *slash = p + strlen(dir) + 1;
	int err = 0;

	while (!err && (slash = strchr(slash, '/'))) {
		*slash = '\0';
		if (mkdir(p, dir_mode(mode)) < 0 && errno != EEXIST)
			err = udfs_error(-errno, "%s: %s", p, strerror(errno));
		*slash++ = '/';
	}
	free(p);
	return err;
}

/* fsync the prefixes of path below tmp that are directories (len: the
 * length of its parent), so that each entry made in them is durable. */
static int sync_parents(const char *tmp, const char *path, size_t len)
{
	int err = 0;

	for (size_t k = 1; k <= len && !err; k++) {
		char *d;

		if (k < len && path[k] != '/')
			continue;
		d = udfs_xasprintf("%s/%.*s", tmp, (int)k, path);
		err = udfs_fsync_dir(d);
		free(d);
	}
	return err;
}

/* fsync every directory of the base at tmp. Files are sorted, so the
 * files of one directory mostly come together: a parent is synced once
 * per run of files in it. */
static int sync_dirs(const char *tmp, const udfs_model *m)
{
	const char *prev = "";
	size_t prev_len = 0;
	int err = 0;

	for (size_t i = 0; i < m->n_files && !err; i++) {
		const char *path = m->files[i].path;
		const char *slash = strrchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : 0;

		if (!len || (len == prev_len && !strncmp(path, prev, len)))
			continue;
		err = sync_parents(tmp, path, len);
		prev = path;
		prev_len = len;
	}
	return err ? err : udfs_fsync_dir(tmp);
}

/* The catalog file f of base file sf: stored verbatim, every tensor read
 * as it is (UDFS_ENC_BASE). */
static int file_from_source(udfs_file *f, const udfs_source_file *sf)
{
	int err = 0;

	f->path = udfs_xstrdup(sf->path);
	f->kind = sf->kind;
	f->size = sf->size;
	if (!sf->st)
		return 0;
	f->data_offset = sf->st->data_offset;
	f->header = udfs_xmalloc(f->data_offset);
	memcpy(f->header, sf->st->raw, f->data_offset);
	f->n_tensors = sf->st->n_tensors;
	f->tensors = udfs_xcalloc(f->n_tensors, sizeof(*f->tensors));
	for (size_t j = 0; j < f->n_tensors && !err; j++) {
		err = udfs_tensor_from_st(&f->tensors[j], &sf->st->tensors[j]);
		f->tensors[j].enc = UDFS_ENC_BASE;
	}
	return err;
}

/* Place every file of src under tmp (copies, or links when link) and fill
 * m's files, with their sha256. */
static int copy_files(const char *tmp, const udfs_source *src, udfs_model *m,
		      bool link, bool quiet)
{
	struct udfs_progress pr;
	int err = 0;

	udfs_progress_init(&pr, quiet, 0);
	for (size_t i = 0; i < src->n_files; i++)
		pr.total += src->files[i].size;
	for (size_t i = 0; i < src->n_files && !err; i++) {
		const udfs_source_file *sf = &src->files[i];
		udfs_file *f = &m->files[i];
		char *dst = udfs_xasprintf("%s/%s", tmp, sf->path);

		udfs_progress_show(&pr, m->name, sf->path, true);
		pr.done += sf->size;
		err = make_parents(tmp, sf->path, src->mode);
		if (!err)
			err = place_file(sf, dst, link, src->mode);
		free(dst);
		if (!err)
			err = file_from_source(f, sf);
		if (!err)
			err = udfs_sha256_hex(sf->map, sf->size, f->sha256);
		m->source_bytes += sf->size;
	}
	udfs_progress_end(&pr);
	return err;
}

/*
 * gc on any node leaves tmp/<id>/ alone while tmp/<id>.lock is locked:
 * directory locks are not shared between the clients of a network
 * filesystem, locks on regular files are.
 */
static int lock_tmp(const char *lock, int *fd)
{
	int err;

	*fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (*fd < 0)
		return udfs_error(-errno, "%s: %s", lock, strerror(errno));
	err = udfs_cluster_tmp_lock(*fd);
	if (err)
		return udfs_error(err, "%s: cannot lock: %s", lock,
				  strerror(-err));
	return 0;
}

int udfs_compress_add_base(udfs_store *s, const char *name,
			   const char *src_path, bool link, bool quiet)
{
	udfs_catalog *cat;
	udfs_source *src = NULL;
	udfs_model m = {0};
	char *id = udfs_random_name();
	char *tmp = udfs_xasprintf("%s/tmp/%s", udfs_store_dir(s), id);
	char *lock = udfs_xasprintf("%s.lock", tmp);
	char *rel = udfs_xasprintf("bases/%s", id);
	char *final = udfs_xasprintf("%s/%s", udfs_store_dir(s), rel);
	bool placed = false, in_tx = false;
	int lock_fd = -1, err;

	err = udfs_name_check_new(s, name);
	if (!err)
		err = udfs_source_open(src_path, &src);
	if (!err)
		err = lock_tmp(lock, &lock_fd);
	if (err)
		goto out;
	if (mkdir(tmp, dir_mode(src->mode)) < 0) {
		err = udfs_error(-errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	m.name = udfs_xstrdup(name);
	m.kind = UDFS_MODEL_BASE;
	m.method = udfs_xstrdup("base");
	m.params = udfs_xstrdup("{}");
	m.created = (int64_t)time(NULL);
	m.n_files = src->n_files;
	m.files = udfs_xcalloc(m.n_files, sizeof(*m.files));
	if (!err)
		err = copy_files(tmp, src, &m, link, quiet);
	if (!err)
		err = sync_dirs(tmp, &m);
	if (!err)
		err = udfs_store_begin(s);
	in_tx = !err;
	cat = udfs_store_catalog(s);
	/* Placed inside the transaction, for the same reason as packs. */
	if (!err && udfs_rename_noreplace(tmp, final) < 0)
		err = udfs_error(-errno, "%s: %s", final, strerror(errno));
	if (err)
		goto out;
	placed = true;
	{
		char *bases = udfs_xasprintf("%s/bases", udfs_store_dir(s));

		err = udfs_fsync_dir(bases);
		free(bases);
	}
	m.stored_bytes = m.source_bytes;
	if (!err)
		err = udfs_catalog_insert_model(cat, &m, rel);
	for (size_t i = 0; i < m.n_files && !err; i++)
		err = udfs_catalog_insert_file(cat, m.id, &m.files[i]);
	if (!err)
		err = udfs_store_commit(s);
	in_tx = false;
out:
	if (in_tx)
		udfs_store_rollback(s);
	if (err)
		udfs_rm_tree(placed ? final : tmp);
	if (lock_fd >= 0) {
		unlink(lock);
		close(lock_fd);
	}
	free(lock);
	udfs_files_free(m.files, m.n_files);
	free(m.name);
	free(m.method);
	free(m.params);
	udfs_source_close(src);
	free(final);
	free(rel);
	free(tmp);
	free(id);
	return err;
}

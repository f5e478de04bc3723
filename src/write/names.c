// SPDX-License-Identifier: MIT
/* The names a model may take (add.h: udfs_name_check). */
#include "write/add.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "store/catalog.h"

int udfs_name_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 200)
		return udfs_error(
		    -EINVAL,
		    "model name \"%.40s\" must have 1 to 200 characters", name);
	if (name[0] == '.' || name[0] == '-')
		return udfs_error(-EINVAL,
				  "model name \"%s\" must not start with '%c'",
				  name, name[0]);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c > 0x7e || c == '/' || c == '\\')
			return udfs_error(
			    -EINVAL,
			    "model name \"%.40s\" has a character that is not allowed (%s)",
			    c >= 0x20 && c <= 0x7e ? name : "?",
			    c == '/' || c == '\\' ? "a slash"
						  : "not printable ASCII");
	}
	return 0;
}

int udfs_name_check_new(udfs_store *s, const char *name)
{
	int64_t id;
	int err = udfs_name_check(name);

	if (err)
		return err;
	err = udfs_catalog_model_id(udfs_store_catalog(s), name, &id);
	if (err == 0)
		return udfs_error(-EEXIST,
				  "a model named \"%s\" already exists", name);
	return err == -ENOENT ? 0 : err;
}

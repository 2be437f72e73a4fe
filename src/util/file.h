/* SPDX-License-Identifier: Apache-2.0 */
/* file.h: whole files read, and JSON files parsed (a leaf). */
#ifndef FORGE_FILE_H
#define FORGE_FILE_H

#include <cJSON.h>
#include <stddef.h>

#include "forge.h"

/* The file's bytes, NUL-terminated (malloc'd): FORGE_ERR_IO naming it when
 * it cannot be read; fn names the public call in messages. */
forge_status forge_read_file(const char *fn, const char *path, char **out, size_t *len);

/* dir/name parsed, or NULL where the file is absent; a file there that is
 * not a JSON object is FORGE_ERR_FORMAT, naming it. */
forge_status forge_read_json(const char *fn, const char *dir, const char *name, cJSON **out);

#endif

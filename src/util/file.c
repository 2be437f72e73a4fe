/* SPDX-License-Identifier: Apache-2.0 */
/* file.c: whole files read, and JSON files parsed (a leaf). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file.h"

forge_status forge_read_file(const char *fn, const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    forge_status st = f ? FORGE_OK : forge_fail(FORGE_ERR_IO, "%s: cannot open %s", fn, path);
    long size = -1;
    if (st == FORGE_OK && (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0))
        st = forge_fail(FORGE_ERR_IO, "%s: cannot read %s (not a regular file?)", fn, path);
    char *buf = st == FORGE_OK ? malloc((size_t)size + 1) : NULL;
    if (st == FORGE_OK && !buf) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld bytes", fn, size);
    if (st == FORGE_OK && fread(buf, 1, (size_t)size, f) != (size_t)size)
        st = forge_fail(FORGE_ERR_IO, "%s: cannot read %s", fn, path);
    if (f) fclose(f);
    if (st != FORGE_OK) {
        free(buf);
        return st;
    }
    buf[size] = '\0';
    *out = buf, *len = (size_t)size;
    return FORGE_OK;
}

forge_status forge_read_json(const char *fn, const char *dir, const char *name, cJSON **out) {
    *out = NULL;
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n), *text = NULL;
    size_t len;
    if (!path) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    snprintf(path, n, "%s/%s", dir, name);
    FILE *probe = fopen(path, "rb");
    forge_status st = FORGE_OK;
    if (probe) {
        fclose(probe);
        st = forge_read_file(fn, path, &text, &len);
        if (st == FORGE_OK && !cJSON_IsObject(*out = cJSON_ParseWithLength(text, len))) {
            cJSON_Delete(*out), *out = NULL;
            st = forge_fail(FORGE_ERR_FORMAT, "%s: %s is not a JSON object", fn, path);
        }
    }
    free(text);
    free(path);
    return st;
}


/* SPDX-License-Identifier: Apache-2.0 */
/* model_files.c: a model directory's weights: model.safetensors, or the
 * shards that model.safetensors.index.json's weight_map names, each opened
 * (mapped) once; a tensor found by name, its shape checked, and given as
 * it lies in the mapped file where it is already in the dtype asked for,
 * else converted. A model without files draws its tensors instead:
 * norms' weights 1, the rest uniform with transformers' initial standard
 * deviation of 0.02, each tensor from the seed and its name (a block of a
 * million drawn and repeated). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "file.h"
#include "model.h"

void model_files_close(model_files *f) {
    for (int i = 0; i < f->n_files; i++) {
        forge_st_close(f->files[i]);
        free(f->names[i]);
    }
    free(f->files);
    free(f->names);
    cJSON_Delete(f->weight_map);
    memset(f, 0, sizeof *f);
}

/* Opens dir/name as file i of f. */
static forge_status open_file(const char *fn, const char *dir, const char *name, model_files *f) {
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    forge_safetensors **files = realloc(f->files, sizeof *files * (size_t)(f->n_files + 1));
    if (files) f->files = files;
    char **names = realloc(f->names, sizeof *names * (size_t)(f->n_files + 1));
    if (names) f->names = names;
    char *copy = strdup(name);
    if (!path || !files || !names || !copy) {
        free(path), free(copy);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    snprintf(path, n, "%s/%s", dir, name);
    forge_safetensors *st;
    forge_status s = forge_st_open(path, &st);
    free(path);
    if (s != FORGE_OK) {
        free(copy);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", forge_last_error());
        return forge_fail(s, "%s: %s", fn, msg);
    }
    f->files[f->n_files] = st;
    f->names[f->n_files++] = copy;
    return FORGE_OK;
}

forge_status model_files_open(const char *fn, const char *dir, model_files *f) {
    memset(f, 0, sizeof *f);
    cJSON *index;
    forge_status st = forge_read_json(fn, dir, "model.safetensors.index.json", &index);
    if (st != FORGE_OK) return st;
    if (!index) return open_file(fn, dir, "model.safetensors", f);
    cJSON *map = cJSON_DetachItemFromObjectCaseSensitive(index, "weight_map");
    cJSON_Delete(index);
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(map);
        return forge_fail(FORGE_ERR_FORMAT, "%s: model.safetensors.index.json has no weight_map object", fn);
    }
    f->weight_map = map;
    /* each shard once, in the order the map first names it */
    const cJSON *entry;
    cJSON_ArrayForEach(entry, map) {
        if (!cJSON_IsString(entry) || strchr(entry->valuestring, '/')) {
            st = forge_fail(FORGE_ERR_FORMAT, "%s: the weight_map's entry for %s is not a file name beside it", fn,
                            entry->string);
            break;
        }
        int seen = 0;
        for (int i = 0; i < f->n_files && !seen; i++) seen = strcmp(f->names[i], entry->valuestring) == 0;
        if (!seen && (st = open_file(fn, dir, entry->valuestring, f)) != FORGE_OK) break;
    }
    if (st != FORGE_OK) model_files_close(f);
    return st;
}

/* The block of tensor `name`'s random elements, n of them (at most
 * DRAW_BLOCK), in dtype into dst. A tensor repeats its block (draw_part),
 * so that a model of billions of weights is made in about the time of
 * copying them (a benchmark's weights need only be finite and of the right
 * scale). */
#define DRAW_BLOCK ((size_t)1 << 20)
static void draw(uint64_t seed, const char *name, forge_dtype dtype, void *dst, size_t n) {
    uint64_t s = seed ^ 0x9e3779b97f4a7c15ull;
    for (const char *c = name; *c; c++) s = (s ^ (unsigned char)*c) * 0x100000001b3ull; /* FNV-1a */
    const size_t len = strlen(name);
    const int is_norm = len >= 11 && strcmp(name + len - 11, "norm.weight") == 0;
    const float half_width = 0.02f * 1.7320508f; /* uniform [-a, a] has std a / sqrt(3) */
    float chunk[4096];
    const size_t es = forge_dtype_size(dtype);
    for (size_t at = 0; at < n; at += 4096) {
        const size_t k = n - at < 4096 ? n - at : 4096;
        for (size_t i = 0; i < k; i++) {
            s = s ? s : 1;
            s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
            chunk[i] = is_norm ? 1.0f : half_width * ((float)(s >> 40) * (2.0f / 16777216.0f) - 1.0f);
        }
        forge_convert((char *)dst + at * es, dtype, chunk, FORGE_F32, k);
    }
}

/* The tensor of that name in the files, checked to be [d0] or [d0, d1]. */
static forge_status find(const model_files *f, const char *fn, const char *name, int64_t d0, int64_t d1,
                         forge_tensor *t) {
    const forge_safetensors *st = f->n_files == 1 && !f->weight_map ? f->files[0] : NULL;
    if (f->weight_map) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(f->weight_map, name);
        for (int i = 0; cJSON_IsString(file) && i < f->n_files && !st; i++)
            if (strcmp(f->names[i], file->valuestring) == 0) st = f->files[i];
    }
    if (!st || forge_st_find(st, name, t) != FORGE_OK)
        return forge_fail(FORGE_ERR_NOT_FOUND, "%s: the model has no tensor %s%s", fn, name,
                          f->weight_map && st ? " in the shard its index names" : "");
    const int ndim = d1 ? 2 : 1;
    if (t->ndim != ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[64] = "", want[48];
        for (int i = 0, n = 0; i < t->ndim && n < (int)sizeof got; i++)
            n += snprintf(got + n, sizeof got - (size_t)n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
        snprintf(want, sizeof want, d1 ? "%lld, %lld" : "%lld", (long long)d0, (long long)d1);
        return forge_fail(FORGE_ERR_SHAPE, "%s: tensor %s is [%s], the config makes it [%s]", fn, name, got, want);
    }
    return FORGE_OK;
}

/* The whole tensor from the files, in dtype: where it lies in the mapped
 * file when it is in dtype there, else converted into *owned. */
static forge_status file_tensor(const model_files *f, const char *fn, const char *name, int64_t d0, int64_t d1,
                                forge_dtype dtype, const void **data, void **owned) {
    const size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1), es = forge_dtype_size(dtype);
    forge_tensor t = {0};
    *owned = NULL;
    forge_status st = find(f, fn, name, d0, d1, &t);
    if (st != FORGE_OK) return st;
    if (t.dtype == dtype && (uintptr_t)t.data % es == 0) { /* as it is in the mapped file */
        *data = t.data;
        return FORGE_OK;
    }
    if (!(*owned = malloc(n * es))) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    forge_convert(*owned, dtype, t.data, t.dtype, n);
    *data = *owned;
    return FORGE_OK;
}

/* The part of a random tensor [n elements, cols a row]: element i is its
 * block's element i % block (draw), so that only the block and the part
 * are made, and every rank's part is cut from the same tensor. */
static forge_status draw_part(const model_files *f, const char *fn, const char *name, size_t n, size_t cols,
                              int64_t r0, int64_t nr, int64_t c0, int64_t nc, forge_dtype dtype, void **part) {
    const size_t es = forge_dtype_size(dtype), block = n < DRAW_BLOCK ? n : DRAW_BLOCK;
    char *b = malloc(block * es), *p = malloc((size_t)nr * (size_t)nc * es);
    if (!b || !p) {
        free(b), free(p);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    draw(f->seed, name, dtype, b, block);
    char *dst = p;
    for (int64_t r = 0; r < nr; r++)
        for (size_t i = (size_t)(r0 + r) * cols + (size_t)c0, left = (size_t)nc; left > 0;) {
            const size_t at = i % block, run = block - at < left ? block - at : left;
            memcpy(dst, b + at * es, run * es);
            dst += run * es, i += run, left -= run;
        }
    free(b);
    *part = p;
    return FORGE_OK;
}

forge_status model_tensor_part(const model_files *f, const char *fn, const char *name, int64_t d0, int64_t d1,
                               int64_t r0, int64_t nr, int64_t c0, int64_t nc, forge_dtype dtype, const void **data,
                               void **owned) {
    const void *whole = NULL;
    void *whole_owned = NULL;
    *owned = NULL;
    if (f->random) {
        if (!d1) c0 = 0, nc = 1; /* [d0]: rows of one element */
        forge_status st = draw_part(f, fn, name, (size_t)d0 * (size_t)(d1 ? d1 : 1), (size_t)(d1 ? d1 : 1), r0, nr,
                                    c0, nc, dtype, owned);
        *data = *owned;
        return st;
    }
    forge_status st = file_tensor(f, fn, name, d0, d1, dtype, &whole, &whole_owned);
    if (st != FORGE_OK) return st;
    const size_t es = forge_dtype_size(dtype), cols = (size_t)(d1 ? d1 : 1);
    if (!d1 || (c0 == 0 && nc == d1)) { /* whole rows: a pointer into the tensor */
        *data = (const char *)whole + (size_t)r0 * cols * es;
        *owned = whole_owned;
        return FORGE_OK;
    }
    char *part = malloc((size_t)nr * (size_t)nc * es);
    for (int64_t r = 0; part && r < nr; r++)
        memcpy(part + (size_t)r * (size_t)nc * es, (const char *)whole + ((size_t)(r0 + r) * cols + (size_t)c0) * es,
               (size_t)nc * es);
    free(whole_owned);
    if (!part) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    *data = *owned = part;
    return FORGE_OK;
}

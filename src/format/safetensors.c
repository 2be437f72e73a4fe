/* SPDX-License-Identifier: Apache-2.0 */
/* safetensors.c: reading and writing .safetensors files.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value"}}
 * then the data section; offsets are relative to its start. Every check that
 * the reference implementation makes is made here: the header fits the file,
 * it is UTF-8 JSON, sizes match dtype x shape, and the tensors tile the data
 * section exactly. The reader and the writer take the same names and
 * values: any UTF-8 string without NUL (Forge's names are C strings), the
 * empty one included; numbers are sizes, non-negative integers up to 2^53
 * (exact in the doubles cJSON holds). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "st_text.h"

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

/* A hash index of names (tensor names, metadata keys), so that a header of
 * n names is read in O(n), not O(n^2): slot[h] holds an item's index, -1
 * where empty; key(items, i) is item i's name. */
typedef struct {
    int *slot;
    size_t mask;
    const void *items;
    const char *(*key)(const void *items, int i);
} st_index;

typedef struct {
    char *name;
    forge_dtype dtype;
    int ndim;
    int64_t shape[FORGE_ST_MAX_DIMS];
    size_t begin, end; /* within the data section */
} st_entry;

struct forge_safetensors {
    unsigned char *bytes; /* the whole file: mapped (forge_st_open) or a copy */
    size_t len;
    int mapped;
    const unsigned char *data; /* its data section */
    int n;
    st_entry *entries; /* [n], file order */
    st_index by_name;  /* of entries */
    int n_meta;
    char **meta; /* [2 * n_meta]: key, value, ... */
};

/* ------------------------------------------------------------- the index */

static uint64_t hash_name(const char *s) { /* FNV-1a */
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Room for n names at most half full; 0, or -1 out of memory. */
static int index_init(st_index *x, int n, const void *items, const char *(*key)(const void *, int)) {
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    x->slot = malloc(cap * sizeof *x->slot);
    if (!x->slot) return -1;
    memset(x->slot, 0xff, cap * sizeof *x->slot); /* all -1 */
    x->mask = cap - 1, x->items = items, x->key = key;
    return 0;
}

/* The slot of name: the one holding it, or the empty one where it would go. */
static size_t index_slot(const st_index *x, const char *name) {
    size_t h = (size_t)hash_name(name) & x->mask;
    while (x->slot[h] >= 0 && strcmp(x->key(x->items, x->slot[h]), name) != 0) h = (h + 1) & x->mask;
    return h;
}

/* Adds item i; the index of an item of the same name already there, or -1. */
static int index_add(st_index *x, int i) {
    const size_t h = index_slot(x, x->key(x->items, i));
    if (x->slot[h] >= 0) return x->slot[h];
    x->slot[h] = i;
    return -1;
}

static const char *entry_name(const void *items, int i) { return ((const st_entry *)items)[i].name; }
static const char *meta_key(const void *items, int i) { return ((char *const *)items)[2 * i]; }
static const char *tensor_name(const void *items, int i) { return ((const forge_tensor *)items)[i].name; }

static const struct { const char *name; forge_dtype dtype; } st_dtypes[] = {
    {"F32", FORGE_F32}, {"F16", FORGE_F16}, {"BF16", FORGE_BF16},
};

static const char *st_dtype_name(forge_dtype dtype) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == dtype) return st_dtypes[i].name;
    return NULL;
}


void forge_st_close(forge_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->entries[i].name);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->entries);
    free(st->by_name.slot);
    free(st->meta);
    if (st->mapped) munmap(st->bytes, st->len);
    else free(st->bytes);
    free(st);
}

/* A JSON number as a size: st_check_header_text has let through no number
 * but an integer in 0 .. ST_MAX_SIZE. */
static int json_size(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    *out = (uint64_t)item->valuedouble;
    return 1;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static forge_status parse_metadata(forge_safetensors *st, const cJSON *obj) {
    if (!cJSON_IsObject(obj))
        return forge_fail(FORGE_ERR_FORMAT, "safetensors: __metadata__ is not an object");
    int n = cJSON_GetArraySize(obj);
    st_index keys;
    st->meta = calloc((size_t)(2 * n) + 1, sizeof *st->meta);
    if (!st->meta || index_init(&keys, n, st->meta, meta_key) != 0)
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    forge_status status = FORGE_OK;
    for (const cJSON *it = obj->child; it && status == FORGE_OK; it = it->next) {
        if (!cJSON_IsString(it)) {
            status = forge_fail(FORGE_ERR_FORMAT, "safetensors: __metadata__ value of \"%s\" is not a string",
                                it->string);
            break;
        }
        char **pair = st->meta + 2 * st->n_meta;
        pair[0] = dup_str(it->string);
        pair[1] = dup_str(it->valuestring);
        st->n_meta++; /* counted now so that close frees what was copied */
        if (!pair[0] || !pair[1]) status = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
        else if (index_add(&keys, st->n_meta - 1) >= 0)
            status = forge_fail(FORGE_ERR_FORMAT, "safetensors: __metadata__ has key \"%s\" twice", it->string);
    }
    free(keys.slot);
    return status;
}

static forge_status parse_entry(st_entry *e, const cJSON *obj, size_t data_len) {
    const char *name = obj->string;
    if (!cJSON_IsObject(obj))
        return forge_fail(FORGE_ERR_FORMAT, "safetensors: tensor \"%s\" is not an object", name);
    static const char *const members[] = {"dtype", "shape", "data_offsets"};
    for (size_t m = 0; m < sizeof members / sizeof members[0]; m++) {
        int count = 0;
        for (const cJSON *it = obj->child; it; it = it->next) count += strcmp(it->string, members[m]) == 0;
        if (count > 1)
            return forge_fail(FORGE_ERR_FORMAT, "safetensors: tensor \"%s\" has %d \"%s\" members", name, count,
                              members[m]);
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return forge_fail(FORGE_ERR_FORMAT,
                          "safetensors: tensor \"%s\" lacks a dtype string, a shape array or a "
                          "data_offsets array", name);
    int found = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(dtype->valuestring, st_dtypes[i].name) == 0) {
            e->dtype = st_dtypes[i].dtype;
            found = 1;
        }
    if (!found)
        return forge_fail(FORGE_ERR_DTYPE,
                          "safetensors: tensor \"%s\" has dtype \"%s\"; Forge reads F32, F16 and BF16",
                          name, dtype->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > FORGE_ST_MAX_DIMS)
        return forge_fail(FORGE_ERR_FORMAT, "safetensors: tensor \"%s\" has %d dimensions, over %d",
                          name, ndim, FORGE_ST_MAX_DIMS);
    e->ndim = ndim;
    uint64_t bytes = forge_dtype_size(e->dtype);
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t n;
        if (!json_size(d, &n))
            return forge_fail(FORGE_ERR_FORMAT,
                              "safetensors: tensor \"%s\" dimension %d is not a non-negative integer",
                              name, i);
        if (n != 0 && bytes > UINT64_MAX / n)
            return forge_fail(FORGE_ERR_FORMAT, "safetensors: tensor \"%s\" size overflows", name);
        bytes *= n;
        e->shape[i] = (int64_t)n;
    }
    uint64_t begin, end;
    if (cJSON_GetArraySize(offs) != 2 || !json_size(offs->child, &begin) ||
        !json_size(offs->child->next, &end))
        return forge_fail(FORGE_ERR_FORMAT,
                          "safetensors: tensor \"%s\" data_offsets is not two non-negative integers",
                          name);
    if (begin > end || end > data_len)
        return forge_fail(FORGE_ERR_FORMAT,
                          "safetensors: tensor \"%s\" data_offsets [%llu, %llu] fall outside the "
                          "%zu-byte data section", name, (unsigned long long)begin,
                          (unsigned long long)end, data_len);
    if (end - begin != bytes)
        return forge_fail(FORGE_ERR_FORMAT,
                          "safetensors: tensor \"%s\" holds %llu bytes but dtype and shape need %llu",
                          name, (unsigned long long)(end - begin), (unsigned long long)bytes);
    e->begin = (size_t)begin;
    e->end = (size_t)end;
    e->name = dup_str(name);
    if (!e->name) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    return FORGE_OK;
}

static int by_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* The tensors must cover [0, data_len) with neither overlap nor gap. */
static forge_status check_tiling(const forge_safetensors *st, size_t data_len) {
    const st_entry **order = malloc((size_t)(st->n ? st->n : 1) * sizeof *order);
    if (!order) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    for (int i = 0; i < st->n; i++) order[i] = &st->entries[i];
    qsort(order, (size_t)st->n, sizeof *order, by_begin);
    size_t at = 0;
    forge_status status = FORGE_OK;
    for (int i = 0; i < st->n && status == FORGE_OK; i++) {
        if (order[i]->begin < at)
            status = forge_fail(FORGE_ERR_FORMAT,
                                "safetensors: tensor \"%s\" at [%zu, %zu] overlaps the tensor before it",
                                order[i]->name, order[i]->begin, order[i]->end);
        else if (order[i]->begin > at)
            status = forge_fail(FORGE_ERR_FORMAT,
                                "safetensors: bytes [%zu, %zu) of the data section belong to no tensor",
                                at, order[i]->begin);
        at = order[i]->end;
    }
    free(order);
    if (status == FORGE_OK && at != data_len)
        status = forge_fail(FORGE_ERR_FORMAT,
                            "safetensors: tensors end at byte %zu of a %zu-byte data section", at,
                            data_len);
    return status;
}

static forge_status parse_header(forge_safetensors *st, const char *json, size_t n,
                                 size_t data_len) {
    if (n == 0 || json[0] != '{')
        return forge_fail(FORGE_ERR_FORMAT, "safetensors: the header does not start with '{'");
    forge_status text = st_check_header_text(json, n);
    if (text != FORGE_OK) return text;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
    if (!root) return forge_fail(FORGE_ERR_FORMAT, "safetensors: the header is not valid JSON");
    forge_status status = FORGE_OK;
    for (const char *p = end; p < json + n && status == FORGE_OK; p++)
        if (*p != ' ')
            status = forge_fail(FORGE_ERR_FORMAT, "safetensors: bytes after the header's JSON");
    if (status == FORGE_OK && !cJSON_IsObject(root))
        status = forge_fail(FORGE_ERR_FORMAT, "safetensors: the header is not a JSON object");
    if (status == FORGE_OK) {
        const int members = cJSON_GetArraySize(root);
        st->entries = calloc((size_t)members + 1, sizeof *st->entries);
        if (!st->entries || index_init(&st->by_name, members, st->entries, entry_name) != 0)
            status = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    }
    int seen_meta = 0;
    for (const cJSON *it = root->child; it && status == FORGE_OK; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            status = seen_meta++ ? forge_fail(FORGE_ERR_FORMAT, "safetensors: two __metadata__ entries")
                                 : parse_metadata(st, it);
            continue;
        }
        if ((status = parse_entry(&st->entries[st->n], it, data_len)) != FORGE_OK) break;
        st->n++; /* counted now so that close frees its name */
        if (index_add(&st->by_name, st->n - 1) >= 0)
            status = forge_fail(FORGE_ERR_FORMAT, "safetensors: tensor \"%s\" appears twice", it->string);
    }
    cJSON_Delete(root);
    if (status == FORGE_OK) status = check_tiling(st, data_len);
    return status;
}

/* Takes ownership of bytes[len] (mapped, or malloc'd), whatever the outcome. */
static forge_status parse_owned(unsigned char *bytes, size_t len, int mapped, forge_safetensors **out) {
    forge_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        if (mapped) munmap(bytes, len);
        else free(bytes);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    }
    st->bytes = bytes;
    st->len = len;
    st->mapped = mapped;
    forge_status status = FORGE_OK;
    uint64_t n = 0;
    if (len < 8)
        status = forge_fail(FORGE_ERR_FORMAT, "safetensors: %zu bytes is too short for a header length", len);
    else {
        for (int i = 7; i >= 0; i--) n = n << 8 | bytes[i];
        if (n > len - 8)
            status = forge_fail(FORGE_ERR_FORMAT,
                                "safetensors: header length %llu exceeds the %zu bytes after it",
                                (unsigned long long)n, len - 8);
        else if (n > ST_MAX_HEADER)
            status = forge_fail(FORGE_ERR_FORMAT, "safetensors: header length %llu is over %u",
                                (unsigned long long)n, ST_MAX_HEADER);
    }
    if (status == FORGE_OK) {
        st->data = bytes + 8 + n;
        status = parse_header(st, (const char *)bytes + 8, (size_t)n, len - 8 - (size_t)n);
    }
    if (status != FORGE_OK) {
        forge_st_close(st);
        return status;
    }
    *out = st;
    return FORGE_OK;
}

forge_status forge_st_parse(const void *bytes, size_t len, forge_safetensors **out) {
    FORGE_CHECK_NOT_NULL(out, "forge_st_parse");
    if (len) FORGE_CHECK_NOT_NULL(bytes, "forge_st_parse");
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_st_parse: out of memory");
    if (len) memcpy(copy, bytes, len);
    return parse_owned(copy, len, 0, out);
}

forge_status forge_st_open(const char *path, forge_safetensors **out) {
    FORGE_CHECK_NOT_NULL(path, "forge_st_open");
    FORGE_CHECK_NOT_NULL(out, "forge_st_open");
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return forge_fail(FORGE_ERR_IO, "%s: cannot open for reading (%s)", path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        close(fd);
        return forge_fail(FORGE_ERR_IO, "%s: not a regular file", path);
    }
    /* mapped read-only, not read: a model's weights are pages of the page
     * cache until something touches them, and its files may be larger than
     * memory would hold twice */
    const size_t size = (size_t)info.st_size;
    unsigned char *bytes = size > 0 ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (size == 0) return forge_fail(FORGE_ERR_FORMAT, "%s: the file is empty", path);
    if (bytes == MAP_FAILED) return forge_fail(FORGE_ERR_IO, "%s: cannot map the file (%s)", path, strerror(errno));
    forge_status status = parse_owned(bytes, size, 1, out);
    if (status != FORGE_OK) {
        /* name the file in the message */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", forge_last_error());
        forge_fail(status, "%s: %s", path, msg);
    }
    return status;
}

int forge_st_count(const forge_safetensors *st) { return st ? st->n : 0; }

forge_status forge_st_tensor(const forge_safetensors *st, int i, forge_tensor *out) {
    FORGE_CHECK_NOT_NULL(st, "forge_st_tensor");
    FORGE_CHECK_NOT_NULL(out, "forge_st_tensor");
    if (i < 0 || i >= st->n)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_st_tensor: index %d is outside [0, %d)",
                          i, st->n);
    const st_entry *e = &st->entries[i];
    forge_tensor t = {.name = e->name, .dtype = e->dtype, .ndim = e->ndim,
                      .data = st->data + e->begin, .nbytes = e->end - e->begin};
    memcpy(t.shape, e->shape, sizeof t.shape);
    *out = t;
    return FORGE_OK;
}

forge_status forge_st_find(const forge_safetensors *st, const char *name, forge_tensor *out) {
    FORGE_CHECK_NOT_NULL(st, "forge_st_find");
    FORGE_CHECK_NOT_NULL(name, "forge_st_find");
    const int i = st->by_name.slot[index_slot(&st->by_name, name)];
    if (i >= 0) return forge_st_tensor(st, i, out);
    return forge_fail(FORGE_ERR_NOT_FOUND, "safetensors: no tensor named \"%s\"", name);
}

int forge_st_metadata_count(const forge_safetensors *st) { return st ? st->n_meta : 0; }

forge_status forge_st_metadata(const forge_safetensors *st, int i, const char **key,
                               const char **value) {
    FORGE_CHECK_NOT_NULL(st, "forge_st_metadata");
    if (i < 0 || i >= st->n_meta)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_st_metadata: index %d is outside [0, %d)",
                          i, st->n_meta);
    if (key) *key = st->meta[2 * i];
    if (value) *value = st->meta[2 * i + 1];
    return FORGE_OK;
}

/* ------------------------------------------------------------------ write */

/* The tensors and metadata the reader would take back: names and values
 * UTF-8 (any, "" too, but "__metadata__" for a tensor), names and keys
 * unique, sizes matching, dimensions up to 2^53. */
static forge_status check_tensors(const forge_tensor *tensors, int n, const char *const *meta, int n_meta) {
    static const char fn[] = "forge_st_write";
    for (int i = 0; i < 2 * n_meta; i++) {
        if (!meta[i]) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: meta[%d] is NULL", fn, i);
        if (!st_utf8_valid(meta[i])) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: meta[%d] is not UTF-8", fn, i);
    }
    for (int i = 0; i < n; i++) {
        const forge_tensor *t = &tensors[i];
        if (!t->name) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: tensors[%d].name is NULL", fn, i);
        if (strcmp(t->name, "__metadata__") == 0 || !st_utf8_valid(t->name))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: tensors[%d].name is %s", fn, i,
                              st_utf8_valid(t->name) ? "\"__metadata__\", the header's metadata key" : "not UTF-8");
        if (!st_dtype_name(t->dtype))
            return forge_fail(FORGE_ERR_DTYPE, "%s: tensor \"%s\" has unknown dtype %d", fn,
                              t->name, (int)t->dtype);
        if (t->ndim < 0 || t->ndim > FORGE_ST_MAX_DIMS)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" has ndim %d", fn,
                              t->name, t->ndim);
        double numel = 1;
        size_t bytes = forge_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (uint64_t)t->shape[d] > ST_MAX_SIZE)
                return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" dimension %d is outside 0 .. 2^53",
                                  fn, t->name, d);
            numel *= (double)t->shape[d];
            bytes *= (size_t)t->shape[d];
        }
        if (numel * (double)forge_dtype_size(t->dtype) > (double)ST_MAX_SIZE || bytes != t->nbytes)
            return forge_fail(FORGE_ERR_SHAPE, "%s: tensor \"%s\" has %zu bytes, its shape needs %.0f",
                              fn, t->name, t->nbytes, numel * (double)forge_dtype_size(t->dtype));
        if (t->nbytes && !t->data)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" data is NULL", fn, t->name);
    }
    st_index names, keys;
    if (index_init(&names, n, tensors, tensor_name) != 0) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (index_init(&keys, n_meta, meta, meta_key) != 0) {
        free(names.slot);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    forge_status status = FORGE_OK;
    for (int i = 0; i < n && status == FORGE_OK; i++)
        if (index_add(&names, i) >= 0)
            status = forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: two tensors named \"%s\"", fn, tensors[i].name);
    for (int i = 0; i < n_meta && status == FORGE_OK; i++)
        if (index_add(&keys, i) >= 0)
            status = forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: two metadata keys \"%s\"", fn, meta[2 * i]);
    free(names.slot);
    free(keys.slot);
    return status;
}

/* A size as a JSON number, written as an integer (cJSON would print 10^15
 * as 1e+15, which the reader refuses). */
static cJSON *size_number(uint64_t v) {
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(text);
}

/* The header JSON, padded with spaces so that the data starts 8-byte aligned. */
static char *build_header(const forge_tensor *tensors, int n, const char *const *meta, int n_meta,
                          size_t *len) {
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; ok && i < n_meta; i++)
            ok = m && cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]) != NULL;
    }
    size_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const forge_tensor *t = &tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = e && shape && offs && cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype));
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, size_number((uint64_t)t->shape[d]));
        ok = ok && cJSON_AddItemToArray(offs, size_number(offset));
        offset += t->nbytes;
        ok = ok && cJSON_AddItemToArray(offs, size_number(offset));
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t n_json = strlen(json), padded = (n_json + 7) / 8 * 8;
    char *out = realloc(json, padded + 1);
    if (!out) {
        free(json);
        return NULL;
    }
    memset(out + n_json, ' ', padded - n_json);
    out[padded] = '\0';
    *len = padded;
    return out;
}

forge_status forge_st_write(const char *path, const forge_tensor *tensors, int n,
                            const char *const *meta, int n_meta) {
    static const char fn[] = "forge_st_write";
    FORGE_CHECK_NOT_NULL(path, fn);
    if (n < 0 || n_meta < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n = %d, n_meta = %d", fn, n, n_meta);
    if (n) FORGE_CHECK_NOT_NULL(tensors, fn);
    if (n_meta) FORGE_CHECK_NOT_NULL(meta, fn);
    forge_status status = check_tensors(tensors, n, meta, n_meta);
    if (status != FORGE_OK) return status;
    size_t header_len;
    char *header = build_header(tensors, n, meta, n_meta, &header_len);
    if (!header) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for the header", fn);
    /* written beside the target under a name of its own (never a file that
     * is there already) and renamed, so that a failure leaves the target as
     * it was */
    static _Atomic unsigned serial;
    const size_t tmp_size = strlen(path) + 48;
    char *tmp = malloc(tmp_size);
    int fd = -1;
    for (int tries = 0; tmp && fd < 0 && tries < 100; tries++) {
        snprintf(tmp, tmp_size, "%s.tmp-%ld-%u", path, (long)getpid(), serial++);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        if (fd >= 0) close(fd), remove(tmp);
        free(header);
        free(tmp);
        return forge_fail(FORGE_ERR_IO, "%s: cannot create a file beside %s (%s)", fn, path, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, header_len, f) == header_len;
    for (int i = 0; ok && i < n; i++) /* an empty tensor may have NULL data */
        ok = tensors[i].nbytes == 0 || fwrite(tensors[i].data, 1, tensors[i].nbytes, f) == tensors[i].nbytes;
    ok = (fclose(f) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    free(tmp);
    free(header);
    return ok ? FORGE_OK : forge_fail(FORGE_ERR_IO, "%s: writing %s failed", fn, path);
}

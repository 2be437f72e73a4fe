/* SPDX-License-Identifier: Apache-2.0 */
/* tok_vocab.c: the tokenizer's two maps, open addressing with linear
 * probing at most half full: token text -> id (FNV-1a over the bytes) and
 * (left id, right id) -> the merge's rank and result. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

uint64_t tok_hash_bytes(const char *s, int len) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    return key ^ (key >> 33);
}

/* The smallest power of two at least twice n. */
static size_t table_size(size_t n) {
    size_t size = 16;
    while (size < 2 * n) size *= 2;
    return size;
}

int tok_vocab_init(tok_vocab *v, int n) {
    memset(v, 0, sizeof *v);
    const size_t size = table_size((size_t)n);
    v->piece = calloc((size_t)n, sizeof *v->piece);
    v->len = calloc((size_t)n, sizeof *v->len);
    v->slot = malloc(sizeof *v->slot * size);
    if (!v->piece || !v->len || !v->slot) return 0;
    memset(v->slot, 0xff, sizeof *v->slot * size);
    v->n = n;
    v->mask = size - 1;
    return 1;
}

void tok_vocab_free(tok_vocab *v) {
    for (int i = 0; v->piece && i < v->n; i++) free(v->piece[i]);
    free(v->piece);
    free(v->len);
    free(v->slot);
    memset(v, 0, sizeof *v);
}

int tok_vocab_find(const tok_vocab *v, const char *piece, int len) {
    for (size_t i = tok_hash_bytes(piece, len) & v->mask;; i = (i + 1) & v->mask) {
        const int id = v->slot[i];
        if (id < 0) return -1;
        if (v->len[id] == len && memcmp(v->piece[id], piece, (size_t)len) == 0) return id;
    }
}

int tok_vocab_put(tok_vocab *v, int id, const char *piece, int len) {
    char *copy = malloc((size_t)len + 1);
    if (!copy) return 0;
    memcpy(copy, piece, (size_t)len);
    copy[len] = '\0';
    free(v->piece[id]);
    v->piece[id] = copy;
    v->len[id] = len;
    size_t i = tok_hash_bytes(piece, len) & v->mask;
    while (v->slot[i] >= 0 && v->slot[i] != id) i = (i + 1) & v->mask;
    v->slot[i] = id;
    return 1;
}

int tok_merges_init(tok_merges *m, int n) {
    const size_t size = table_size((size_t)n);
    m->slot = malloc(sizeof *m->slot * size);
    if (!m->slot) return 0;
    for (size_t i = 0; i < size; i++) m->slot[i] = (tok_merge){0, -1, -1};
    m->mask = size - 1;
    return 1;
}

void tok_merges_free(tok_merges *m) {
    free(m->slot);
    m->slot = NULL;
}

static uint64_t pair_key(int left, int right) { return (uint64_t)(uint32_t)left << 32 | (uint32_t)right; }

/* A pair given twice keeps its last rank, as Hugging Face's map of merges
 * (built in file order) does. */
void tok_merges_put(tok_merges *m, int left, int right, int rank, int id) {
    const uint64_t key = pair_key(left, right);
    size_t i = hash_pair(key) & m->mask;
    while (m->slot[i].rank >= 0 && m->slot[i].key != key) i = (i + 1) & m->mask;
    m->slot[i] = (tok_merge){key, rank, id};
}

const tok_merge *tok_merges_find(const tok_merges *m, int left, int right) {
    const uint64_t key = pair_key(left, right);
    for (size_t i = hash_pair(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slot[i].rank < 0) return NULL;
        if (m->slot[i].key == key) return &m->slot[i];
    }
}

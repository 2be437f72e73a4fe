/* SPDX-License-Identifier: Apache-2.0 */
/* tok_model.c: the BPE model of a tokenizer.json: the vocabulary (the
 * model's vocab and the added tokens, every piece valid UTF-8, as the JSON
 * reader of Hugging Face requires), the merges by rank, and the index that
 * encoding finds the added tokens by. A model option Forge does not
 * implement is refused by name. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"
#include "utf8.h"

forge_status tok_refuse(const char *fn, const char *what, const char *name) {
    return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %s \"%s\" is not implemented", fn, what, name);
}

forge_status tok_bad(const char *fn, const char *what) {
    return forge_fail(FORGE_ERR_FORMAT, "%s: %s", fn, what);
}

int tok_flag(const cJSON *c, const char *name) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, name)); }

const char *tok_type_of(const cJSON *c) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* The vocabulary: every id of the model's vocab and of added_tokens. */
static forge_status load_vocab(forge_tokenizer *t, const char *fn, const cJSON *vocab, const cJSON *added) {
    const cJSON *item;
    double top = -1;
    cJSON_ArrayForEach(item, vocab) {
        if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble > (1 << 24) ||
            item->valuedouble != (int)item->valuedouble)
            return tok_bad(fn, "the model's vocab maps a token to something that is not an id in 0 .. 2^24");
        if (item->valuedouble > top) top = item->valuedouble;
    }
    cJSON_ArrayForEach(item, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > (1 << 24) ||
            id->valuedouble != (int)id->valuedouble)
            return tok_bad(fn, "an added token's id is not an id in 0 .. 2^24");
        if (id->valuedouble > top) top = id->valuedouble;
    }
    t->vocab_size = (int)top + 1;
    if (!tok_vocab_init(&t->vocab, t->vocab_size)) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cJSON_ArrayForEach(item, vocab) {
        const size_t len = strlen(item->string);
        if (forge_utf8_valid_len(item->string, len) < len) return tok_bad(fn, "a token of the model's vocab is not valid UTF-8");
        if (!tok_vocab_put(&t->vocab, item->valueint, item->string, (int)len))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    t->added = calloc((size_t)cJSON_GetArraySize(added) + 1, sizeof *t->added);
    t->special = calloc((size_t)t->vocab_size, 1);
    if (!t->added || !t->special) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cJSON_ArrayForEach(item, added) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (!cJSON_IsString(content) || !content->valuestring[0]) return tok_bad(fn, "an added token has no content");
        const size_t content_len = strlen(content->valuestring);
        if (forge_utf8_valid_len(content->valuestring, content_len) < content_len)
            return tok_bad(fn, "an added token's content is not valid UTF-8");
        tok_added *a = &t->added[t->n_added++];
        a->id = cJSON_GetObjectItemCaseSensitive(item, "id")->valueint;
        a->len = (int)strlen(content->valuestring);
        a->content = strdup(content->valuestring);
        a->special = tok_flag(item, "special"), a->lstrip = tok_flag(item, "lstrip"), a->rstrip = tok_flag(item, "rstrip");
        a->single_word = tok_flag(item, "single_word"), a->normalized = tok_flag(item, "normalized");
        t->special[a->id] = (unsigned char)a->special;
        if (!a->content || !tok_vocab_put(&t->vocab, a->id, a->content, a->len))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    return FORGE_OK;
}

typedef struct {
    int normalized, byte, len, index;
} added_key;

static int by_pass_byte_length(const void *x, const void *y) {
    const added_key *a = x, *b = y;
    if (a->normalized != b->normalized) return a->normalized - b->normalized;
    if (a->byte != b->byte) return a->byte - b->byte;
    return a->len != b->len ? b->len - a->len : a->index - b->index;
}

/* The index that encoding searches the added tokens by. */
static forge_status index_added(forge_tokenizer *t, const char *fn) {
    t->order = malloc(sizeof *t->order * (size_t)(t->n_added + 1));
    if (!t->order) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    added_key *keys = malloc(sizeof *keys * (size_t)(t->n_added + 1));
    if (!keys) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int i = 0; i < t->n_added; i++)
        keys[i] = (added_key){t->added[i].normalized, (unsigned char)t->added[i].content[0], t->added[i].len, i};
    qsort(keys, (size_t)t->n_added, sizeof *keys, by_pass_byte_length);
    for (int i = 0; i < t->n_added; i++) t->order[i] = keys[i].index;
    free(keys);
    int at = 0;
    for (int p = 0; p < 2; p++)
        for (int b = 0; b <= 256; b++) {
            while (b < 256 && at < t->n_added && t->added[t->order[at]].normalized < p) at++;
            t->first[p][b] = at;
            while (b < 256 && at < t->n_added && t->added[t->order[at]].normalized == p &&
                   (unsigned char)t->added[t->order[at]].content[0] == b)
                at++;
        }
    return FORGE_OK;
}

/* A merge "left right" (a string) or ["left", "right"] (an array). */
static forge_status load_merges(forge_tokenizer *t, const char *fn, const cJSON *merges) {
    if (!tok_merges_init(&t->merges, cJSON_GetArraySize(merges)))
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const cJSON *item;
    int rank = 0;
    char *joined = NULL;
    size_t joined_cap = 0;
    forge_status st = FORGE_OK;
    cJSON_ArrayForEach(item, merges) {
        const char *left, *right;
        size_t left_len, right_len;
        if (cJSON_IsString(item)) {
            const char *space = strchr(item->valuestring, ' ');
            if (!space) { st = tok_bad(fn, "a merge is not two tokens separated by a space"); break; }
            left = item->valuestring, left_len = (size_t)(space - left), right = space + 1, right_len = strlen(right);
        } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 && cJSON_IsString(item->child) &&
                   cJSON_IsString(item->child->next)) {
            left = item->child->valuestring, right = item->child->next->valuestring;
            left_len = strlen(left), right_len = strlen(right);
        } else {
            st = tok_bad(fn, "a merge is neither \"a b\" nor [\"a\", \"b\"]");
            break;
        }
        const int a = tok_vocab_find(&t->vocab, left, (int)left_len), b = tok_vocab_find(&t->vocab, right, (int)right_len);
        if (left_len + right_len + 1 > joined_cap) {
            joined_cap = 2 * (left_len + right_len + 1);
            char *grown = realloc(joined, joined_cap);
            if (!grown) { st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn); break; }
            joined = grown;
        }
        memcpy(joined, left, left_len);
        memcpy(joined + left_len, right, right_len);
        const int merged = tok_vocab_find(&t->vocab, joined, (int)(left_len + right_len));
        if (a < 0 || b < 0 || merged < 0) {
            st = forge_fail(FORGE_ERR_FORMAT, "%s: merge %d (\"%.*s\" + \"%.*s\") names a token not in the vocab", fn,
                            rank, (int)left_len, left, (int)right_len, right);
            break;
        }
        tok_merges_put(&t->merges, a, b, rank++, merged);
    }
    free(joined);
    return st;
}

/* The tables of BPE's first ids: each BMP character's token and each
 * byte's <0xNN>. */
static forge_status index_chars(forge_tokenizer *t, const char *fn) {
    if (!(t->char_id = malloc(sizeof *t->char_id * 0x10000))) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memset(t->char_id, 0xff, sizeof *t->char_id * 0x10000);
    for (int id = 0; id < t->vocab.n; id++) {
        const unsigned char *p = (const unsigned char *)t->vocab.piece[id];
        const size_t n = p ? (size_t)t->vocab.len[id] : 0;
        if (n == 0 || n > 3 || forge_utf8_char(p, n, NULL) != n) continue;
        const unsigned cp = n == 1 ? p[0] : n == 2 ? (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu)
                                               : (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu);
        /* the id the vocabulary's map gives, where two tokens share a text */
        t->char_id[cp] = tok_vocab_find(&t->vocab, (const char *)p, (int)n);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tok_vocab_find(&t->vocab, name, 6);
    }
    return FORGE_OK;
}

forge_status tok_load_model(forge_tokenizer *t, const char *fn, const cJSON *model, const cJSON *added) {
    const char *type = tok_type_of(model);
    if (!type || strcmp(type, "BPE") != 0) return tok_refuse(fn, "model", type ? type : "(none)");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) return tok_bad(fn, "the BPE model lacks its vocab or merges");
    t->byte_fallback = tok_flag(model, "byte_fallback");
    t->fuse_unk = tok_flag(model, "fuse_unk");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) return tok_refuse(fn, "BPE option", "dropout");
    static const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (cJSON_IsString(a) && a->valuestring[0]) return tok_refuse(fn, "BPE option", affixes[i]);
    }
    t->ignore_merges = tok_flag(model, "ignore_merges");
    forge_status st = load_vocab(t, fn, vocab, added);
    if (st == FORGE_OK) st = load_merges(t, fn, merges);
    if (st == FORGE_OK) st = index_added(t, fn);
    if (st == FORGE_OK) st = index_chars(t, fn);
    if (st == FORGE_OK) t->word_starts = tok_word_starts(t);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk = cJSON_IsString(unk) ? tok_vocab_find(&t->vocab, unk->valuestring, (int)strlen(unk->valuestring)) : -1;
    return st;
}


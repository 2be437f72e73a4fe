/* SPDX-License-Identifier: Apache-2.0 */
/* tok_load.c: a tokenizer.json read into a forge_tokenizer. Every component
 * of the file is either built or refused by name: a normaliser, a
 * pre-tokeniser, a post-processor, a decoder or a model option that Forge
 * does not implement is FORGE_ERR_UNSUPPORTED, never skipped. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "tokenizer.h"

/* GPT-2's pattern, which ByteLevel splits with when use_regex is set. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static forge_status refuse(const char *fn, const char *what, const char *name) {
    return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %s \"%s\" is not implemented", fn, what, name);
}

static forge_status bad(const char *fn, const char *what) {
    return forge_fail(FORGE_ERR_FORMAT, "%s: %s", fn, what);
}

/* The component's "type", or NULL. */
static const char *type_of(const cJSON *c) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int flag(const cJSON *c, const char *name) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, name)); }

/* A component that is a Sequence: each of its list (under key) added in
 * order; *handled 0 where c is no Sequence. */
typedef forge_status (*add_fn)(forge_tokenizer *t, const char *fn, const cJSON *c);

static forge_status add_sequence(forge_tokenizer *t, const char *fn, const cJSON *c, const char *key, add_fn add,
                                 int *handled) {
    *handled = 0;
    const char *type = type_of(c);
    if (!type || strcmp(type, "Sequence") != 0) return FORGE_OK;
    *handled = 1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(c, key), *item;
    if (!cJSON_IsArray(list))
        return forge_fail(FORGE_ERR_FORMAT, "%s: a Sequence has no %s array", fn, key);
    cJSON_ArrayForEach(item, list) {
        forge_status st = add(t, fn, item);
        if (st != FORGE_OK) return st;
    }
    return FORGE_OK;
}

static forge_status compile(const char *fn, const char *pattern, size_t len, int literal, pcre2_code **out) {
    int err;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &err, &at,
                         NULL);
    if (*out) {
        /* compiled to machine code where PCRE2 can (several times faster);
         * where it cannot, matching interprets the pattern, same results */
        (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
        return FORGE_OK;
    }
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    return forge_fail(FORGE_ERR_FORMAT, "%s: the pre-tokenizer's pattern does not compile at offset %zu: %s", fn,
                      (size_t)at, (const char *)msg);
}

static forge_status add_pre(forge_tokenizer *t, const char *fn, const cJSON *c) {
    const char *type = type_of(c);
    if (!type) return bad(fn, "a pre_tokenizer has no type");
    int handled;
    forge_status st = add_sequence(t, fn, c, "pretokenizers", add_pre, &handled);
    if (handled || st != FORGE_OK) return st;
    tok_pre p = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        p.kind = PRE_BYTE_LEVEL;
        p.add_prefix_space = flag(c, "add_prefix_space");
        if (flag(c, "use_regex")) st = compile(fn, gpt2_pattern, sizeof gpt2_pattern - 1, 0, &p.re);
        t->byte_level = 1;
    } else if (strcmp(type, "Split") == 0) {
        static const char *hows[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(c, "pattern");
        const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pattern, "Regex");
        const cJSON *literal = cJSON_GetObjectItemCaseSensitive(pattern, "String");
        const cJSON *how = cJSON_GetObjectItemCaseSensitive(c, "behavior");
        const cJSON *text = cJSON_IsString(regex) ? regex : literal;
        if (!cJSON_IsString(text) || !cJSON_IsString(how)) return bad(fn, "a Split pre_tokenizer lacks its pattern or behavior");
        p.kind = PRE_SPLIT;
        p.invert = flag(c, "invert");
        p.how = (tok_split_how)-1;
        for (int i = 0; i < 5; i++)
            if (strcmp(how->valuestring, hows[i]) == 0) p.how = (tok_split_how)i;
        if ((int)p.how < 0) return refuse(fn, "Split behavior", how->valuestring);
        st = compile(fn, text->valuestring, strlen(text->valuestring), text == literal, &p.re);
    } else {
        return refuse(fn, "pre_tokenizer", type);
    }
    if (st != FORGE_OK) return st;
    tok_pre *grown = realloc(t->pres, sizeof *grown * (size_t)(t->n_pres + 1));
    if (!grown) {
        pcre2_code_free(p.re);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    t->pres = grown;
    t->pres[t->n_pres++] = p;
    return FORGE_OK;
}

/* A Replace's pattern (a literal String; a Regex is refused) and content,
 * copied. */
static forge_status literal_replace(const char *fn, const char *what, const cJSON *c, char **from, int *from_len,
                                    char **to, int *to_len) {
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(c, "pattern");
    const cJSON *literal = cJSON_GetObjectItemCaseSensitive(pattern, "String");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(c, "content");
    if (cJSON_GetObjectItemCaseSensitive(pattern, "Regex")) return refuse(fn, what, "Replace with a Regex pattern");
    if (!cJSON_IsString(literal) || !literal->valuestring[0] || !cJSON_IsString(content))
        return bad(fn, "a Replace lacks its String pattern or its content");
    *from = strdup(literal->valuestring), *to = strdup(content->valuestring);
    if (!*from || !*to) {
        free(*from), free(*to);
        *from = *to = NULL;
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    *from_len = (int)strlen(*from), *to_len = (int)strlen(*to);
    return FORGE_OK;
}

static forge_status add_norm(forge_tokenizer *t, const char *fn, const cJSON *c) {
    if (cJSON_IsNull(c) || !c) return FORGE_OK;
    const char *type = type_of(c);
    if (!type) return bad(fn, "a normalizer has no type");
    int handled;
    forge_status st = add_sequence(t, fn, c, "normalizers", add_norm, &handled);
    if (handled || st != FORGE_OK) return st;
    tok_norm norm = {0};
    if (strcmp(type, "NFC") == 0) {
        norm.kind = NORM_NFC;
    } else if (strcmp(type, "NFKC") == 0) {
        norm.kind = NORM_NFKC;
    } else if (strcmp(type, "Prepend") == 0) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "prepend");
        if (!cJSON_IsString(text)) return bad(fn, "a Prepend normalizer has no prepend string");
        norm.kind = NORM_PREPEND;
        norm.from = strdup(text->valuestring);
        norm.from_len = (int)strlen(text->valuestring);
    } else if (strcmp(type, "Replace") == 0) {
        if ((st = literal_replace(fn, "normalizer", c, &norm.from, &norm.from_len, &norm.to, &norm.to_len)) != FORGE_OK)
            return st;
        norm.kind = NORM_REPLACE;
    } else {
        return refuse(fn, "normalizer", type);
    }
    tok_norm *grown = realloc(t->norms, sizeof *grown * (size_t)(t->n_norms + 1));
    if (!grown || (norm.kind == NORM_PREPEND && !norm.from)) {
        free(norm.from), free(norm.to);
        if (grown) t->norms = grown;
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    t->norms = grown;
    t->norms[t->n_norms++] = norm;
    return FORGE_OK;
}

/* TemplateProcessing's "single" template, its special tokens' ids looked up
 * in its special_tokens map. */
static forge_status add_template(forge_tokenizer *t, const char *fn, const cJSON *c) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(c, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(c, "special_tokens"), *item;
    if (!cJSON_IsArray(single)) return bad(fn, "a TemplateProcessing post_processor has no single template");
    if (t->single) return refuse(fn, "post_processor", "two TemplateProcessing");
    const int n = cJSON_GetArraySize(single);
    t->single = calloc((size_t)n, sizeof *t->single);
    if (!t->single) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cJSON_ArrayForEach(item, single) {
        tok_template_item *it = &t->single[t->n_single++];
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) continue; /* the text's ids: ids NULL */
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(special, "id");
        const cJSON *entry = cJSON_IsString(name) ? cJSON_GetObjectItemCaseSensitive(specials, name->valuestring) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *id;
        if (!cJSON_IsArray(ids)) return bad(fn, "a TemplateProcessing special token is not in its special_tokens map");
        it->ids = malloc(sizeof *it->ids * (size_t)(cJSON_GetArraySize(ids) + 1));
        if (!it->ids) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        cJSON_ArrayForEach(id, ids) {
            if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= t->vocab_size)
                return bad(fn, "a TemplateProcessing special token's id is outside the vocabulary");
            it->ids[it->n_ids++] = id->valueint;
        }
    }
    return FORGE_OK;
}

static forge_status add_post(forge_tokenizer *t, const char *fn, const cJSON *c) {
    if (!c || cJSON_IsNull(c)) return FORGE_OK;
    const char *type = type_of(c);
    if (!type) return bad(fn, "a post_processor has no type");
    if (strcmp(type, "ByteLevel") == 0) return FORGE_OK; /* offsets only: no ids change */
    if (strcmp(type, "TemplateProcessing") == 0) return add_template(t, fn, c);
    int handled;
    forge_status st = add_sequence(t, fn, c, "processors", add_post, &handled);
    if (handled || st != FORGE_OK) return st;
    return refuse(fn, "post_processor", type);
}

static forge_status add_decoder(forge_tokenizer *t, const char *fn, const cJSON *c) {
    if (!c || cJSON_IsNull(c)) return FORGE_OK;
    const char *type = type_of(c);
    if (!type) return bad(fn, "a decoder has no type");
    int handled;
    forge_status st = add_sequence(t, fn, c, "decoders", add_decoder, &handled);
    if (handled || st != FORGE_OK) return st;
    tok_dec d = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        d.kind = DEC_BYTE_LEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d.kind = DEC_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d.kind = DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        if ((st = literal_replace(fn, "decoder", c, &d.from, &d.from_len, &d.to, &d.to_len)) != FORGE_OK) return st;
        d.kind = DEC_REPLACE;
    } else if (strcmp(type, "Strip") == 0) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(c, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(c, "start"), *stop = cJSON_GetObjectItemCaseSensitive(c, "stop");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || start->valuedouble < 0 ||
            stop->valuedouble < 0 || start->valuedouble > 1e6 || stop->valuedouble > 1e6)
            return bad(fn, "a Strip decoder lacks its content, start or stop");
        if (!(d.from = strdup(content->valuestring))) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        d.kind = DEC_STRIP;
        d.from_len = (int)strlen(d.from), d.start = start->valueint, d.stop = stop->valueint;
    } else {
        return refuse(fn, "decoder", type);
    }
    tok_dec *grown = realloc(t->decs, sizeof *grown * (size_t)(t->n_decs + 1));
    if (!grown) {
        free(d.from), free(d.to);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    t->decs = grown;
    t->decs[t->n_decs++] = d;
    return FORGE_OK;
}

/* The vocabulary: every id of the model's vocab and of added_tokens. */
static forge_status load_vocab(forge_tokenizer *t, const char *fn, const cJSON *vocab, const cJSON *added) {
    const cJSON *item;
    double top = -1;
    cJSON_ArrayForEach(item, vocab) {
        if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble > (1 << 24) ||
            item->valuedouble != (int)item->valuedouble)
            return bad(fn, "the model's vocab maps a token to something that is not an id in 0 .. 2^24");
        if (item->valuedouble > top) top = item->valuedouble;
    }
    cJSON_ArrayForEach(item, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > (1 << 24) ||
            id->valuedouble != (int)id->valuedouble)
            return bad(fn, "an added token's id is not an id in 0 .. 2^24");
        if (id->valuedouble > top) top = id->valuedouble;
    }
    t->vocab_size = (int)top + 1;
    if (!tok_vocab_init(&t->vocab, t->vocab_size)) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cJSON_ArrayForEach(item, vocab)
        if (!tok_vocab_put(&t->vocab, item->valueint, item->string, (int)strlen(item->string)))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    t->added = calloc((size_t)cJSON_GetArraySize(added) + 1, sizeof *t->added);
    t->special = calloc((size_t)t->vocab_size, 1);
    if (!t->added || !t->special) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cJSON_ArrayForEach(item, added) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (!cJSON_IsString(content) || !content->valuestring[0]) return bad(fn, "an added token has no content");
        tok_added *a = &t->added[t->n_added++];
        a->id = cJSON_GetObjectItemCaseSensitive(item, "id")->valueint;
        a->len = (int)strlen(content->valuestring);
        a->content = strdup(content->valuestring);
        a->special = flag(item, "special"), a->lstrip = flag(item, "lstrip"), a->rstrip = flag(item, "rstrip");
        a->single_word = flag(item, "single_word"), a->normalized = flag(item, "normalized");
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
            if (!space) { st = bad(fn, "a merge is not two tokens separated by a space"); break; }
            left = item->valuestring, left_len = (size_t)(space - left), right = space + 1, right_len = strlen(right);
        } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 && cJSON_IsString(item->child) &&
                   cJSON_IsString(item->child->next)) {
            left = item->child->valuestring, right = item->child->next->valuestring;
            left_len = strlen(left), right_len = strlen(right);
        } else {
            st = bad(fn, "a merge is neither \"a b\" nor [\"a\", \"b\"]");
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

static forge_status load_model(forge_tokenizer *t, const char *fn, const cJSON *model, const cJSON *added) {
    const char *type = type_of(model);
    if (!type || strcmp(type, "BPE") != 0) return refuse(fn, "model", type ? type : "(none)");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) return bad(fn, "the BPE model lacks its vocab or merges");
    t->byte_fallback = flag(model, "byte_fallback");
    t->fuse_unk = flag(model, "fuse_unk");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) return refuse(fn, "BPE option", "dropout");
    static const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (cJSON_IsString(a) && a->valuestring[0]) return refuse(fn, "BPE option", affixes[i]);
    }
    t->ignore_merges = flag(model, "ignore_merges");
    forge_status st = load_vocab(t, fn, vocab, added);
    if (st == FORGE_OK) st = load_merges(t, fn, merges);
    if (st == FORGE_OK) st = index_added(t, fn);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk = cJSON_IsString(unk) ? tok_vocab_find(&t->vocab, unk->valuestring, (int)strlen(unk->valuestring)) : -1;
    return st;
}

void forge_tokenizer_free(forge_tokenizer *t) {
    if (!t) return;
    tok_vocab_free(&t->vocab);
    tok_merges_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->order);
    free(t->special);
    for (int i = 0; i < t->n_norms; i++) free(t->norms[i].from), free(t->norms[i].to);
    free(t->norms);
    for (int i = 0; i < t->n_decs; i++) free(t->decs[i].from), free(t->decs[i].to);
    free(t->decs);
    for (int i = 0; i < t->n_pres; i++) pcre2_code_free(t->pres[i].re);
    free(t->pres);
    for (int i = 0; i < t->n_single; i++) free(t->single[i].ids);
    free(t->single);
    free(t);
}

forge_status forge_tokenizer_load(const char *path, forge_tokenizer **out) {
    static const char fn[] = "forge_tokenizer_load";
    FORGE_CHECK_NOT_NULL(path, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    /* a directory holding tokenizer.json, or the file: its directory holds
     * the config files */
    struct stat sb;
    const int is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    const size_t n = strlen(path) + sizeof "/tokenizer.json";
    char *file = malloc(n), *dir = malloc(n), *text = NULL;
    size_t len = 0;
    forge_status st = file && dir ? FORGE_OK : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == FORGE_OK) {
        snprintf(file, n, is_dir ? "%s/tokenizer.json" : "%s", path);
        snprintf(dir, n, "%s", path);
        char *slash = strrchr(dir, '/');
        if (!is_dir) slash ? (void)(*slash = '\0') : (void)snprintf(dir, n, ".");
        st = tok_read_file(fn, file, &text, &len);
    }
    free(file);
    if (st != FORGE_OK) {
        free(dir);
        return st;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        free(dir);
        return bad(fn, "the file is not a JSON object");
    }
    forge_tokenizer *t = calloc(1, sizeof *t);
    if (t) tok_byte_tables(t);
    if (!t) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (st == FORGE_OK && added && !cJSON_IsArray(added)) st = bad(fn, "added_tokens is not an array");
    if (st == FORGE_OK) st = load_model(t, fn, cJSON_GetObjectItemCaseSensitive(root, "model"), added);
    if (st == FORGE_OK) st = add_norm(t, fn, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (st == FORGE_OK && pre && !cJSON_IsNull(pre)) st = add_pre(t, fn, pre);
    if (st == FORGE_OK) st = add_post(t, fn, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    if (st == FORGE_OK) st = add_decoder(t, fn, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    cJSON_Delete(root);
    if (st == FORGE_OK) st = tok_read_configs(t, fn, dir);
    free(dir);
    if (st != FORGE_OK) {
        forge_tokenizer_free(t);
        return st;
    }
    *out = t;
    return FORGE_OK;
}

int forge_tokenizer_vocab_size(const forge_tokenizer *t) { return t ? t->vocab_size : 0; }

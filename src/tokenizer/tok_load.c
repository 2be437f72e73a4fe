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
#include "file.h"
#include "tokenizer.h"
#include "utf8.h"

/* GPT-2's pattern, which ByteLevel splits with when use_regex is set. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* The characters Digits and Punctuation split on: Rust's char::is_numeric
 * (Nd, Nl, No), and its is_ascii_punctuation or Unicode's P categories. */
static const char digit_class[] = "\\p{N}";
static const char punctuation_class[] = "[\\p{P}\\x21-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7e]";

static forge_status out_of_memory(const char *fn) { return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn); }

/* A component's type, or (*type NULL) a Sequence of components, each of
 * its list (under key) added in order; what names the component in the
 * message when it has no type. */
typedef forge_status (*add_fn)(forge_tokenizer *t, const char *fn, const cJSON *c);

static forge_status open_component(forge_tokenizer *t, const char *fn, const cJSON *c, const char *what,
                                   const char *key, add_fn add, const char **type) {
    *type = tok_type_of(c);
    if (!*type) return forge_fail(FORGE_ERR_FORMAT, "%s: a %s has no type", fn, what);
    if (strcmp(*type, "Sequence") != 0) return FORGE_OK;
    *type = NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(c, key), *item;
    if (!cJSON_IsArray(list))
        return forge_fail(FORGE_ERR_FORMAT, "%s: a Sequence has no %s array", fn, key);
    cJSON_ArrayForEach(item, list) {
        forge_status st = add(t, fn, item);
        if (st != FORGE_OK) return st;
    }
    return FORGE_OK;
}

/* A SplitDelimiterBehavior by name (or dflt when absent). */
static forge_status split_how(const char *fn, const cJSON *c, tok_split_how dflt, tok_split_how *how) {
    static const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "behavior");
    *how = dflt;
    if (!name) return FORGE_OK;
    if (!cJSON_IsString(name)) return tok_bad(fn, "a pre_tokenizer's behavior is not a string");
    for (int i = 0; i < 5; i++)
        if (strcmp(name->valuestring, names[i]) == 0) {
            *how = (tok_split_how)i;
            return FORGE_OK;
        }
    return tok_refuse(fn, "Split behavior", name->valuestring);
}

/* Metaspace's replacement (one character) and prepend scheme, as the
 * pre-tokenizer and the decoder both read them: prepend_scheme "always"
 * unless named, and a legacy add_prefix_space false only beside "never"
 * (Hugging Face refuses the file otherwise). */
static forge_status metaspace_fields(const char *fn, const cJSON *c, char mark[5], int *mark_len, tok_prepend *prepend) {
    static const char *schemes[] = {"always", "first", "never"};
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "replacement");
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(c, "prepend_scheme");
    const cJSON *legacy = cJSON_GetObjectItemCaseSensitive(c, "add_prefix_space");
    const size_t n = cJSON_IsString(r) ? strlen(r->valuestring) : 0;
    if (n == 0 || n > 4 || forge_utf8_char((const unsigned char *)r->valuestring, n, NULL) != n)
        return tok_bad(fn, "a Metaspace's replacement is not one character");
    memcpy(mark, r->valuestring, n + 1);
    *mark_len = (int)n;
    *prepend = PREPEND_ALWAYS;
    if (scheme) {
        int found = 0;
        for (int i = 0; i < 3 && cJSON_IsString(scheme); i++)
            if (strcmp(scheme->valuestring, schemes[i]) == 0) *prepend = (tok_prepend)i, found = 1;
        if (!found) return tok_bad(fn, "a Metaspace's prepend_scheme is not always, first or never");
    }
    if (cJSON_IsFalse(legacy)) {
        if (*prepend != PREPEND_NEVER) return tok_bad(fn, "a Metaspace's add_prefix_space false does not match its prepend_scheme");
        *prepend = PREPEND_NEVER;
    }
    return FORGE_OK;
}

static forge_status add_pre(forge_tokenizer *t, const char *fn, const cJSON *c) {
    const char *type;
    forge_status st = open_component(t, fn, c, "pre_tokenizer", "pretokenizers", add_pre, &type);
    if (!type || st != FORGE_OK) return st;
    tok_pre p = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        p.kind = PRE_BYTE_LEVEL;
        p.add_prefix_space = tok_flag(c, "add_prefix_space");
        if (tok_flag(c, "use_regex")) st = tok_compile(fn, "pre_tokenizer", gpt2_pattern, sizeof gpt2_pattern - 1, 0, &p.re);
        t->byte_level = 1;
    } else if (strcmp(type, "Split") == 0) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(c, "pattern");
        const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pattern, "Regex");
        const cJSON *literal = cJSON_GetObjectItemCaseSensitive(pattern, "String");
        const cJSON *text = cJSON_IsString(regex) ? regex : literal;
        if (!cJSON_IsString(text) || !cJSON_GetObjectItemCaseSensitive(c, "behavior"))
            return tok_bad(fn, "a Split pre_tokenizer lacks its pattern or behavior");
        p.kind = PRE_SPLIT;
        p.invert = tok_flag(c, "invert");
        st = split_how(fn, c, SPLIT_ISOLATED, &p.how);
        if (st == FORGE_OK)
            st = tok_compile(fn, "pre_tokenizer", text->valuestring, strlen(text->valuestring), text == literal, &p.re);
    } else if (strcmp(type, "Digits") == 0) {
        p.kind = PRE_SPLIT;
        p.how = tok_flag(c, "individual_digits") ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
        st = tok_compile(fn, "pre_tokenizer", digit_class, sizeof digit_class - 1, 0, &p.re);
    } else if (strcmp(type, "Punctuation") == 0) {
        p.kind = PRE_SPLIT;
        st = split_how(fn, c, SPLIT_ISOLATED, &p.how);
        if (st == FORGE_OK) st = tok_compile(fn, "pre_tokenizer", punctuation_class, sizeof punctuation_class - 1, 0, &p.re);
    } else if (strcmp(type, "Metaspace") == 0) {
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(c, "split");
        p.kind = PRE_METASPACE;
        st = metaspace_fields(fn, c, p.mark, &p.mark_len, &p.prepend);
        if (st == FORGE_OK && !cJSON_IsFalse(split)) /* split unless told not to */
            st = tok_compile(fn, "pre_tokenizer", p.mark, (size_t)p.mark_len, 1, &p.re);
    } else {
        return tok_refuse(fn, "pre_tokenizer", type);
    }
    if (st != FORGE_OK) return st;
    tok_pre *grown = realloc(t->pres, sizeof *grown * (size_t)(t->n_pres + 1));
    if (!grown) {
        pcre2_code_free(p.re);
        return out_of_memory(fn);
    }
    t->pres = grown;
    t->pres[t->n_pres++] = p;
    return FORGE_OK;
}

/* A Replace's pattern (a String, literal, or a Regex), compiled, and its
 * content, copied. */
static forge_status replace_fields(const char *fn, const char *what, const cJSON *c, pcre2_code **re, char **to,
                                   int *to_len) {
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(c, "pattern");
    const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pattern, "Regex");
    const cJSON *literal = cJSON_GetObjectItemCaseSensitive(pattern, "String");
    const cJSON *text = cJSON_IsString(regex) ? regex : literal;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(c, "content");
    if (!cJSON_IsString(text) || !text->valuestring[0] || !cJSON_IsString(content))
        return tok_bad(fn, "a Replace lacks its pattern or its content");
    if (!(*to = strdup(content->valuestring))) return out_of_memory(fn);
    *to_len = (int)strlen(*to);
    forge_status st = tok_compile(fn, what, text->valuestring, strlen(text->valuestring), text == literal, re);
    if (st != FORGE_OK) free(*to), *to = NULL;
    return st;
}

static forge_status add_norm(forge_tokenizer *t, const char *fn, const cJSON *c) {
    if (cJSON_IsNull(c) || !c) return FORGE_OK;
    const char *type;
    forge_status st = open_component(t, fn, c, "normalizer", "normalizers", add_norm, &type);
    if (!type || st != FORGE_OK) return st;
    tok_norm norm = {0};
    if (strcmp(type, "NFC") == 0) {
        norm.kind = NORM_NFC;
    } else if (strcmp(type, "NFKC") == 0) {
        norm.kind = NORM_NFKC;
    } else if (strcmp(type, "Lowercase") == 0) {
        norm.kind = NORM_LOWERCASE;
    } else if (strcmp(type, "Prepend") == 0) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "prepend");
        if (!cJSON_IsString(text)) return tok_bad(fn, "a Prepend normalizer has no prepend string");
        norm.kind = NORM_PREPEND;
        if (!(norm.text = strdup(text->valuestring))) return out_of_memory(fn);
        norm.text_len = (int)strlen(text->valuestring);
    } else if (strcmp(type, "Replace") == 0) {
        if ((st = replace_fields(fn, "normalizer", c, &norm.re, &norm.text, &norm.text_len)) != FORGE_OK) return st;
        norm.kind = NORM_REPLACE;
    } else {
        return tok_refuse(fn, "normalizer", type);
    }
    tok_norm *grown = realloc(t->norms, sizeof *grown * (size_t)(t->n_norms + 1));
    if (!grown) {
        free(norm.text);
        pcre2_code_free(norm.re);
        return out_of_memory(fn);
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
    if (!cJSON_IsArray(single)) return tok_bad(fn, "a TemplateProcessing post_processor has no single template");
    if (t->single) return tok_refuse(fn, "post_processor", "two TemplateProcessing");
    const int n = cJSON_GetArraySize(single);
    t->single = calloc((size_t)n, sizeof *t->single);
    if (!t->single) return out_of_memory(fn);
    cJSON_ArrayForEach(item, single) {
        tok_template_item *it = &t->single[t->n_single++];
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) continue; /* the text's ids: ids NULL */
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(special, "id");
        const cJSON *entry = cJSON_IsString(name) ? cJSON_GetObjectItemCaseSensitive(specials, name->valuestring) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *id;
        if (!cJSON_IsArray(ids)) return tok_bad(fn, "a TemplateProcessing special token is not in its special_tokens map");
        it->ids = malloc(sizeof *it->ids * (size_t)(cJSON_GetArraySize(ids) + 1));
        if (!it->ids) return out_of_memory(fn);
        cJSON_ArrayForEach(id, ids) {
            if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= t->vocab_size)
                return tok_bad(fn, "a TemplateProcessing special token's id is outside the vocabulary");
            it->ids[it->n_ids++] = id->valueint;
        }
    }
    return FORGE_OK;
}

static forge_status add_post(forge_tokenizer *t, const char *fn, const cJSON *c) {
    if (!c || cJSON_IsNull(c)) return FORGE_OK;
    const char *type;
    forge_status st = open_component(t, fn, c, "post_processor", "processors", add_post, &type);
    if (!type || st != FORGE_OK) return st;
    if (strcmp(type, "ByteLevel") == 0) return FORGE_OK; /* offsets only: no ids change */
    if (strcmp(type, "TemplateProcessing") == 0) return add_template(t, fn, c);
    return tok_refuse(fn, "post_processor", type);
}

static forge_status add_decoder(forge_tokenizer *t, const char *fn, const cJSON *c) {
    if (!c || cJSON_IsNull(c)) return FORGE_OK;
    const char *type;
    forge_status st = open_component(t, fn, c, "decoder", "decoders", add_decoder, &type);
    if (!type || st != FORGE_OK) return st;
    tok_dec d = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        d.kind = DEC_BYTE_LEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d.kind = DEC_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d.kind = DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        if ((st = replace_fields(fn, "decoder", c, &d.re, &d.text, &d.text_len)) != FORGE_OK) return st;
        d.kind = DEC_REPLACE;
    } else if (strcmp(type, "Strip") == 0) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(c, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(c, "start"), *stop = cJSON_GetObjectItemCaseSensitive(c, "stop");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || start->valuedouble < 0 ||
            stop->valuedouble < 0 || start->valuedouble > 1e6 || stop->valuedouble > 1e6)
            return tok_bad(fn, "a Strip decoder lacks its content, start or stop");
        if (!(d.text = strdup(content->valuestring))) return out_of_memory(fn);
        d.kind = DEC_STRIP;
        d.text_len = (int)strlen(d.text), d.start = start->valueint, d.stop = stop->valueint;
    } else if (strcmp(type, "Metaspace") == 0) {
        char mark[5];
        tok_prepend prepend;
        if ((st = metaspace_fields(fn, c, mark, &d.text_len, &prepend)) != FORGE_OK) return st;
        if (!(d.text = strdup(mark))) return out_of_memory(fn);
        d.kind = DEC_METASPACE;
        d.strip_first = prepend != PREPEND_NEVER;
    } else {
        return tok_refuse(fn, "decoder", type);
    }
    tok_dec *grown = realloc(t->decs, sizeof *grown * (size_t)(t->n_decs + 1));
    if (!grown) {
        free(d.text);
        pcre2_code_free(d.re);
        return out_of_memory(fn);
    }
    t->decs = grown;
    t->decs[t->n_decs++] = d;
    return FORGE_OK;
}

void forge_tokenizer_free(forge_tokenizer *t) {
    if (!t) return;
    tok_vocab_free(&t->vocab);
    tok_merges_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->order);
    free(t->special);
    free(t->char_id);
    for (int i = 0; i < t->n_norms; i++) free(t->norms[i].text), pcre2_code_free(t->norms[i].re);
    free(t->norms);
    for (int i = 0; i < t->n_decs; i++) free(t->decs[i].text), pcre2_code_free(t->decs[i].re);
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
    forge_status st = file && dir ? FORGE_OK : out_of_memory(fn);
    if (st == FORGE_OK) {
        snprintf(file, n, is_dir ? "%s/tokenizer.json" : "%s", path);
        snprintf(dir, n, "%s", path);
        char *slash = strrchr(dir, '/');
        if (!is_dir) slash ? (void)(*slash = '\0') : (void)snprintf(dir, n, ".");
        st = forge_read_file(fn, file, &text, &len);
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
        return tok_bad(fn, "the file is not a JSON object");
    }
    forge_tokenizer *t = calloc(1, sizeof *t);
    if (t) tok_byte_tables(t);
    if (!t) st = out_of_memory(fn);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (st == FORGE_OK && added && !cJSON_IsArray(added)) st = tok_bad(fn, "added_tokens is not an array");
    if (st == FORGE_OK) st = tok_load_model(t, fn, cJSON_GetObjectItemCaseSensitive(root, "model"), added);
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

/* SPDX-License-Identifier: Apache-2.0 */
/* tok_encode.c: text to ids, as Hugging Face's tokenizers runs a
 * tokenizer.json: added tokens found in the raw text (those not
 * `normalized`), each stretch between them normalised (tok_normalize.c)
 * and searched for the `normalized` added tokens, the rest pre-tokenised
 * into pieces and each piece through BPE (tok_pretok.c), and the
 * post-processor's special tokens around the whole. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "error.h"
#include "tokenizer.h"
#include "utf8.h"

/* Unicode White_Space, as Rust's char::is_whitespace (lstrip, rstrip). */
static int space_at(const char *s, size_t len, size_t at, int before, size_t *width) {
    utf8proc_int32_t c;
    size_t w;
    if (before) { /* the character that ends at `at` */
        size_t b = at;
        while (b > 0 && ((unsigned char)s[b - 1] & 0xc0) == 0x80) b--;
        if (b == 0) return 0;
        b--;
        w = at - b;
        if (utf8proc_iterate((const utf8proc_uint8_t *)s + b, (utf8proc_ssize_t)w, &c) < 0) return 0;
    } else {
        const utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + at, (utf8proc_ssize_t)(len - at), &c);
        if (n <= 0) return 0;
        w = (size_t)n;
    }
    const utf8proc_category_t cat = utf8proc_category(c);
    *width = w;
    return (c >= 9 && c <= 13) || c == 0x85 || cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
           cat == UTF8PROC_CATEGORY_ZP;
}

/* A letter, number or '_' next to a single_word token keeps it from matching. */
static int word_char_at(const char *s, size_t len, size_t at, int before) {
    size_t b = at;
    if (before) {
        if (at == 0) return 0;
        for (b = at - 1; b > 0 && ((unsigned char)s[b] & 0xc0) == 0x80; b--) {}
    } else if (at >= len) {
        return 0;
    }
    utf8proc_int32_t c;
    if (utf8proc_iterate((const utf8proc_uint8_t *)s + b, (utf8proc_ssize_t)(len - b), &c) < 0) return 0;
    const utf8proc_category_t cat = utf8proc_category(c);
    return c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

/* The leftmost, then longest, added token of the pass (normalized or not)
 * in s from `from`: its index, and [*m0, *m1) with lstrip's and rstrip's
 * whitespace; -1 when none. */
static int find_added(const forge_tokenizer *t, int normalized, const char *s, size_t len, size_t from, size_t *m0,
                      size_t *m1) {
    for (size_t at = from; at < len; at++) {
        const unsigned char c = (unsigned char)s[at];
        int best = -1;
        for (int o = t->first[normalized][c]; o < t->first[normalized][c + 1] && best < 0; o++) { /* longest first */
            const tok_added *a = &t->added[t->order[o]];
            if ((size_t)a->len > len - at || memcmp(s + at, a->content, (size_t)a->len) != 0) continue;
            if (a->single_word && (word_char_at(s, len, at, 1) || word_char_at(s, len, at + (size_t)a->len, 0))) continue;
            best = t->order[o];
        }
        if (best < 0) continue;
        const tok_added *a = &t->added[best];
        size_t b = at, e = at + (size_t)a->len, w;
        while (a->lstrip && b > from && space_at(s, len, b, 1, &w)) b -= w;
        while (a->rstrip && e < len && space_at(s, len, e, 0, &w)) e += w;
        *m0 = b, *m1 = e;
        return best;
    }
    return -1;
}

/* The ids of s, its added tokens of this pass apart; the stretches between
 * them go on to the next step (normalise and the second pass, or
 * pre-tokenise). head: s begins the text. */
static forge_status encode_stretch(tok_encoder *e, int pass, const char *s, size_t len, int head) {
    const forge_tokenizer *t = e->t;
    size_t at = 0, m0, m1;
    forge_status st = FORGE_OK;
    while (st == FORGE_OK && at <= len) {
        const int k = find_added(t, pass, s, len, at, &m0, &m1);
        const size_t end = k >= 0 ? m0 : len;
        if (end > at) {
            if (pass == 0) { /* the raw text: normalise, then the normalized added tokens */
                char *norm;
                size_t norm_len;
                int owned;
                st = tok_normalize(t, e->fn, e->md, s + at, end - at, &norm, &norm_len, &owned);
                if (st == FORGE_OK) st = encode_stretch(e, 1, norm, norm_len, head && at == 0);
                if (owned) free(norm);
            } else {
                st = tok_pre_tokenize(e, s + at, end - at, head && at == 0);
            }
        }
        if (k < 0) break;
        if (st == FORGE_OK && !tok_ids_push(e->out, t->added[k].id))
            st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", e->fn);
        at = m1;
    }
    return st;
}

forge_status forge_tokenizer_encode(const forge_tokenizer *t, const char *text, size_t len, int add_special,
                                    int32_t *ids, size_t cap, size_t *n_ids) {
    static const char fn[] = "forge_tokenizer_encode";
    FORGE_CHECK_NAMED(t, "tokenizer", fn);
    FORGE_CHECK_NOT_NULL(n_ids, fn);
    if (len > 0) FORGE_CHECK_NOT_NULL(text, fn);
    if (cap > 0) FORGE_CHECK_NOT_NULL(ids, fn);
    const size_t bad = forge_utf8_valid_len(text, len);
    if (bad < len)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: text is not valid UTF-8 at byte %zu", fn, bad);
    tok_ids body = {0}, all = {0};
    tok_encoder e = {t, fn, pcre2_match_data_create(1, NULL), {0}, NULL, &body};
    forge_status st = e.md ? encode_stretch(&e, 0, text, len, 1) : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    pcre2_match_data_free(e.md);
    free(e.spans.v);
    tok_cache_free(e.cache);
    int ok = 1;
    if (st == FORGE_OK && add_special && t->single) {
        for (int i = 0; ok && i < t->n_single; i++) {
            const tok_template_item *it = &t->single[i];
            if (!it->ids)
                for (size_t j = 0; ok && j < body.n; j++) ok = tok_ids_push(&all, body.ids[j]);
            for (int j = 0; ok && j < it->n_ids; j++) ok = tok_ids_push(&all, it->ids[j]);
        }
    } else if (st == FORGE_OK) {
        all = body, body = (tok_ids){0};
    }
    if (st == FORGE_OK && !ok) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == FORGE_OK) {
        *n_ids = all.n;
        if (all.n > cap)
            st = forge_fail(FORGE_ERR_CAPACITY, "%s: the text is %zu tokens, past the %zu ids of the buffer", fn, all.n,
                            cap);
        else if (all.n > 0)
            memcpy(ids, all.ids, sizeof *ids * all.n);
    }
    free(body.ids);
    free(all.ids);
    return st;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* tok_normalize.c: the normalisers of a tokenizer.json, in order, over one
 * stretch of text: NFC and NFKC (utf8proc), Lowercase (Rust's
 * char::to_lowercase, a character at a time), Prepend, and Replace (every
 * match of a literal or a regex, left to right). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "error.h"
#include "tokenizer.h"

/* Each character's lowercase. Rust's to_lowercase is Unicode's full
 * mapping, which differs from the simple one (utf8proc's) in one character:
 * U+0130 becomes "i" and U+0307. A character grows from 2 bytes to 3 at
 * most. */
static char *lowercase(const char *s, size_t len, size_t *out_len) {
    char *out = len < SIZE_MAX / 2 ? malloc(len / 2 * 3 + 4) : NULL;
    if (!out) return NULL;
    size_t n = 0;
    for (size_t at = 0; at < len;) {
        utf8proc_int32_t c;
        const utf8proc_ssize_t w = utf8proc_iterate((const utf8proc_uint8_t *)s + at, (utf8proc_ssize_t)(len - at), &c);
        at += w > 0 ? (size_t)w : 1; /* the text is valid UTF-8: w > 0 */
        if (c == 0x130) {
            memcpy(out + n, "i\xcc\x87", 3);
            n += 3;
        } else {
            n += (size_t)utf8proc_encode_char(utf8proc_tolower(c), (utf8proc_uint8_t *)out + n);
        }
    }
    *out_len = n;
    return out;
}

forge_status tok_normalize(const forge_tokenizer *t, const char *fn, pcre2_match_data *md, const char *s, size_t len,
                           char **out, size_t *out_len, int *owned) {
    *out = (char *)s, *out_len = len, *owned = 0;
    for (int k = 0; k < t->n_norms; k++) {
        const tok_norm *nm = &t->norms[k];
        char *next = NULL;
        size_t next_len = 0;
        if (nm->kind == NORM_NFC || nm->kind == NORM_NFKC) {
            utf8proc_uint8_t *mapped = NULL;
            const int options = UTF8PROC_STABLE | UTF8PROC_COMPOSE | (nm->kind == NORM_NFKC ? UTF8PROC_COMPAT : 0);
            const utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)*out, (utf8proc_ssize_t)*out_len, &mapped,
                                                    (utf8proc_option_t)options);
            if (n < 0) {
                if (*owned) free(*out), *owned = 0;
                return forge_fail(n == UTF8PROC_ERROR_NOMEM ? FORGE_ERR_OUT_OF_MEMORY : FORGE_ERR_INVALID_ARGUMENT,
                                  "%s: normalizing the text: %s", fn, utf8proc_errmsg(n));
            }
            next = (char *)mapped, next_len = (size_t)n;
        } else if (nm->kind == NORM_LOWERCASE) {
            next = lowercase(*out, *out_len, &next_len);
        } else if (nm->kind == NORM_PREPEND) { /* to text that is not empty */
            if (*out_len == 0) continue;
            if ((next = malloc(*out_len + (size_t)nm->text_len + 1))) {
                memcpy(next, nm->text, (size_t)nm->text_len);
                memcpy(next + nm->text_len, *out, *out_len);
                next_len = *out_len + (size_t)nm->text_len;
            }
        } else {
            next = tok_replace(nm->re, *out, *out_len, nm->text, (size_t)nm->text_len, md, &next_len);
        }
        if (*owned) free(*out);
        *out = next, *out_len = next_len, *owned = next != NULL;
        if (!next) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    return FORGE_OK;
}

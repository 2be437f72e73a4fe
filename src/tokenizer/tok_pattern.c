/* SPDX-License-Identifier: Apache-2.0 */
/* tok_pattern.c: the tokenizer's patterns, run by PCRE2: compiled (to
 * machine code where PCRE2's JIT can), a text cut into the matches and the
 * gaps between them (Split, Digits, Punctuation, Metaspace's split), and
 * every match replaced (Replace, as a normaliser and as a decoder). The
 * texts are valid UTF-8, checked once where they come in (the text to
 * encode, the vocabulary at load): a check at every match would cost the
 * whole subject each time. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

forge_status tok_compile(const char *fn, const char *what, const char *pattern, size_t len, int literal,
                         pcre2_code **out) {
    int err;
    PCRE2_SIZE at;
    /* PCRE2 takes no UCP with LITERAL: a literal has no classes to widen */
    *out = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP), &err, &at, NULL);
    if (*out) {
        /* where the JIT cannot, matching interprets the pattern: same results */
        (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
        return FORGE_OK;
    }
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    return forge_fail(FORGE_ERR_FORMAT, "%s: the %s's pattern does not compile at offset %zu: %s", fn, what,
                      (size_t)at, (const char *)msg);
}

static int spans_add(tok_spans *sp, size_t start, size_t end, int match) {
    if (sp->n == sp->cap) {
        const size_t cap = sp->cap ? 2 * sp->cap : 32;
        tok_span *grown = realloc(sp->v, sizeof *grown * cap);
        if (!grown) return 0;
        sp->v = grown, sp->cap = cap;
    }
    sp->v[sp->n++] = (tok_span){start, end, match};
    return 1;
}

int tok_find_spans(const pcre2_code *re, const char *s, size_t len, pcre2_match_data *md, tok_spans *sp) {
    size_t at = 0, gap = 0;
    int ok = 1;
    sp->n = 0;
    while (ok && at <= len && pcre2_match(re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK, md, NULL) >= 0) {
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* an empty match splits nothing: search on from the next character */
            at = ov[0] + 1;
            while (at < len && ((unsigned char)s[at] & 0xc0) == 0x80) at++;
            continue;
        }
        if (ov[0] > gap) ok = spans_add(sp, gap, ov[0], 0);
        ok = ok && spans_add(sp, ov[0], ov[1], 1);
        gap = at = ov[1];
    }
    return ok && (len <= gap || spans_add(sp, gap, len, 0));
}

char *tok_replace(const pcre2_code *re, const char *s, size_t len, const char *to, size_t to_len,
                  pcre2_match_data *md, size_t *out_len) {
    tok_spans sp = {0};
    if (!tok_find_spans(re, s, len, md, &sp)) {
        free(sp.v);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < sp.n; i++) n += sp.v[i].match ? to_len : sp.v[i].end - sp.v[i].start;
    char *out = malloc(n + 1);
    if (out) {
        n = 0;
        for (size_t i = 0; i < sp.n; i++) {
            const tok_span x = sp.v[i];
            const char *from = x.match ? to : s + x.start;
            const size_t k = x.match ? to_len : x.end - x.start;
            memcpy(out + n, from, k);
            n += k;
        }
        out[n] = '\0';
        *out_len = n;
    }
    free(sp.v);
    return out;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* tok_encode.c: text to ids, as Hugging Face's tokenizers runs a
 * tokenizer.json: added tokens found in the raw text (those not
 * `normalized`), each stretch between them normalised and searched for the
 * `normalized` added tokens, the rest pre-tokenised into pieces (Split by
 * PCRE2, ByteLevel's byte alphabet), each piece through BPE, and the
 * post-processor's special tokens around the whole. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "error.h"
#include "tokenizer.h"
#include "utf8.h"

/* Pieces as one byte buffer: piece i is bytes[start[i] .. start[i + 1]). */
typedef struct {
    char *bytes;
    size_t len, cap;
    size_t *start;
    int n, cap_n;
} pieces;

static int pieces_add(pieces *p, const char *s, size_t len) {
    if (len == 0) return 1; /* empty pieces are dropped, as Hugging Face does */
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + len) cap *= 2;
        char *grown = realloc(p->bytes, cap);
        if (!grown) return 0;
        p->bytes = grown, p->cap = cap;
    }
    if (p->n + 2 > p->cap_n) {
        const int cap = p->cap_n ? 2 * p->cap_n : 64;
        size_t *grown = realloc(p->start, sizeof *grown * (size_t)cap);
        if (!grown) return 0;
        p->start = grown, p->cap_n = cap;
    }
    if (p->n == 0) p->start[0] = 0;
    memcpy(p->bytes + p->len, s, len);
    p->len += len;
    p->start[++p->n] = p->len;
    return 1;
}

static void pieces_free(pieces *p) {
    free(p->bytes);
    free(p->start);
    memset(p, 0, sizeof *p);
}

typedef struct {
    size_t start, end;
    int delim;
} span;

/* s as spans, the pattern's matches and the gaps between them (empty ones
 * left out), a match's delim flag flipped when inverted; NULL on out of
 * memory. The text's UTF-8 was checked once (forge_tokenizer_encode): a
 * check on every match would cost the whole subject each time. */
static span *spans_of(const tok_pre *pre, const char *s, size_t len, pcre2_match_data *md, int *n) {
    span *sp = malloc(sizeof *sp * (2 * len + 2));
    if (!sp) return NULL;
    size_t at = 0, gap = 0;
    *n = 0;
    while (at <= len && pcre2_match(pre->re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK, md, NULL) >= 0) {
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* an empty match splits nothing: search on from the next character */
            at = ov[0] + 1;
            while (at < len && ((unsigned char)s[at] & 0xc0) == 0x80) at++;
            continue;
        }
        if (ov[0] > gap) sp[(*n)++] = (span){gap, ov[0], pre->invert};
        sp[(*n)++] = (span){ov[0], ov[1], !pre->invert};
        gap = at = ov[1];
    }
    if (len > gap) sp[(*n)++] = (span){gap, len, pre->invert};
    return sp;
}

/* Splits s as Hugging Face's Split does, its SplitDelimiterBehavior folded
 * over the spans as there; 0 on out of memory. */
static int split_piece(const tok_pre *pre, const char *s, size_t len, pcre2_match_data *md, pieces *out) {
    int n, kept = 0; /* the spans that become pieces, merged in place: sp[0 .. kept) */
    span *sp = spans_of(pre, s, len, md, &n);
    if (!sp) return 0;
    if (pre->how == SPLIT_MERGED_NEXT) {
        /* backwards: a delimiter joins the span after it, unless that is
         * a delimiter too; kept from the end of sp, then moved down */
        int previous_delim = 0, top = n;
        for (int i = n - 1; i >= 0; i--) {
            if (sp[i].delim && !previous_delim && top < n) sp[top].start = sp[i].start;
            else sp[--top] = sp[i];
            previous_delim = sp[i].delim;
        }
        memmove(sp, sp + top, sizeof *sp * (size_t)(n - top));
        kept = n - top;
    } else {
        for (int i = 0, previous_delim = 0; i < n; i++) {
            const span x = sp[i];
            if (pre->how == SPLIT_REMOVED && x.delim) continue;
            if ((pre->how == SPLIT_MERGED_PREVIOUS && x.delim && !previous_delim && kept > 0) ||
                (pre->how == SPLIT_CONTIGUOUS && kept > 0 && x.delim == previous_delim))
                sp[kept - 1].end = x.end;
            else
                sp[kept++] = x;
            previous_delim = x.delim;
        }
    }
    int ok = 1;
    for (int i = 0; ok && i < kept; i++) ok = pieces_add(out, s + sp[i].start, sp[i].end - sp[i].start);
    free(sp);
    return ok;
}

/* GPT-2's alphabet: the printable bytes (33..126, 161..172, 174..255) are
 * their own code points; the others, in order, take 256 on. */
void tok_byte_tables(forge_tokenizer *t) {
    for (int cp = 0; cp < 324; cp++) t->char_byte[cp] = -1;
    for (int b = 0, next = 256; b < 256; b++) {
        const int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        const int cp = printable ? b : next++;
        t->char_byte[cp] = (short)b;
        if (cp < 0x80) {
            t->byte_char[b][0] = (char)cp, t->byte_char_len[b] = 1;
        } else {
            t->byte_char[b][0] = (char)(0xc0 | (cp >> 6));
            t->byte_char[b][1] = (char)(0x80 | (cp & 0x3f));
            t->byte_char_len[b] = 2;
        }
    }
}

/* ByteLevel: a space before the piece if it lacks one (add_prefix_space),
 * the GPT-2 pattern's split (use_regex), then every byte as its character. */
static int byte_level(const forge_tokenizer *t, const tok_pre *pre, const char *s, size_t len, pcre2_match_data *md,
                      pieces *out) {
    char *spaced = NULL;
    if (pre->add_prefix_space && (len == 0 || s[0] != ' ')) {
        if (!(spaced = malloc(len + 1))) return 0;
        spaced[0] = ' ';
        memcpy(spaced + 1, s, len);
        s = spaced, len++;
    }
    pieces split = {0};
    const tok_pre isolated = {PRE_SPLIT, pre->re, SPLIT_ISOLATED, 0, 0};
    int ok = pre->re ? split_piece(&isolated, s, len, md, &split) : pieces_add(&split, s, len);
    char *mapped = malloc(2 * len + 1);
    ok = ok && mapped;
    for (int i = 0; ok && i < split.n; i++) {
        size_t n = 0;
        for (size_t j = split.start[i]; j < split.start[i + 1]; j++) {
            const unsigned char b = (unsigned char)split.bytes[j];
            memcpy(mapped + n, t->byte_char[b], t->byte_char_len[b]);
            n += t->byte_char_len[b];
        }
        ok = pieces_add(out, mapped, n);
    }
    free(mapped);
    pieces_free(&split);
    free(spaced);
    return ok;
}

/* Runs the pre-tokenizers over one stretch of normalised text and BPE over
 * the pieces, appending their ids. */
static forge_status pre_tokenize(const forge_tokenizer *t, const char *fn, const char *s, size_t len, tok_ids *out) {
    pieces cur = {0}, next = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int ok = md && pieces_add(&cur, s, len);
    for (int k = 0; ok && k < t->n_pres; k++) {
        const tok_pre *pre = &t->pres[k];
        for (int i = 0; ok && i < cur.n; i++) {
            const char *p = cur.bytes + cur.start[i];
            const size_t pl = cur.start[i + 1] - cur.start[i];
            ok = pre->kind == PRE_SPLIT ? split_piece(pre, p, pl, md, &next) : byte_level(t, pre, p, pl, md, &next);
        }
        pieces_free(&cur);
        cur = next;
        memset(&next, 0, sizeof next);
    }
    for (int i = 0; ok && i < cur.n; i++)
        ok = tok_bpe(t, cur.bytes + cur.start[i], (int)(cur.start[i + 1] - cur.start[i]), out);
    pieces_free(&cur);
    pieces_free(&next);
    pcre2_match_data_free(md);
    return ok ? FORGE_OK : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
}

/* The first occurrence of pat (m bytes, m > 0) in s[0 .. n), or NULL. */
static const char *find(const char *s, size_t n, const char *pat, size_t m) {
    for (const char *p = s; n >= m && (p = memchr(p, pat[0], n - m + 1 - (size_t)(p - s))); p++)
        if (memcmp(p, pat, m) == 0) return p;
    return NULL;
}

/* The normalisers in order over s; *out is malloc'd (or s itself, when
 * there are none: *owned 0). */
static forge_status normalize(const forge_tokenizer *t, const char *fn, const char *s, size_t len, char **out,
                              size_t *out_len, int *owned) {
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
        } else if (nm->kind == NORM_PREPEND) { /* to text that is not empty */
            if (*out_len == 0) continue;
            if ((next = malloc(*out_len + (size_t)nm->from_len + 1))) {
                memcpy(next, nm->from, (size_t)nm->from_len);
                memcpy(next + nm->from_len, *out, *out_len);
                next_len = *out_len + (size_t)nm->from_len;
            }
        } else { /* Replace: every occurrence of the pattern, left to right */
            size_t count = 0;
            for (const char *p = *out; (p = find(p, *out_len - (size_t)(p - *out), nm->from, (size_t)nm->from_len));
                 p += nm->from_len)
                count++;
            if ((next = malloc(*out_len + count * (size_t)nm->to_len + 1))) {
                const char *p = *out, *end = *out + *out_len;
                for (const char *hit; (hit = find(p, (size_t)(end - p), nm->from, (size_t)nm->from_len)); p = hit + nm->from_len) {
                    memcpy(next + next_len, p, (size_t)(hit - p)), next_len += (size_t)(hit - p);
                    memcpy(next + next_len, nm->to, (size_t)nm->to_len), next_len += (size_t)nm->to_len;
                }
                memcpy(next + next_len, p, (size_t)(end - p)), next_len += (size_t)(end - p);
            }
        }
        if (*owned) free(*out);
        *out = next, *out_len = next_len, *owned = next != NULL;
        if (!next) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    return FORGE_OK;
}

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
 * pre-tokenise). */
static forge_status encode_stretch(const forge_tokenizer *t, const char *fn, int pass, const char *s, size_t len,
                                   tok_ids *out) {
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
                st = normalize(t, fn, s + at, end - at, &norm, &norm_len, &owned);
                if (st == FORGE_OK) st = encode_stretch(t, fn, 1, norm, norm_len, out);
                if (owned) free(norm);
            } else {
                st = pre_tokenize(t, fn, s + at, end - at, out);
            }
        }
        if (k < 0) break;
        if (st == FORGE_OK && !tok_ids_push(out, t->added[k].id))
            st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        at = m1;
    }
    return st;
}

/* The first byte that is not valid UTF-8, or len. */
static size_t utf8_error_at(const char *s, size_t len) {
    for (size_t at = 0, w; at < len; at += w)
        if ((w = forge_utf8_char((const unsigned char *)s + at, len - at, NULL)) == 0) return at;
    return len;
}

forge_status forge_tokenizer_encode(const forge_tokenizer *t, const char *text, size_t len, int add_special,
                                    int32_t *ids, size_t cap, size_t *n_ids) {
    static const char fn[] = "forge_tokenizer_encode";
    FORGE_CHECK_NAMED(t, "tokenizer", fn);
    FORGE_CHECK_NOT_NULL(n_ids, fn);
    if (len > 0) FORGE_CHECK_NOT_NULL(text, fn);
    if (cap > 0) FORGE_CHECK_NOT_NULL(ids, fn);
    const size_t bad = utf8_error_at(text, len);
    if (bad < len)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: text is not valid UTF-8 at byte %zu", fn, bad);
    tok_ids body = {0}, all = {0};
    forge_status st = encode_stretch(t, fn, 0, text, len, &body);
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

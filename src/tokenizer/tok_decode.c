/* SPDX-License-Identifier: Apache-2.0 */
/* tok_decode.c: ids to text, as Hugging Face's tokenizers decodes: each
 * id's token (special ones left out on request) through the decoders in
 * order, each taking the list of strings the one before made, and the
 * strings joined (without a decoder, with spaces). ByteLevel turns each
 * token's characters back into bytes (or keeps the token's own bytes when a
 * character is not of its alphabet, as for DeepSeek's
 * <｜begin▁of▁sentence｜>) and reads them all as one UTF-8 string, each
 * maximal invalid subpart U+FFFD (Rust's String::from_utf8_lossy);
 * ByteFallback turns runs of <0xNN> tokens into their bytes' text (U+FFFD a
 * byte when they are not UTF-8); Metaspace turns its mark back into
 * spaces (dropping it from the first token, unless its prepend scheme is
 * "never"); Replace, Fuse and Strip do what their names say. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"
#include "utf8.h"

typedef struct {
    char *bytes;
    size_t len, cap;
} buffer;

static int put(buffer *b, const void *s, size_t n) {
    if (n == 0) return 1; /* an empty buffer may have no bytes yet */
    if (!tok_bytes_reserve(&b->bytes, &b->cap, b->len + n, 256)) return 0;
    memcpy(b->bytes + b->len, s, n);
    b->len += n;
    return 1;
}

/* One token through the ByteLevel decoder. */
static int byte_level_token(const forge_tokenizer *tok, buffer *out, const char *t, int len) {
    char small[256], *bytes = len <= (int)sizeof small ? small : malloc((size_t)len);
    if (!bytes) return 0;
    int n = 0, whole = 1;
    for (int i = 0; i < len && whole;) {
        const unsigned char c = (unsigned char)t[i];
        unsigned cp = c;
        int w = 1;
        if (c >= 0xc0 && c < 0xe0 && i + 1 < len) cp = (c & 0x1fu) << 6 | ((unsigned char)t[i + 1] & 0x3fu), w = 2;
        else if (c >= 0x80) cp = 0x10000; /* three bytes or more: outside the alphabet */
        const int b = cp < 324 ? tok->char_byte[cp] : -1;
        if (b < 0) whole = 0;
        else bytes[n++] = (char)b;
        i += w;
    }
    const int ok = whole ? put(out, bytes, (size_t)n) : put(out, t, (size_t)len);
    if (bytes != small) free(bytes);
    return ok;
}

/* bytes as UTF-8 into out, each maximal invalid subpart as U+FFFD. */
static int lossy(buffer *out, const char *bytes, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t bad = 0;
        const size_t w = forge_utf8_char((const unsigned char *)bytes + i, n - i, &bad);
        if (w > 0 ? !put(out, bytes + i, w) : !put(out, "\xef\xbf\xbd", 3)) return 0;
        i += w > 0 ? w : bad;
    }
    return 1;
}

/* A list of strings, each its own buffer: a decoder's input and output. */
typedef struct {
    buffer *v;
    int n, cap;
} strings;

static buffer *strings_add(strings *l) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 16;
        buffer *grown = realloc(l->v, sizeof *grown * (size_t)cap);
        if (!grown) return NULL;
        l->v = grown, l->cap = cap;
    }
    l->v[l->n] = (buffer){0};
    return &l->v[l->n++];
}

static void strings_free(strings *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].bytes);
    free(l->v);
    *l = (strings){0};
}

/* The byte of a <0xNN> token, or -1. */
static int fallback_byte(const buffer *b) {
    if (b->len != 6 || memcmp(b->bytes, "<0x", 3) != 0 || b->bytes[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        const char c = b->bytes[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ByteFallback's run of bytes as one string: the text, or U+FFFD a byte. */
static int flush_bytes(strings *out, buffer *run) {
    if (run->len == 0) return 1;
    const int whole = forge_utf8_valid_len(run->bytes, run->len) == run->len;
    buffer *b = strings_add(out);
    int ok = b != NULL;
    for (size_t i = 0; ok && !whole && i < run->len; i++) ok = put(b, "\xef\xbf\xbd", 3);
    if (ok && whole) ok = put(b, run->bytes, run->len);
    run->len = 0;
    return ok;
}

/* One decoder over the list: in, then out (in is freed). */
static int apply(const forge_tokenizer *t, const tok_dec *d, pcre2_match_data *md, strings *in, strings *out) {
    int ok = 1;
    buffer run = {0}, all = {0};
    for (int i = 0; ok && i < in->n; i++) {
        const buffer *x = &in->v[i];
        const char *xb = x->bytes ? x->bytes : ""; /* an empty string may have no bytes */
        buffer *y;
        switch (d->kind) {
        case DEC_BYTE_LEVEL: ok = byte_level_token(t, &all, xb, (int)x->len); break;
        case DEC_FUSE: ok = put(&all, xb, x->len); break;
        case DEC_BYTE_FALLBACK: {
            const int b = fallback_byte(x);
            if (b >= 0) {
                const unsigned char c = (unsigned char)b;
                ok = put(&run, &c, 1);
                break;
            }
            ok = flush_bytes(out, &run) && (y = strings_add(out)) && put(y, xb, x->len);
            break;
        }
        case DEC_REPLACE: {
            size_t n;
            char *replaced = tok_replace(d->re, xb, x->len, d->text, (size_t)d->text_len, md, &n);
            ok = replaced && (y = strings_add(out)) && put(y, replaced, n);
            free(replaced);
            break;
        }
        case DEC_METASPACE: { /* each mark a space, or nothing in the first token */
            const size_t m = (size_t)d->text_len;
            ok = (y = strings_add(out)) != NULL;
            for (size_t at = 0; ok && at < x->len;) {
                if (x->len - at >= m && memcmp(xb + at, d->text, m) == 0) {
                    ok = (i == 0 && d->strip_first) || put(y, " ", 1);
                    at += m;
                } else {
                    ok = put(y, xb + at, 1), at++;
                }
            }
            break;
        }
        case DEC_STRIP: { /* up to start copies of the content off the front, stop off the back */
            size_t b = 0, e = x->len;
            for (int k = 0; k < d->start && e - b >= (size_t)d->text_len && memcmp(xb + b, d->text, (size_t)d->text_len) == 0; k++)
                b += (size_t)d->text_len;
            for (int k = 0; k < d->stop && e - b >= (size_t)d->text_len &&
                            memcmp(xb + e - d->text_len, d->text, (size_t)d->text_len) == 0; k++)
                e -= (size_t)d->text_len;
            ok = (y = strings_add(out)) && put(y, xb + b, e - b);
            break;
        }
        }
    }
    if (ok && d->kind == DEC_BYTE_FALLBACK) ok = flush_bytes(out, &run);
    if (ok && d->kind == DEC_BYTE_LEVEL) { /* one string: the bytes as lossy UTF-8 */
        buffer *y = strings_add(out);
        ok = y && lossy(y, all.bytes, all.len);
    }
    if (ok && d->kind == DEC_FUSE) {
        buffer *y = strings_add(out);
        ok = y && put(y, all.bytes, all.len);
    }
    free(run.bytes);
    free(all.bytes);
    strings_free(in);
    return ok;
}

forge_status tok_decode_text(const forge_tokenizer *t, const char *fn, const int32_t *ids, size_t n, int skip_special,
                            char **text, size_t *len) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab.n || !t->vocab.piece[ids[i]])
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: ids[%zu] = %d is no token of the vocabulary", fn, i,
                              (int)ids[i]);
    strings tokens = {0}, next = {0};
    buffer out = {0};
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++) {
        if (skip_special && t->special[ids[i]]) continue;
        buffer *b = strings_add(&tokens);
        ok = b && put(b, t->vocab.piece[ids[i]], (size_t)t->vocab.len[ids[i]]);
    }
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    ok = ok && md;
    for (int k = 0; ok && k < t->n_decs; k++) {
        ok = apply(t, &t->decs[k], md, &tokens, &next);
        tokens = next, next = (strings){0};
    }
    /* the strings joined: with spaces where there is no decoder */
    for (int i = 0; ok && i < tokens.n; i++)
        ok = (t->n_decs > 0 || i == 0 || put(&out, " ", 1)) && put(&out, tokens.v[i].bytes, tokens.v[i].len);
    ok = ok && put(&out, "", 1); /* the NUL */
    pcre2_match_data_free(md);
    strings_free(&tokens);
    strings_free(&next);
    if (!ok) {
        free(out.bytes);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    *text = out.bytes, *len = out.len - 1;
    return FORGE_OK;
}

forge_status forge_tokenizer_decode(const forge_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                                    char *text, size_t cap, size_t *len) {
    static const char fn[] = "forge_tokenizer_decode";
    FORGE_CHECK_NAMED(t, "tokenizer", fn);
    FORGE_CHECK_NOT_NULL(len, fn);
    if (n > 0) FORGE_CHECK_NOT_NULL(ids, fn);
    if (cap > 0) FORGE_CHECK_NOT_NULL(text, fn);
    char *all;
    size_t all_len;
    forge_status st = tok_decode_text(t, fn, ids, n, skip_special, &all, &all_len);
    if (st != FORGE_OK) return st;
    *len = all_len;
    if (all_len + 1 > cap)
        st = forge_fail(FORGE_ERR_CAPACITY, "%s: the text is %zu bytes and its NUL, past the buffer's %zu", fn, all_len,
                        cap);
    else
        memcpy(text, all, all_len + 1);
    free(all);
    return st;
}

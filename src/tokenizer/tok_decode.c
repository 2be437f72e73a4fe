/* SPDX-License-Identifier: Apache-2.0 */
/* tok_decode.c: ids to text, as Hugging Face's tokenizers decodes: each
 * id's token (special ones left out on request) through the decoder, then
 * the bytes read as UTF-8 with each maximal invalid subpart replaced by
 * U+FFFD (Rust's String::from_utf8_lossy). The ByteLevel decoder turns each
 * token's characters back into bytes, or keeps the token's own bytes when a
 * character is not of its alphabet (an added token such as DeepSeek's
 * <｜begin▁of▁sentence｜>). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

typedef struct {
    char *bytes;
    size_t len, cap;
} buffer;

static int put(buffer *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->bytes, cap);
        if (!grown) return 0;
        b->bytes = grown, b->cap = cap;
    }
    memcpy(b->bytes + b->len, s, n);
    b->len += n;
    return 1;
}

/* The byte whose ByteLevel character is the code point cp, or -1. */
static int byte_of(unsigned cp) {
    static short table[324];
    static int made;
    if (!made) { /* the same values from every thread that makes it */
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) {
            char c[2];
            const int n = tok_byte_char((unsigned char)b, c);
            const unsigned u = n == 1 ? (unsigned char)c[0] : ((unsigned char)c[0] & 0x1fu) << 6 | ((unsigned char)c[1] & 0x3fu);
            table[u] = (short)b;
        }
        made = 1;
    }
    return cp < 324 ? table[cp] : -1;
}

/* One token through the ByteLevel decoder. */
static int byte_level_token(buffer *out, const char *t, int len) {
    char small[256], *bytes = len <= (int)sizeof small ? small : malloc((size_t)len);
    if (!bytes) return 0;
    int n = 0, whole = 1;
    for (int i = 0; i < len && whole;) {
        const unsigned char c = (unsigned char)t[i];
        unsigned cp = c;
        int w = 1;
        if (c >= 0xc0 && c < 0xe0 && i + 1 < len) cp = (c & 0x1fu) << 6 | ((unsigned char)t[i + 1] & 0x3fu), w = 2;
        else if (c >= 0x80) cp = 0x10000; /* three bytes or more: outside the alphabet */
        const int b = byte_of(cp);
        if (b < 0) whole = 0;
        else bytes[n++] = (char)b;
        i += w;
    }
    const int ok = whole ? put(out, bytes, (size_t)n) : put(out, t, (size_t)len);
    if (bytes != small) free(bytes);
    return ok;
}

/* The length of the valid UTF-8 sequence at s (1 to 4), or 0; and in
 * *bad the bytes of the maximal invalid subpart there (1 to 3). */
static int utf8_seq(const unsigned char *s, size_t n, int *bad) {
    const unsigned char c = s[0];
    int need, lo = 0x80, hi = 0xbf;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else return *bad = 1, 0;
    for (int i = 1; i <= need; i++) {
        const int lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if ((size_t)i >= n || s[i] < lo_i || s[i] > hi_i) return *bad = i, 0;
    }
    return need + 1;
}

/* bytes as UTF-8 into out, each maximal invalid subpart as U+FFFD. */
static int lossy(buffer *out, const char *bytes, size_t n) {
    for (size_t i = 0; i < n;) {
        int bad = 0;
        const int w = utf8_seq((const unsigned char *)bytes + i, n - i, &bad);
        if (w > 0 ? !put(out, bytes + i, (size_t)w) : !put(out, "\xef\xbf\xbd", 3)) return 0;
        i += w > 0 ? (size_t)w : (size_t)bad;
    }
    return 1;
}

forge_status forge_tokenizer_decode(const forge_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                                    char *text, size_t cap, size_t *len) {
    static const char fn[] = "forge_tokenizer_decode";
    FORGE_CHECK_NAMED(t, "tokenizer", fn);
    FORGE_CHECK_NOT_NULL(len, fn);
    if (n > 0) FORGE_CHECK_NOT_NULL(ids, fn);
    if (cap > 0) FORGE_CHECK_NOT_NULL(text, fn);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab.n || !t->vocab.piece[ids[i]])
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: ids[%zu] = %d is no token of the vocabulary", fn, i,
                              (int)ids[i]);
    buffer raw = {0}, out = {0};
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++) {
        const int id = ids[i];
        if (skip_special && t->special[id]) continue;
        const char *piece = t->vocab.piece[id];
        const int plen = t->vocab.len[id];
        /* without a decoder, tokenizers joins the tokens with spaces */
        ok = t->byte_level_decoder ? byte_level_token(&raw, piece, plen) : (raw.len == 0 || put(&raw, " ", 1)) && put(&raw, piece, (size_t)plen);
    }
    ok = ok && lossy(&out, raw.bytes, raw.len);
    forge_status st = ok ? FORGE_OK : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == FORGE_OK) {
        *len = out.len;
        if (out.len + 1 > cap)
            st = forge_fail(FORGE_ERR_CAPACITY, "%s: the text is %zu bytes and its NUL, past the buffer's %zu", fn,
                            out.len, cap);
        else
            memcpy(text, out.bytes ? out.bytes : "", out.len), text[out.len] = '\0';
    }
    free(raw.bytes);
    free(out.bytes);
    return st;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* tok_pretok.c: the pre-tokenisers over one stretch of normalised text,
 * each cutting every piece the one before made (Split by PCRE2, Digits and
 * Punctuation as Splits on a character class, ByteLevel's byte alphabet,
 * Metaspace's mark for spaces), then each piece through BPE. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

/* Pieces as one byte buffer: piece i is bytes[start[i] .. start[i + 1]).
 * head: piece 0 begins the text being encoded (Metaspace's "first"). */
typedef struct {
    char *bytes;
    size_t len, cap;
    size_t *start;
    int n, cap_n;
    int head;
} pieces;

static int pieces_add(pieces *p, const char *s, size_t len) {
    if (len == 0) return 1; /* empty pieces are dropped, as Hugging Face does */
    if (!tok_bytes_reserve(&p->bytes, &p->cap, p->len + len, 256)) return 0;
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

/* Splits s as Hugging Face's Split does, its SplitDelimiterBehavior folded
 * over the matches and gaps as there; *first: where the first piece made
 * starts in s (len when none). 0 on out of memory. */
static int split_piece(tok_encoder *e, const pcre2_code *re, tok_split_how how, int invert, const char *s, size_t len,
                       pieces *out, size_t *first) {
    tok_spans *sp = &e->spans;
    if (!tok_find_spans(re, s, len, e->md, sp)) return 0;
    tok_span *v = sp->v;
    size_t n = sp->n, kept = 0; /* the spans that become pieces, merged in place: v[0 .. kept) */
    for (size_t i = 0; i < n; i++) v[i].match ^= invert;
    if (how == SPLIT_MERGED_NEXT) {
        /* backwards: a delimiter joins the span after it, unless that is
         * a delimiter too; kept from the end of v, then moved down */
        size_t top = n;
        for (size_t i = n, previous = 0; i-- > 0;) {
            if (v[i].match && !previous && top < n) v[top].start = v[i].start;
            else v[--top] = v[i];
            previous = (size_t)v[i].match;
        }
        memmove(v, v + top, sizeof *v * (n - top));
        kept = n - top;
    } else {
        for (size_t i = 0, previous = 0; i < n; i++) {
            const tok_span x = v[i];
            if (how == SPLIT_REMOVED && x.match) continue;
            if ((how == SPLIT_MERGED_PREVIOUS && x.match && !previous && kept > 0) ||
                (how == SPLIT_CONTIGUOUS && kept > 0 && (size_t)x.match == previous))
                v[kept - 1].end = x.end;
            else
                v[kept++] = x;
            previous = (size_t)x.match;
        }
    }
    *first = kept > 0 ? v[0].start : len;
    int ok = 1;
    for (size_t i = 0; ok && i < kept; i++) ok = pieces_add(out, s + v[i].start, v[i].end - v[i].start);
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
static int byte_level(tok_encoder *e, const tok_pre *pre, const char *s, size_t len, pieces *out, size_t *first) {
    const forge_tokenizer *t = e->t;
    char *spaced = NULL;
    if (pre->add_prefix_space && (len == 0 || s[0] != ' ')) {
        if (!(spaced = malloc(len + 1))) return 0;
        spaced[0] = ' ';
        memcpy(spaced + 1, s, len);
        s = spaced, len++;
    }
    pieces split = {0};
    int ok = pre->re ? split_piece(e, pre->re, SPLIT_ISOLATED, 0, s, len, &split, first)
                     : (*first = 0, pieces_add(&split, s, len));
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

/* Metaspace: each ' ' as the mark, the mark before the piece if the
 * prepend scheme asks and it lacks one, then (split) a piece a mark and
 * what follows it. */
static int metaspace(tok_encoder *e, const tok_pre *pre, const char *s, size_t len, int head, pieces *out,
                     size_t *first) {
    const size_t m = (size_t)pre->mark_len;
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += s[i] == ' ';
    char *marked = malloc(len + (spaces + 1) * m);
    if (!marked) return 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') memcpy(marked + n, pre->mark, m), n += m;
        else marked[n++] = s[i];
    }
    const int prepend = pre->prepend == PREPEND_ALWAYS || (pre->prepend == PREPEND_FIRST && head);
    if (prepend && (n < m || memcmp(marked, pre->mark, m) != 0)) {
        memmove(marked + m, marked, n);
        memcpy(marked, pre->mark, m);
        n += m;
    }
    int ok;
    if (pre->re) {
        ok = split_piece(e, pre->re, SPLIT_MERGED_NEXT, 0, marked, n, out, first);
    } else {
        *first = 0;
        ok = pieces_add(out, marked, n);
    }
    free(marked);
    return ok;
}

forge_status tok_pre_tokenize(tok_encoder *e, const char *s, size_t len, int head) {
    const forge_tokenizer *t = e->t;
    pieces cur = {0}, next = {0};
    int ok = pieces_add(&cur, s, len);
    cur.head = head;
    for (int k = 0; ok && k < t->n_pres; k++) {
        const tok_pre *pre = &t->pres[k];
        for (int i = 0; ok && i < cur.n; i++) {
            const char *p = cur.bytes + cur.start[i];
            const size_t pl = cur.start[i + 1] - cur.start[i];
            const int before = next.n, piece_head = i == 0 && cur.head;
            size_t first = 0;
            switch (pre->kind) {
            case PRE_SPLIT: ok = split_piece(e, pre->re, pre->how, pre->invert, p, pl, &next, &first); break;
            case PRE_BYTE_LEVEL: ok = byte_level(e, pre, p, pl, &next, &first); break;
            case PRE_METASPACE: ok = metaspace(e, pre, p, pl, piece_head, &next, &first); break;
            }
            /* the new first piece begins the text if it begins piece 0 there */
            if (i == 0) next.head = piece_head && next.n > before && first == 0;
        }
        pieces_free(&cur);
        cur = next;
        memset(&next, 0, sizeof next);
    }
    for (int i = 0; ok && i < cur.n; i++)
        ok = tok_bpe(e, cur.bytes + cur.start[i], (int)(cur.start[i + 1] - cur.start[i]));
    pieces_free(&cur);
    pieces_free(&next);
    return ok ? FORGE_OK : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", e->fn);
}

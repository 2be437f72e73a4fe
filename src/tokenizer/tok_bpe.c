/* SPDX-License-Identifier: Apache-2.0 */
/* tok_bpe.c: the BPE model on one pre-tokenised piece. The piece starts as
 * one symbol a character; the adjacent pair of lowest merge rank (the
 * leftmost among equals) merges, until no pair has a merge. Pairs wait in
 * a binary heap and symbols form a linked list, so a word of n characters
 * costs O(n log n), not a rescan per merge (Hugging Face's word.rs works
 * the same way, and gives the same result). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int tok_ids_push(tok_ids *out, int32_t id) {
    if (out->n == out->cap) {
        const size_t cap = out->cap ? 2 * out->cap : 64;
        int32_t *ids = realloc(out->ids, sizeof *ids * cap);
        if (!ids) return 0;
        out->ids = ids, out->cap = cap;
    }
    out->ids[out->n++] = id;
    return 1;
}

typedef struct {
    int id;
    int prev, next; /* neighbours, -1 at the ends */
    int alive;
} symbol;

typedef struct {
    int rank, pos;  /* a merge of the symbol at pos with its next */
    int left, right, id;
} candidate;

static int before(const candidate *a, const candidate *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(candidate *h, int *n, candidate c) {
    int i = (*n)++;
    while (i > 0 && before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static candidate heap_pop(candidate *h, int *n) {
    const candidate top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && before(&h[child + 1], &h[child])) child++;
        if (!before(&h[child], &last)) break;
        h[i] = h[child];
        i = child;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* The merge of symbols at pos and its next, pushed when there is one. */
static void consider(const forge_tokenizer *t, const symbol *s, int pos, candidate *h, int *n) {
    const int next = s[pos].next;
    if (next < 0) return;
    const tok_merge *m = tok_merges_find(&t->merges, s[pos].id, s[next].id);
    if (m) heap_push(h, n, (candidate){m->rank, pos, s[pos].id, s[next].id, m->id});
}

/* Bytes of the UTF-8 character that starts with byte c (1 for a stray
 * continuation byte, which a piece from valid UTF-8 never starts with). */
static int char_bytes(unsigned char c) { return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1; }

int tok_bpe(const forge_tokenizer *t, const char *piece, int len, tok_ids *out) {
    if (len == 0) return 1;
    if (t->ignore_merges) {
        const int whole = tok_vocab_find(&t->vocab, piece, len);
        if (whole >= 0) return tok_ids_push(out, whole);
    }
    symbol *s = malloc(sizeof *s * (size_t)len);
    /* n - 1 pairs at first, and each merge queues at most two more */
    candidate *h = malloc(sizeof *h * (3 * (size_t)len + 1));
    if (!s || !h) {
        free(s), free(h);
        return 0;
    }
    /* one symbol a character; one a byte (<0xNN>) for a character outside
     * the vocab with byte_fallback; else unk (one for a run of them with
     * fuse_unk), or nothing without an unk, as Hugging Face's BPE does */
    int n = 0, unk_run = 0;
    for (int at = 0; at < len;) {
        int w = char_bytes((unsigned char)piece[at]);
        if (w > len - at) w = len - at;
        int ids[4], k = 0;
        ids[k++] = tok_vocab_find(&t->vocab, piece + at, w);
        if (ids[0] < 0 && t->byte_fallback) {
            k = 0;
            for (int b = 0; b < w; b++) {
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", (unsigned char)piece[at + b]);
                ids[k++] = tok_vocab_find(&t->vocab, name, 6);
                if (ids[k - 1] < 0) k = 0, b = w; /* not every byte has its token: unk */
            }
            if (k == 0) ids[k++] = -1;
        }
        at += w;
        if (ids[0] < 0) {
            if (t->unk < 0 || (t->fuse_unk && unk_run)) continue;
            ids[0] = t->unk;
        }
        unk_run = ids[0] == t->unk && k == 1;
        for (int j = 0; j < k; j++) {
            s[n] = (symbol){ids[j], n - 1, -1, 1};
            if (n > 0) s[n - 1].next = n;
            n++;
        }
    }
    int queued = 0;
    for (int i = 0; i < n; i++) consider(t, s, i, h, &queued);
    while (queued > 0) {
        const candidate c = heap_pop(h, &queued);
        const int next = s[c.pos].next;
        /* stale: a symbol of the pair has merged with another since */
        if (!s[c.pos].alive || next < 0 || s[c.pos].id != c.left || s[next].id != c.right) continue;
        s[c.pos].id = c.id;
        s[c.pos].next = s[next].next;
        if (s[next].next >= 0) s[s[next].next].prev = c.pos;
        s[next].alive = 0;
        if (s[c.pos].prev >= 0) consider(t, s, s[c.pos].prev, h, &queued);
        consider(t, s, c.pos, h, &queued);
    }
    int ok = 1;
    for (int i = 0; ok && n > 0 && i >= 0; i = s[i].next) ok = tok_ids_push(out, s[i].id);
    free(s);
    free(h);
    return ok;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* tok_bpe.c: the BPE model on one pre-tokenised piece. The piece starts as
 * one symbol a character; the adjacent pair of lowest merge rank (the
 * leftmost among equals) merges, until no pair has a merge. Pairs wait in
 * a binary heap and symbols form a linked list, so a word of n characters
 * costs O(n log n), not a rescan per merge (Hugging Face's word.rs works
 * the same way, and gives the same result). An encode call remembers the
 * ids of the pieces it has seen (text repeats its words), and a
 * SentencePiece-style piece, a whole stretch of text, is cut into words
 * where no merge can join across (tok_word_starts). */
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

int tok_bytes_reserve(char **bytes, size_t *cap, size_t need, size_t first) {
    if (need <= *cap) return 1;
    size_t grown_cap = *cap ? 2 * *cap : first;
    while (grown_cap < need) grown_cap *= 2;
    char *grown = realloc(*bytes, grown_cap);
    if (!grown) return 0;
    *bytes = grown, *cap = grown_cap;
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

/* The id of the one-character token of the w bytes at p, or -1. */
static int char_id(const forge_tokenizer *t, const char *p, int w) {
    const unsigned char *u = (const unsigned char *)p;
    if (w == 1) return t->char_id[u[0]];
    if (w == 2) return t->char_id[(u[0] & 0x1fu) << 6 | (u[1] & 0x3fu)];
    if (w == 3) return t->char_id[(u[0] & 0x0fu) << 12 | (u[1] & 0x3fu) << 6 | (u[2] & 0x3fu)];
    return tok_vocab_find(&t->vocab, p, w);
}

static int bpe(const forge_tokenizer *t, const char *piece, int len, tok_ids *out) {
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
        ids[k++] = char_id(t, piece + at, w);
        if (ids[0] < 0 && t->byte_fallback) {
            for (k = 0; k < w && (ids[k] = t->byte_id[(unsigned char)piece[at + k]]) >= 0; k++) {}
            if (k < w) ids[0] = -1, k = 1; /* not every byte has its token: unk */
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

/* The call's memory of pieces: their bytes and ids in two arenas, and an
 * open-addressing table over them, at most half full. */
struct tok_cache {
    struct cache_slot {
        size_t key, ids; /* offsets into keys and ids */
        int key_len, n_ids; /* key_len 0: empty */
    } *slot;
    size_t mask, used;
    char *keys;
    size_t keys_len, keys_cap;
    tok_ids ids;
};

/* Pieces longer than this are run, not remembered: they seldom repeat. */
enum { CACHE_MAX_PIECE = 256 };

void tok_cache_free(tok_cache *c) {
    if (!c) return;
    free(c->slot);
    free(c->keys);
    free(c->ids.ids);
    free(c);
}

static int cache_grow(tok_cache *c) {
    const size_t size = c->slot ? 2 * (c->mask + 1) : 4096;
    struct cache_slot *slot = calloc(size, sizeof *slot);
    if (!slot) return 0;
    for (size_t i = 0; c->slot && i <= c->mask; i++) {
        const struct cache_slot s = c->slot[i];
        if (s.key_len == 0) continue;
        size_t j = tok_hash_bytes(c->keys + s.key, s.key_len) & (size_t)(size - 1);
        while (slot[j].key_len) j = (j + 1) & (size - 1);
        slot[j] = s;
    }
    free(c->slot);
    c->slot = slot, c->mask = size - 1;
    return 1;
}

/* BPE on one word, through the cache. */
static int bpe_cached(tok_encoder *e, const char *piece, int len) {
    if (len > CACHE_MAX_PIECE) return bpe(e->t, piece, len, e->out);
    if (!e->cache && !(e->cache = calloc(1, sizeof *e->cache))) return 0;
    tok_cache *c = e->cache;
    if (2 * (c->used + 1) > c->mask + 1 && !cache_grow(c)) return 0;
    size_t i = tok_hash_bytes(piece, len) & c->mask;
    for (; c->slot[i].key_len; i = (i + 1) & c->mask) {
        const struct cache_slot s = c->slot[i];
        if (s.key_len != len || memcmp(c->keys + s.key, piece, (size_t)len) != 0) continue;
        for (int k = 0; k < s.n_ids; k++)
            if (!tok_ids_push(e->out, c->ids.ids[s.ids + (size_t)k])) return 0;
        return 1;
    }
    const size_t from = e->out->n;
    if (!bpe(e->t, piece, len, e->out)) return 0;
    if (!tok_bytes_reserve(&c->keys, &c->keys_cap, c->keys_len + (size_t)len, 65536)) return 0;
    const size_t ids_at = c->ids.n;
    for (size_t k = from; k < e->out->n; k++)
        if (!tok_ids_push(&c->ids, e->out->ids[k])) return 0;
    memcpy(c->keys + c->keys_len, piece, (size_t)len);
    c->slot[i] = (struct cache_slot){c->keys_len, ids_at, len, (int)(e->out->n - from)};
    c->keys_len += (size_t)len, c->used++;
    return 1;
}

/* SentencePiece's word mark, U+2581. */
static const char mark[] = "\xe2\x96\x81";

/* Whether a mark starts at p[i] after another character (not a mark). */
static int word_start_at(const char *p, int i) {
    return memcmp(p + i, mark, 3) == 0 && !(i >= 3 && memcmp(p + i - 3, mark, 3) == 0);
}

/* Whether a mark after another character starts a word no merge reaches
 * back across: the vocabulary has the mark, and no token with a mark right
 * after another character (SentencePiece's vocabularies keep marks at a
 * token's start). Then BPE over the words, one at a time, is BPE over the
 * whole: a merge across a word's start would make such a token. */
int tok_word_starts(const forge_tokenizer *t) {
    if (tok_vocab_find(&t->vocab, mark, 3) < 0) return 0;
    for (int id = 0; id < t->vocab.n; id++) {
        const char *p = t->vocab.piece[id];
        const int n = t->vocab.len[id];
        for (int i = 1; p && i + 3 <= n; i++)
            if (word_start_at(p, i)) return 0;
    }
    return 1;
}

int tok_bpe(tok_encoder *e, const char *piece, int len) {
    if (!e->t->word_starts) return len == 0 || bpe_cached(e, piece, len);
    int from = 0;
    for (int i = 1; i + 3 <= len; i++)
        if (word_start_at(piece, i)) {
            if (!bpe_cached(e, piece + from, i - from)) return 0;
            from = i;
        }
    return from == len || bpe_cached(e, piece + from, len - from);
}

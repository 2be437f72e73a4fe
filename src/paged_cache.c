/* SPDX-License-Identifier: Apache-2.0 */
/* paged_cache.c: the paged KV cache's bookkeeping, on the host: the page
 * pool's free list and reference counts, each sequence's page table and
 * length, forks that share pages and copy a shared partial page on write,
 * and the checks of every call. The backend stores the pages and computes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

static int is_page_size(int p) { return p == 16 || p == 32 || p == 64 || p == 128 || p == 256; }

static forge_status check_config(const char *fn, const forge_paged_config *c) {
    if (forge_dtype_size(c->dtype) == 0) return forge_fail(FORGE_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)c->dtype);
    if (c->kv_heads < 1) return forge_fail(FORGE_ERR_SHAPE, "%s: kv_heads %d is below 1", fn, c->kv_heads);
    if (c->head_dim < 1 || c->head_dim > 256)
        return forge_fail(FORGE_ERR_SHAPE, "%s: head_dim %d is outside 1 .. 256", fn, c->head_dim);
    if ((int64_t)c->kv_heads * c->head_dim > FORGE_MAX_DIM)
        return forge_fail(FORGE_ERR_SHAPE, "%s: kv_heads %d x head_dim %d is past %d", fn, c->kv_heads, c->head_dim,
                          FORGE_MAX_DIM);
    if (!is_page_size(c->page_size))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: page_size %d is not 16, 32, 64, 128 or 256", fn,
                          c->page_size);
    if (c->n_pages < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n_pages %d is below 1", fn, c->n_pages);
    if (c->max_seqs < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: max_seqs %d is below 1", fn, c->max_seqs);
    if (c->max_seq_len < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: max_seq_len %d is below 1", fn, c->max_seq_len);
    /* the pool, K and V: 2 * n_pages * page_size * kv_heads * head_dim elements */
    const size_t page = (size_t)c->page_size * forge_paged_row_bytes(c);
    if ((size_t)c->n_pages > SIZE_MAX / 2 / page)
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: %d pages of %zu bytes overflow size_t", fn, c->n_pages, page);
    return FORGE_OK;
}

/* The host tables of a cache and the handle; NULL members are fine. */
static void free_host(forge_paged_cache *c) {
    free(c->table);
    free(c->len);
    free(c->refs);
    free(c->free_pages);
    free(c);
}

forge_status forge_paged_cache_create(forge_context *ctx, const forge_paged_config *cfg, forge_paged_cache **out) {
    static const char fn[] = "forge_paged_cache_create";
    FORGE_CHECK_NOT_NULL(ctx, fn);
    FORGE_CHECK_NOT_NULL(cfg, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    forge_status st = check_config(fn, cfg);
    if (st != FORGE_OK) return st;
    if (!ctx->ops->paged_init)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the %s backend has no paged cache", fn,
                          forge_backend_name(ctx->ops->kind));
    const int max_pages = (int)(((int64_t)cfg->max_seq_len + cfg->page_size - 1) / cfg->page_size);
    forge_paged_cache *c = calloc(1, sizeof *c);
    if (!c) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    c->ctx = ctx;
    c->cfg = *cfg;
    c->max_pages = max_pages;
    /* the pool first: a pool too large for the backend fails before the
     * host tables, as large as its page count, are filled */
    st = ctx->ops->paged_init(c);
    if (st != FORGE_OK) {
        free_host(c);
        return st;
    }
    c->table = malloc(sizeof *c->table * (size_t)cfg->max_seqs * (size_t)max_pages);
    c->len = malloc(sizeof *c->len * (size_t)cfg->max_seqs);
    c->refs = calloc((size_t)cfg->n_pages, sizeof *c->refs);
    c->free_pages = malloc(sizeof *c->free_pages * (size_t)cfg->n_pages);
    if (!c->table || !c->len || !c->refs || !c->free_pages) {
        forge_paged_cache_destroy(c);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for the tables of %d sequences and %d pages",
                          fn, cfg->max_seqs, cfg->n_pages);
    }
    for (int s = 0; s < cfg->max_seqs; s++) c->len[s] = -1;
    /* a stack: page 0 is handed out first */
    for (int i = 0; i < cfg->n_pages; i++) c->free_pages[i] = cfg->n_pages - 1 - i;
    c->n_free = cfg->n_pages;
    *out = c;
    return FORGE_OK;
}

void forge_paged_cache_destroy(forge_paged_cache *cache) {
    if (!cache) return;
    cache->ctx->ops->paged_free(cache);
    free_host(cache);
}

forge_paged_config forge_paged_cache_config(const forge_paged_cache *cache) {
    return cache ? cache->cfg : (forge_paged_config){0};
}

int forge_paged_cache_free_pages(const forge_paged_cache *cache) { return cache ? cache->n_free : 0; }

/* Pages that hold `tokens` tokens; 64-bit, as tokens may be near INT_MAX. */
static int pages_for(const forge_paged_cache *c, int tokens) {
    return (int)(((int64_t)tokens + c->cfg.page_size - 1) / c->cfg.page_size);
}
static int *table_of(const forge_paged_cache *c, int seq) { return c->table + (size_t)seq * c->max_pages; }

static forge_status check_seq(const forge_paged_cache *cache, int seq, const char *fn) {
    FORGE_CHECK_NOT_NULL(cache, fn);
    if (seq < 0 || seq >= cache->cfg.max_seqs || cache->len[seq] < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: sequence %d is not a live sequence of the cache", fn, seq);
    return FORGE_OK;
}

/* The lowest free sequence id, or -1. */
static int free_id(const forge_paged_cache *c) {
    for (int s = 0; s < c->cfg.max_seqs; s++)
        if (c->len[s] < 0) return s;
    return -1;
}

static forge_status no_free_id(const forge_paged_cache *c, const char *fn) {
    return forge_fail(FORGE_ERR_CAPACITY, "%s: all %d sequences of the cache are live", fn, c->cfg.max_seqs);
}

forge_status forge_paged_seq_new(forge_paged_cache *cache, int *seq) {
    static const char fn[] = "forge_paged_seq_new";
    FORGE_CHECK_NOT_NULL(cache, fn);
    FORGE_CHECK_NOT_NULL(seq, fn);
    const int s = free_id(cache);
    if (s < 0) return no_free_id(cache, fn);
    cache->len[s] = 0;
    *seq = s;
    return FORGE_OK;
}

forge_status forge_paged_seq_fork(forge_paged_cache *cache, int src, int *seq) {
    static const char fn[] = "forge_paged_seq_fork";
    forge_status st = check_seq(cache, src, fn);
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(seq, fn);
    const int s = free_id(cache), n = pages_for(cache, cache->len[src]);
    if (s < 0) return no_free_id(cache, fn);
    memcpy(table_of(cache, s), table_of(cache, src), sizeof(int) * (size_t)n);
    if (n > 0 && cache->ctx->ops->paged_set_table && (st = cache->ctx->ops->paged_set_table(cache, s, 0, n)) != FORGE_OK)
        return st;
    for (int i = 0; i < n; i++) cache->refs[table_of(cache, s)[i]]++;
    cache->len[s] = cache->len[src];
    *seq = s;
    return FORGE_OK;
}

static void drop_page(forge_paged_cache *c, int page) {
    if (--c->refs[page] == 0) c->free_pages[c->n_free++] = page;
}

forge_status forge_paged_seq_release(forge_paged_cache *cache, int seq) {
    forge_status st = check_seq(cache, seq, "forge_paged_seq_release");
    if (st != FORGE_OK) return st;
    const int n = pages_for(cache, cache->len[seq]);
    for (int i = 0; i < n; i++) drop_page(cache, table_of(cache, seq)[i]);
    cache->len[seq] = -1;
    return FORGE_OK;
}

forge_status forge_paged_seq_len(const forge_paged_cache *cache, int seq, int *len) {
    forge_status st = check_seq(cache, seq, "forge_paged_seq_len");
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(len, "forge_paged_seq_len");
    *len = cache->len[seq];
    return FORGE_OK;
}

forge_status forge_paged_seq_pages(const forge_paged_cache *cache, int seq, int *pages, int *n_pages) {
    forge_status st = check_seq(cache, seq, "forge_paged_seq_pages");
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(n_pages, "forge_paged_seq_pages");
    *n_pages = pages_for(cache, cache->len[seq]);
    if (pages) memcpy(pages, table_of(cache, seq), sizeof(int) * (size_t)*n_pages);
    return FORGE_OK;
}

forge_status forge_paged_read(const forge_paged_cache *cache, int seq, void *k, void *v) {
    forge_status st = check_seq(cache, seq, "forge_paged_read");
    if (st != FORGE_OK) return st;
    if (cache->len[seq] == 0 || (!k && !v)) return FORGE_OK;
    return cache->ctx->ops->paged_read(cache, seq, cache->len[seq], k, v);
}

void forge_paged_ungrow(forge_paged_cache *c, int n, const int *seqs, const forge_page_growth *g) {
    for (int i = 0; i < n; i++) {
        int *t = table_of(c, seqs[i]);
        for (int p = 0; p < g[i].n_new; p++) drop_page(c, t[g[i].first_new + p]);
        if (g[i].cow_old >= 0) {
            t[g[i].first_new] = g[i].cow_old;
            c->refs[g[i].cow_old]++;
            if (c->ctx->ops->paged_set_table) c->ctx->ops->paged_set_table(c, seqs[i], g[i].first_new, 1);
        }
    }
}

forge_status forge_paged_check_growth(const forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens,
                                      const char *fn) {
    const int P = cache->cfg.page_size;
    int64_t needed = 0; /* n sequences of up to INT_MAX / P pages each */
    for (int i = 0; i < n; i++) {
        forge_status st = check_seq(cache, seqs[i], fn);
        if (st != FORGE_OK) return st;
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i])
                return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: sequence %d appears twice (entries %d and %d)", fn,
                                  seqs[i], j, i);
        const int len = cache->len[seqs[i]];
        if (n_tokens[i] < 0)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: entry %d has %d tokens, below 0", fn, i, n_tokens[i]);
        if (n_tokens[i] > cache->cfg.max_seq_len - len)
            return forge_fail(FORGE_ERR_CAPACITY, "%s: sequence %d holds %d tokens; %d more is past max_seq_len %d", fn,
                              seqs[i], len, n_tokens[i], cache->cfg.max_seq_len);
        needed += pages_for(cache, len + n_tokens[i]) - pages_for(cache, len);
        if (n_tokens[i] > 0 && len % P != 0 && cache->refs[table_of(cache, seqs[i])[len / P]] > 1)
            needed++; /* the shared partial page is copied before it is written */
    }
    if (needed > cache->n_free)
        return forge_fail(FORGE_ERR_CAPACITY, "%s: the tokens need %lld new pages and the pool has %d free of %d", fn,
                          (long long)needed, cache->n_free, cache->cfg.n_pages);
    return FORGE_OK;
}

forge_status forge_paged_grow(forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens,
                              forge_page_growth *g) {
    const forge_backend_ops *ops = cache->ctx->ops;
    const int P = cache->cfg.page_size;
    forge_status st = FORGE_OK;
    int done = 0; /* sequences whose pages are in place */
    for (; st == FORGE_OK && done < n; done++) {
        const int s = seqs[done], len = cache->len[s];
        int *t = table_of(cache, s);
        forge_page_growth *c = &g[done];
        *c = (forge_page_growth){.cow_old = -1, .first_new = pages_for(cache, len), .n_new = 0};
        if (n_tokens[done] == 0) continue;
        if (len % P != 0 && cache->refs[t[len / P]] > 1) { /* copy on write */
            c->cow_old = t[len / P];
            c->first_new = len / P;
        }
        const int end = pages_for(cache, len + n_tokens[done]);
        for (int p = c->first_new; p < end; p++, c->n_new++) {
            const int page = cache->free_pages[--cache->n_free];
            cache->refs[page] = 1;
            t[p] = page;
        }
        if (c->cow_old >= 0) {
            cache->refs[c->cow_old]--; /* still held by another sequence: never 0 here */
            st = ops->paged_copy_page(cache, t[c->first_new], c->cow_old, len % P);
        }
        if (st == FORGE_OK && ops->paged_set_table && c->n_new > 0)
            st = ops->paged_set_table(cache, s, c->first_new, c->n_new);
    }
    if (st != FORGE_OK) forge_paged_ungrow(cache, done, seqs, g);
    return st;
}

forge_status forge_paged_append(forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens, const void *k,
                                const void *v) {
    static const char fn[] = "forge_paged_append";
    FORGE_CHECK_NOT_NULL(cache, fn);
    if (n < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n is %d, not >= 1", fn, n);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    FORGE_CHECK_NOT_NULL(n_tokens, fn);
    forge_status st = forge_paged_check_growth(cache, n, seqs, n_tokens, fn);
    if (st != FORGE_OK) return st;
    long total = 0;
    for (int i = 0; i < n; i++) total += n_tokens[i];
    if (total == 0) return FORGE_OK;
    FORGE_CHECK_NOT_NULL(k, fn);
    FORGE_CHECK_NOT_NULL(v, fn);

    forge_page_growth *g = malloc(sizeof *g * (size_t)n);
    int *pos0 = malloc(sizeof *pos0 * (size_t)n), *row0 = malloc(sizeof *row0 * (size_t)n);
    st = g && pos0 && row0 ? FORGE_OK : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int i = 0, row = 0; st == FORGE_OK && i < n; row += n_tokens[i], i++) pos0[i] = cache->len[seqs[i]], row0[i] = row;
    if (st == FORGE_OK) st = forge_paged_grow(cache, n, seqs, n_tokens, g);
    if (st == FORGE_OK) {
        st = cache->ctx->ops->paged_write(cache, n, seqs, pos0, n_tokens, row0, k, v);
        if (st == FORGE_OK)
            for (int i = 0; i < n; i++) cache->len[seqs[i]] += n_tokens[i];
        else
            forge_paged_ungrow(cache, n, seqs, g);
    }
    free(g);
    free(pos0);
    free(row0);
    return st;
}

/* The checks of forge_paged_attention and forge_paged_split_size; *total_q
 * is the call's query rows. */
static forge_status check_attention(const forge_paged_cache *cache, const forge_paged_attention_args *a, const char *fn,
                                    int *total_q) {
    FORGE_CHECK_NOT_NULL(cache, fn);
    FORGE_CHECK_NAMED(a, "args", fn);
    const forge_paged_config *c = &cache->cfg;
    if (a->batch < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: batch is %d, not >= 1", fn, a->batch);
    if (a->heads < 1 || a->heads % c->kv_heads != 0)
        return forge_fail(FORGE_ERR_SHAPE, "%s: heads %d is not a positive multiple of the cache's kv_heads %d", fn,
                          a->heads, c->kv_heads);
    if ((int64_t)a->heads * c->head_dim > FORGE_MAX_DIM)
        return forge_fail(FORGE_ERR_SHAPE, "%s: heads %d x head_dim %d is past %d", fn, a->heads, c->head_dim,
                          FORGE_MAX_DIM);
    if (!(a->scale >= 0.0f) || isinf(a->scale))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: scale %g is not a finite number >= 0", fn, (double)a->scale);
    if (a->split_size < 0 || a->split_size % c->page_size != 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: split_size %d is not 0 or a positive multiple of the "
                          "page size %d", fn, a->split_size, c->page_size);
    FORGE_CHECK_NAMED(a->seqs, "args->seqs", fn);
    FORGE_CHECK_NAMED(a->q_offsets, "args->q_offsets", fn);
    if (a->q_offsets[0] != 0) return forge_fail(FORGE_ERR_SHAPE, "%s: q_offsets[0] is %d, not 0", fn, a->q_offsets[0]);
    for (int b = 0; b < a->batch; b++) {
        forge_status st = check_seq(cache, a->seqs[b], fn);
        if (st != FORGE_OK) return st;
        const int nq = a->q_offsets[b + 1] - a->q_offsets[b];
        if (nq < 0)
            return forge_fail(FORGE_ERR_SHAPE, "%s: q_offsets[%d] = %d is below q_offsets[%d] = %d", fn, b + 1,
                              a->q_offsets[b + 1], b, a->q_offsets[b]);
        if (nq > cache->len[a->seqs[b]])
            return forge_fail(FORGE_ERR_SHAPE, "%s: sequence %d (seqs[%d]) has %d queries but holds %d tokens: append "
                              "the queries' K and V first", fn, a->seqs[b], b, nq, cache->len[a->seqs[b]]);
    }
    *total_q = a->q_offsets[a->batch];
    return FORGE_OK;
}

/* The tokens each sequence of the batch holds (malloc'd), for the backend. */
static int *lengths_of(const forge_paged_cache *cache, const forge_paged_attention_args *a, const char *fn) {
    int *lens = malloc(sizeof *lens * (size_t)a->batch);
    if (!lens) {
        forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        return NULL;
    }
    for (int b = 0; b < a->batch; b++) lens[b] = cache->len[a->seqs[b]];
    return lens;
}

forge_status forge_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a) {
    static const char fn[] = "forge_paged_attention";
    int total_q = 0;
    forge_status st = check_attention(cache, a, fn, &total_q);
    if (st != FORGE_OK || total_q == 0) return st;
    FORGE_CHECK_NAMED(a->q, "args->q", fn);
    FORGE_CHECK_NAMED(a->out, "args->out", fn);
    forge_paged_attention_args resolved = *a;
    if (resolved.scale == 0.0f) resolved.scale = 1.0f / sqrtf((float)cache->cfg.head_dim);
    int *lens = lengths_of(cache, a, fn);
    if (!lens) return FORGE_ERR_OUT_OF_MEMORY;
    st = cache->ctx->ops->paged_attention(cache, &resolved, lens, total_q);
    free(lens);
    return st;
}

forge_status forge_paged_split_size(const forge_paged_cache *cache, const forge_paged_attention_args *a,
                                    int *split_size) {
    static const char fn[] = "forge_paged_split_size";
    FORGE_CHECK_NOT_NULL(split_size, fn);
    int total_q = 0;
    forge_status st = check_attention(cache, a, fn, &total_q);
    if (st != FORGE_OK) return st;
    if (a->split_size) {
        *split_size = a->split_size;
        return FORGE_OK;
    }
    int *lens = lengths_of(cache, a, fn);
    if (!lens) return FORGE_ERR_OUT_OF_MEMORY;
    if (cache->ctx->ops->paged_split_size) {
        *split_size = cache->ctx->ops->paged_split_size(cache, a, lens);
    } else { /* each sequence whole: the longest one with queries */
        *split_size = 0;
        for (int b = 0; b < a->batch; b++)
            if (a->q_offsets[b + 1] > a->q_offsets[b] && lens[b] > *split_size) *split_size = lens[b];
    }
    free(lens);
    return FORGE_OK;
}

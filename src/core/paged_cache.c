/* SPDX-License-Identifier: Apache-2.0 */
/* paged_cache.c: the paged KV cache's bookkeeping, on the host: the page
 * pool's free list and reference counts, each sequence's page table and
 * length, forks that share pages and copy a shared partial page on write,
 * and the checks of every call. The backend stores the pages and computes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

static int is_page_size(int p) { return p == 16 || p == 32 || p == 64 || p == 128 || p == 256; }

/* A pinned cache (a layer's slots) takes the layer's head dim and any page
 * size; the kernels that read its pages are the layer's. */
static forge_status check_config(const char *fn, const forge_paged_config *c, int pinned) {
    if (forge_dtype_size(c->dtype) == 0) return forge_fail(FORGE_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)c->dtype);
    if (c->kv_heads < 1) return forge_fail(FORGE_ERR_SHAPE, "%s: kv_heads %d is below 1", fn, c->kv_heads);
    if (c->head_dim < 1 || (!pinned && c->head_dim > 256))
        return forge_fail(FORGE_ERR_SHAPE, "%s: head_dim %d is outside 1 .. 256", fn, c->head_dim);
    if ((int64_t)c->kv_heads * c->head_dim > FORGE_MAX_DIM)
        return forge_fail(FORGE_ERR_SHAPE, "%s: kv_heads %d x head_dim %d is past %d", fn, c->kv_heads, c->head_dim,
                          FORGE_MAX_DIM);
    if (pinned ? c->page_size < 1 : !is_page_size(c->page_size))
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

forge_status forge_paged_make(forge_context *ctx, const forge_paged_config *cfg, int pinned, const char *fn,
                              forge_paged_cache **out) {
    forge_status st = check_config(fn, cfg, pinned);
    if (st != FORGE_OK) return st;
    const int max_pages = (int)(((int64_t)cfg->max_seq_len + cfg->page_size - 1) / cfg->page_size);
    if (pinned && (int64_t)cfg->max_seqs * max_pages != cfg->n_pages)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %d pinned sequences of %d pages need %lld pages, not %d", fn,
                          cfg->max_seqs, max_pages, (long long)cfg->max_seqs * max_pages, cfg->n_pages);
    forge_paged_cache *c = calloc(1, sizeof *c);
    if (!c) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    c->ctx = ctx;
    c->cfg = *cfg;
    c->max_pages = max_pages;
    c->pinned = pinned;
    /* the pool first: a pool too large for the backend fails before the
     * host tables, as large as its page count, are filled */
    st = ctx->ops->cache_init(c, fn);
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
    if (pinned) { /* sequence s holds pages s * max_pages .. for life */
        for (int s = 0; s < cfg->max_seqs; s++) c->len[s] = 0;
        for (int i = 0; i < cfg->n_pages; i++) c->table[i] = i, c->refs[i] = 1;
        c->n_free = 0;
        if (ctx->ops->cache_set_table && (st = ctx->ops->cache_set_table(c, 0, cfg->n_pages, fn)) != FORGE_OK) {
            forge_paged_cache_destroy(c);
            return st;
        }
    } else {
        for (int s = 0; s < cfg->max_seqs; s++) c->len[s] = -1;
        /* a stack: page 0 is handed out first */
        for (int i = 0; i < cfg->n_pages; i++) c->free_pages[i] = cfg->n_pages - 1 - i;
        c->n_free = cfg->n_pages;
    }
    *out = c;
    return FORGE_OK;
}

forge_status forge_paged_cache_create(forge_context *ctx, const forge_paged_config *cfg, forge_paged_cache **out) {
    static const char fn[] = "forge_paged_cache_create";
    FORGE_CHECK_NOT_NULL(ctx, fn);
    FORGE_CHECK_NOT_NULL(cfg, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    return forge_paged_make(ctx, cfg, 0, fn, out);
}

void forge_paged_cache_destroy(forge_paged_cache *cache) {
    if (!cache) return;
    cache->ctx->ops->cache_free(cache);
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

forge_status forge_paged_check_live(const forge_paged_cache *cache, int seq, const char *fn) {
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
    forge_status st = forge_paged_check_live(cache, src, fn);
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(seq, fn);
    const int s = free_id(cache), n = pages_for(cache, cache->len[src]);
    if (s < 0) return no_free_id(cache, fn);
    memcpy(table_of(cache, s), table_of(cache, src), sizeof(int) * (size_t)n);
    if (n > 0 && cache->ctx->ops->cache_set_table &&
        (st = cache->ctx->ops->cache_set_table(cache, (size_t)s * cache->max_pages, n, fn)) != FORGE_OK)
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
    forge_status st = forge_paged_check_live(cache, seq, "forge_paged_seq_release");
    if (st != FORGE_OK) return st;
    const int n = pages_for(cache, cache->len[seq]);
    for (int i = 0; i < n; i++) drop_page(cache, table_of(cache, seq)[i]);
    cache->len[seq] = -1;
    return FORGE_OK;
}

forge_status forge_paged_seq_len(const forge_paged_cache *cache, int seq, int *len) {
    forge_status st = forge_paged_check_live(cache, seq, "forge_paged_seq_len");
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(len, "forge_paged_seq_len");
    *len = cache->len[seq];
    return FORGE_OK;
}

forge_status forge_paged_seq_pages(const forge_paged_cache *cache, int seq, int *pages, int *n_pages) {
    forge_status st = forge_paged_check_live(cache, seq, "forge_paged_seq_pages");
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(n_pages, "forge_paged_seq_pages");
    *n_pages = pages_for(cache, cache->len[seq]);
    if (pages) memcpy(pages, table_of(cache, seq), sizeof(int) * (size_t)*n_pages);
    return FORGE_OK;
}

forge_status forge_paged_read(const forge_paged_cache *cache, int seq, void *k, void *v) {
    forge_status st = forge_paged_check_live(cache, seq, "forge_paged_read");
    if (st != FORGE_OK) return st;
    if (cache->len[seq] == 0 || (!k && !v)) return FORGE_OK;
    return cache->ctx->ops->cache_read(cache, seq, cache->len[seq], k, v, "forge_paged_read");
}

void forge_paged_ungrow(forge_paged_cache *c, int n, const int *seqs, const forge_page_growth *g, const char *fn) {
    for (int i = 0; i < n; i++) {
        int *t = table_of(c, seqs[i]);
        for (int p = 0; p < g[i].n_new; p++) drop_page(c, t[g[i].first_new + p]);
        if (g[i].cow_old >= 0) {
            t[g[i].first_new] = g[i].cow_old;
            c->refs[g[i].cow_old]++;
            if (c->ctx->ops->cache_set_table)
                c->ctx->ops->cache_set_table(c, (size_t)seqs[i] * c->max_pages + g[i].first_new, 1, fn);
        }
    }
}

forge_status forge_paged_check_room(const forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens,
                                    const char *fn) {
    const int P = cache->cfg.page_size;
    int64_t needed = 0; /* n sequences of up to INT_MAX / P pages each */
    for (int i = 0; i < n; i++) {
        const int len = cache->len[seqs[i]];
        if (n_tokens[i] < 0)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: entry %d has %d tokens, below 0", fn, i, n_tokens[i]);
        if (n_tokens[i] > cache->cfg.max_seq_len - len)
            return forge_fail(FORGE_ERR_CAPACITY, "%s: sequence %d holds %d tokens; %d more is past max_seq_len %d", fn,
                              seqs[i], len, n_tokens[i], cache->cfg.max_seq_len);
        if (cache->pinned) continue; /* its pages are all there */
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
                              forge_page_growth *g, const char *fn) {
    const forge_backend_ops *ops = cache->ctx->ops;
    const int P = cache->cfg.page_size;
    forge_status st = FORGE_OK;
    int done = 0; /* sequences whose pages are in place */
    for (; st == FORGE_OK && done < n; done++) {
        const int s = seqs[done], len = cache->len[s];
        int *t = table_of(cache, s);
        forge_page_growth *c = &g[done];
        *c = (forge_page_growth){.cow_old = -1, .first_new = pages_for(cache, len), .n_new = 0};
        if (n_tokens[done] == 0 || cache->pinned) continue;
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
            st = ops->cache_copy_page(cache, t[c->first_new], c->cow_old, len % P, fn);
        }
        if (st == FORGE_OK && ops->cache_set_table && c->n_new > 0)
            st = ops->cache_set_table(cache, (size_t)s * cache->max_pages + c->first_new, c->n_new, fn);
    }
    if (st != FORGE_OK) forge_paged_ungrow(cache, done, seqs, g, fn);
    return st;
}

forge_status forge_paged_append(forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens, const void *k,
                                const void *v) {
    static const char fn[] = "forge_paged_append";
    FORGE_CHECK_NOT_NULL(cache, fn);
    if (n < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n is %d, not >= 1", fn, n);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    FORGE_CHECK_NOT_NULL(n_tokens, fn);
    forge_status st = FORGE_OK;
    for (int i = 0; i < n && st == FORGE_OK; i++) st = forge_paged_check_live(cache, seqs[i], fn);
    if (st == FORGE_OK) st = forge_check_distinct(fn, seqs, sizeof *seqs, n, cache->cfg.max_seqs, "sequence");
    if (st == FORGE_OK) st = forge_paged_check_room(cache, n, seqs, n_tokens, fn);
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
    if (st == FORGE_OK) st = forge_paged_grow(cache, n, seqs, n_tokens, g, fn);
    if (st == FORGE_OK) {
        st = cache->ctx->ops->cache_append(cache, n, seqs, pos0, n_tokens, row0, k, v, fn);
        if (st == FORGE_OK)
            for (int i = 0; i < n; i++) cache->len[seqs[i]] += n_tokens[i];
        else
            forge_paged_ungrow(cache, n, seqs, g, fn);
    }
    free(g);
    free(pos0);
    free(row0);
    return st;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_cache.c: the CPU backend's KV cache. K and V of the pool are
 * [n_pages, page_size, kv_heads, head_dim] in the cache's dtype, in host
 * memory; token p of a sequence is row p % page_size of page
 * table[p / page_size]. Attention gathers the sequences' K and V into
 * float32 rows and runs the backend's attention alone over them. */
#define _DEFAULT_SOURCE /* sysconf's _SC_PHYS_PAGES */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "cpu_attention.h"
#include "cpu_cache.h"
#include "window.h"

typedef struct {
    unsigned char *k, *v; /* [n_pages, page_size, kv_heads, head_dim] in the dtype */
} cpu_pool;

/* Byte offset of position pos of seq in the pool. */
static size_t token_at(const forge_paged_cache *c, int seq, int pos) {
    const int page = c->table[(size_t)seq * c->max_pages + pos / c->cfg.page_size];
    return ((size_t)page * c->cfg.page_size + pos % c->cfg.page_size) * forge_paged_row_bytes(&c->cfg);
}

forge_status cpu_cache_init(forge_paged_cache *cache, const char *fn) {
    const size_t bytes = (size_t)cache->cfg.n_pages * cache->cfg.page_size * forge_paged_row_bytes(&cache->cfg);
    /* a pool past the machine's memory is refused as such: an overcommitting
     * kernel would hand it out and fail only when its pages are touched */
    const long phys_pages = sysconf(_SC_PHYS_PAGES), page_bytes = sysconf(_SC_PAGESIZE);
    if (phys_pages > 0 && page_bytes > 0 && bytes / (size_t)page_bytes > (size_t)phys_pages / 2)
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: %d pages (2 x %zu bytes) are more than this machine's %zu "
                          "bytes of memory", fn, cache->cfg.n_pages, bytes,
                          (size_t)phys_pages * (size_t)page_bytes);
    cpu_pool *p = calloc(1, sizeof *p);
    if (p) {
        p->k = calloc(bytes, 1);
        p->v = calloc(bytes, 1);
    }
    if (!p || !p->k || !p->v) {
        if (p) free(p->k), free(p->v);
        free(p);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %d pages (2 x %zu bytes)", fn,
                          cache->cfg.n_pages, bytes);
    }
    cache->impl = p;
    return FORGE_OK;
}

void cpu_cache_free(forge_paged_cache *cache) {
    cpu_pool *p = cache->impl;
    if (!p) return;
    free(p->k);
    free(p->v);
    free(p);
}

forge_status cpu_cache_copy_page(forge_paged_cache *cache, int dst, int src, int tokens, const char *fn) {
    cpu_pool *p = cache->impl;
    const size_t rb = forge_paged_row_bytes(&cache->cfg), page = (size_t)cache->cfg.page_size * rb, n = (size_t)tokens * rb;
    memcpy(p->k + (size_t)dst * page, p->k + (size_t)src * page, n);
    memcpy(p->v + (size_t)dst * page, p->v + (size_t)src * page, n);
    return FORGE_OK;
}

forge_status cpu_cache_append(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                              const int *row0, const void *k, const void *v, const char *fn) {
    cpu_pool *p = cache->impl;
    const size_t rb = forge_paged_row_bytes(&cache->cfg);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < n_tokens[i]; t++) {
            const size_t dst = token_at(cache, seqs[i], pos0[i] + t), src = (size_t)(row0[i] + t) * rb;
            memcpy(p->k + dst, (const unsigned char *)k + src, rb);
            memcpy(p->v + dst, (const unsigned char *)v + src, rb);
        }
    return FORGE_OK;
}

forge_status cpu_cache_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v, const char *fn) {
    const cpu_pool *p = cache->impl;
    const size_t rb = forge_paged_row_bytes(&cache->cfg);
    for (int pos = 0; pos < len; pos++) {
        const size_t src = token_at(cache, seq, pos);
        if (k) memcpy((unsigned char *)k + (size_t)pos * rb, p->k + src, rb);
        if (v) memcpy((unsigned char *)v + (size_t)pos * rb, p->v + src, rb);
    }
    return FORGE_OK;
}

forge_status cpu_cache_upload(forge_paged_cache *cache, int seq, int first, int count, const void *k, const void *v,
                              const char *fn) {
    cpu_pool *p = cache->impl;
    const size_t rb = forge_paged_row_bytes(&cache->cfg);
    for (int i = 0; i < count; i++) {
        const size_t dst = token_at(cache, seq, first + i);
        memcpy(p->k + dst, (const unsigned char *)k + (size_t)i * rb, rb);
        memcpy(p->v + dst, (const unsigned char *)v + (size_t)i * rb, rb);
    }
    return FORGE_OK;
}

void cpu_cache_gather(const forge_paged_cache *cache, int seq, int first, int len, float *k, float *v) {
    const cpu_pool *p = cache->impl;
    const forge_paged_config *c = &cache->cfg;
    const size_t elems = (size_t)c->kv_heads * c->head_dim;
    for (int pos = first; pos < len; pos++) {
        const size_t src = token_at(cache, seq, pos), at = (size_t)(pos - first) * elems;
        forge_convert(k + at, FORGE_F32, p->k + src, c->dtype, elems);
        forge_convert(v + at, FORGE_F32, p->v + src, c->dtype, elems);
    }
}

int cpu_cache_in_place(const forge_paged_cache *cache, int n_queries) {
    return cache->cfg.dtype == FORGE_F32 && n_queries == 1;
}

/* A decode step's attention as the workers share it: pair i is row i /
 * heads, head i % heads; worker w takes pairs w, w + shares, ... */
typedef struct {
    const forge_paged_cache *cache;
    const cpu_decode_row *rows;
    int n, heads, window, shares;
    float scale, softcap;
    long lse_stride, longest;
    float *scores; /* [shares][longest] */
} decode_job;

static void attend_pairs(void *p, int w) {
    const decode_job *j = p;
    const forge_paged_config *c = &j->cache->cfg;
    const cpu_pool *pool = j->cache->impl;
    const int D = c->head_dim, group = j->heads / c->kv_heads;
    float *scores = j->scores + (size_t)w * (size_t)j->longest;
    for (int i = w; i < j->n * j->heads; i += j->shares) {
        const cpu_decode_row *r = &j->rows[i / j->heads];
        const int h = i % j->heads, g = h / group;
        const cpu_paged_head kv = {(const float *)pool->k + g * D, (const float *)pool->v + g * D,
                                   j->cache->table + (size_t)r->seq * j->cache->max_pages, c->page_size,
                                   (long)c->kv_heads * D};
        const float lse = cpu_attend_row(r->q + (size_t)h * D, &kv, forge_window_start(r->len, 1, j->window), r->len,
                                         D, j->scale, j->softcap, scores, r->out + (size_t)h * D);
        if (r->lse) r->lse[h * j->lse_stride] = lse;
    }
}

/* Threads that may share a decode step: the caller and the context's workers. */
static int shares_of(const forge_paged_cache *cache) {
    const cpu_ctx *c = cache->ctx->impl;
    return c ? c->n_workers + 1 : 1;
}

long cpu_cache_attend_scratch(const forge_paged_cache *cache, long longest) {
    return (long)shares_of(cache) * (longest > 1 ? longest : 1);
}

void cpu_decode_flush(cpu_decode_batch *d) {
    const forge_paged_cache *cache = d->cache;
    cpu_ctx *c = cache->ctx->impl;
    const int n = d->n, heads = d->heads;
    long longest = 1;
    for (int i = 0; i < n; i++) longest = d->rows[i].len > longest ? d->rows[i].len : longest;
    decode_job j = {cache, d->rows, n, heads, d->window, 1, d->scale, d->softcap, d->lse_stride, longest, d->scores};
    d->n = 0;
    if (n == 0) return;
    /* shared where the keys to read are worth waking the threads for (a
     * failure to start them costs only speed: it is not reported, and the
     * caller runs the step alone) */
    const int shared = shares_of(cache) > 1 && (long)n * heads * longest >= CPU_KEYS_WORTH_THREADS;
    if (shared && !c->workers && forge_workers_start(c->n_workers, &c->workers, "forge_model_step") != FORGE_OK)
        c->n_workers = 0;
    if (shared && c->workers) {
        j.shares = c->n_workers + 1;
        forge_workers_run(c->workers, attend_pairs, &j, 1);
    } else {
        attend_pairs(&j, 0);
    }
}

void cpu_decode_add(cpu_decode_batch *d, cpu_decode_row row) {
    d->rows[d->n++] = row;
    if (d->n == CPU_DECODE_CHUNK) cpu_decode_flush(d);
}

/* Every sequence of the call that is read in place (cpu_cache_in_place);
 * longest: their longest. */
static forge_status attend_all_in_place(const forge_paged_cache *cache, const forge_paged_attention_args *a,
                                        const int *lens, int total_q, int longest, const char *fn) {
    cpu_decode_batch d = {.cache = cache, .heads = a->heads, .window = a->window, .scale = a->scale,
                          .softcap = a->softcap, .lse_stride = total_q,
                          .scores = malloc(sizeof(float) * (size_t)cpu_cache_attend_scratch(cache, longest))};
    if (!d.scores) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const size_t row = (size_t)a->heads * cache->cfg.head_dim;
    for (int b = 0; b < a->batch; b++) {
        const int q0 = a->q_offsets[b];
        if (cpu_cache_in_place(cache, a->q_offsets[b + 1] - q0))
            cpu_decode_add(&d, (cpu_decode_row){a->seqs[b], lens[b], (const float *)a->q + q0 * row,
                                                (float *)a->out + q0 * row, a->lse ? a->lse + q0 : NULL});
    }
    cpu_decode_flush(&d);
    free(d.scores);
    return FORGE_OK;
}

/* The sequences read in place (cpu_cache_in_place), and the others' K and V
 * gathered (widened to float32) into FlashAttention's packed layout and the
 * CPU's forge_attention_forward run over it: the queries of a sequence are
 * the last positions of its keys there too. A sequence without queries, or
 * read in place, contributes no keys there, and with a window only those
 * its first query sees, from the window's start on. */
forge_status cpu_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                 int total_q, const int *pos_dev, const char *fn) {
    (void)pos_dev; /* the CPU records no graphs: positions are always lens */
    const forge_paged_config *c = &cache->cfg;
    const int H = a->heads, Hk = c->kv_heads, D = c->head_dim;
    int *kv_offsets = malloc(sizeof *kv_offsets * (size_t)(a->batch + 1));
    if (!kv_offsets) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    kv_offsets[0] = 0;
    int gathered = 0, longest = 0; /* queries gathered; the longest sequence read in place */
    for (int b = 0; b < a->batch; b++) {
        const int nq = a->q_offsets[b + 1] - a->q_offsets[b], here = cpu_cache_in_place(cache, nq);
        kv_offsets[b + 1] = kv_offsets[b] + (nq > 0 && !here ? lens[b] - forge_window_start(lens[b], nq, a->window) : 0);
        gathered += here ? 0 : nq;
        if (here && lens[b] > longest) longest = lens[b];
    }
    if (gathered == 0) { /* every sequence in place: nothing to pack */
        free(kv_offsets);
        return attend_all_in_place(cache, a, lens, total_q, longest, fn);
    }
    const int total_kv = kv_offsets[a->batch];
    const size_t nq = (size_t)total_q * H * D, nkv = (size_t)total_kv * Hk * D;
    float *q = malloc(sizeof *q * nq), *out = malloc(sizeof *out * nq);
    float *k = malloc(sizeof *k * (nkv + 1)), *v = malloc(sizeof *v * (nkv + 1));
    forge_status st = FORGE_OK;
    if (!q || !out || !k || !v)
        st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %d queries over %d tokens", fn,
                        total_q, total_kv);
    if (st == FORGE_OK) {
        forge_convert(q, FORGE_F32, a->q, c->dtype, nq);
        for (int b = 0; b < a->batch; b++) {
            const size_t at = (size_t)kv_offsets[b] * Hk * D;
            const int count = kv_offsets[b + 1] - kv_offsets[b];
            cpu_cache_gather(cache, a->seqs[b], lens[b] - count, lens[b], k + at, v + at);
        }
        const forge_attention_args packed = {.dtype = FORGE_F32, .batch = a->batch, .heads = H, .kv_heads = Hk,
                                             .head_dim = D, .q_offsets = a->q_offsets, .kv_offsets = kv_offsets,
                                             .q = q, .k = k, .v = v, .out = out, .lse = a->lse, .scale = a->scale,
                                             .causal = 1, .window = a->window, .softcap = a->softcap};
        st = cache->ctx->ops->attention(cache->ctx, &packed, total_q, total_kv);
    }
    if (st == FORGE_OK) forge_convert(a->out, c->dtype, out, FORGE_F32, nq);
    /* over the zeros the packed call gave their queries (they had no keys there) */
    if (st == FORGE_OK && longest > 0) st = attend_all_in_place(cache, a, lens, total_q, longest, fn);
    free(kv_offsets);
    free(q);
    free(out);
    free(k);
    free(v);
    return st;
}

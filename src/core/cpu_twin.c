/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_twin.c: running a call of a non-CPU layer on the CPU backend instead,
 * for the fallback policy and the self-check. Copy in (x, and each
 * sequence's cached prefix into a CPU cache made for the call, sequence i
 * of the batch its sequence i), compute on the layer's CPU twin through
 * the CPU backend's operations, copy out (y, and the new tokens' K and V
 * into the backend's cache). Slow by design; nothing here is on the hot
 * path. */
#include <stdlib.h>

#include "core.h"
#include "error.h"

/* Bytes of `rows` K (or V) rows of the cache. */
static size_t rows_bytes(const forge_paged_cache *c, int rows) {
    return forge_paged_row_bytes(&c->cfg) * (size_t)rows;
}

/* A CPU cache for the batch's sequences, each holding its prefix [0, pos0)
 * read from the backend's cache. */
static forge_status twin_cache(forge_paged_cache *cache, const forge_batch *b, forge_paged_cache **out) {
    static const char fn[] = "cpu twin";
    int longest = 1;
    for (int i = 0; i < b->n; i++) longest = b->lens[i] > longest ? b->lens[i] : longest;
    const forge_paged_config cfg = {.dtype = cache->cfg.dtype, .kv_heads = cache->cfg.kv_heads,
                                    .head_dim = cache->cfg.head_dim, .page_size = longest, .n_pages = b->n,
                                    .max_seqs = b->n, .max_seq_len = longest};
    forge_paged_cache *twin;
    forge_status st = forge_paged_make(cache->ctx->cpu, &cfg, 1, fn, &twin);
    if (st != FORGE_OK) return st;
    for (int i = 0; i < b->n && st == FORGE_OK; i++) {
        if (b->pos0[i] == 0) continue;
        void *k = malloc(rows_bytes(cache, b->pos0[i])), *v = malloc(rows_bytes(cache, b->pos0[i]));
        st = k && v ? cache->ctx->ops->cache_read(cache, b->ids[i], b->pos0[i], k, v, b->fn)
                    : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (st == FORGE_OK) st = twin->ctx->ops->cache_upload(twin, i, 0, b->pos0[i], k, v, b->fn);
        free(k);
        free(v);
    }
    if (st != FORGE_OK) forge_paged_cache_destroy(twin);
    else *out = twin;
    return st;
}

forge_status forge_twin_recompute(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x,
                                  void *y_host, forge_paged_cache **twin) {
    forge_context *ctx = layer->ctx;
    const forge_backend_ops *cpu = &forge_cpu_backend;
    const size_t bytes = forge_dtype_size(layer->cfg.dtype) * (size_t)b->total * layer->cfg.hidden;
    forge_paged_cache *tc = NULL;
    forge_batch local = *b; /* the twin cache's sequence i is the batch's sequence i */
    int *ids = malloc(sizeof *ids * (size_t)b->n);
    void *x_host = malloc(bytes);
    forge_status st = ids && x_host ? ctx->ops->buffer_copy(ctx, x_host, x, bytes, 1)
                                    : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "cpu twin: out of memory");
    for (int i = 0; ids && i < b->n; i++) ids[i] = i;
    local.ids = ids, local.attn.seqs = ids, local.pos_dev = NULL;
    if (st == FORGE_OK && cache) st = twin_cache(cache, b, &tc);
    forge_stage failed;
    if (st == FORGE_OK && cpu->reserve) st = cpu->reserve(layer->cpu, tc, &local);
    if (st == FORGE_OK) st = cpu->forward(layer->cpu, tc, &local, x_host, y_host, &failed);
    free(ids);
    free(x_host);
    if (st == FORGE_OK && twin) *twin = tc;
    else forge_paged_cache_destroy(tc);
    return st;
}

forge_status forge_twin_copy_out(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b,
                                 forge_paged_cache *twin, const void *y_host, void *y) {
    forge_context *ctx = layer->ctx;
    forge_status st = ctx->ops->buffer_copy(ctx, y, y_host,
                                            forge_dtype_size(layer->cfg.dtype) * (size_t)b->total * layer->cfg.hidden, 0);
    for (int i = 0; cache && i < b->n && st == FORGE_OK; i++) {
        unsigned char *k = malloc(rows_bytes(cache, b->lens[i])), *v = malloc(rows_bytes(cache, b->lens[i]));
        st = k && v ? twin->ctx->ops->cache_read(twin, i, b->lens[i], k, v, b->fn)
                    : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "cpu twin: out of memory");
        const size_t skip = rows_bytes(cache, b->pos0[i]);
        if (st == FORGE_OK)
            st = ctx->ops->cache_upload(cache, b->ids[i], b->pos0[i], b->n_tokens[i], k + skip, v + skip, b->fn);
        free(k);
        free(v);
    }
    forge_paged_cache_destroy(twin);
    return st;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_twin.c: running a call of a non-CPU layer on the CPU backend instead,
 * for the fallback policy and the self-check: copy in (x and each slot's
 * cached prefix), compute on the layer's CPU twin, copy out (y and the new
 * K, V rows). Slow by design; nothing here is on the hot path. */
#include <stdlib.h>

#include "backend.h"
#include "error.h"

/* Copies positions [0, len) of a slot from one cache to another (of the
 * same geometry), through host memory. */
static forge_status copy_slot(const forge_kv_cache *from, forge_kv_cache *to, int slot, int len) {
    if (len == 0) return FORGE_OK;
    const size_t bytes = forge_dtype_size(from->dtype) * from->kv_heads * from->head_dim * (size_t)len;
    void *k = malloc(bytes), *v = malloc(bytes);
    forge_status st = k && v ? from->ctx->ops->cache_read(from, slot, len, k, v)
                             : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "cpu twin: out of memory");
    if (st == FORGE_OK) st = to->ctx->ops->cache_write(to, slot, len, k, v);
    free(k);
    free(v);
    return st;
}

/* Makes the twin cache's slots hold positions [0, pos0) as the backend's do. */
static forge_status sync_prefixes(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                  int n_seqs) {
    forge_status st = FORGE_OK;
    if (!cache->cpu && (st = forge_kv_cache_create(layer->cpu, cache->slots, &cache->cpu)) != FORGE_OK)
        return st;
    for (int i = 0; i < n_seqs && st == FORGE_OK; i++) {
        cache->cpu->len[seqs[i].slot] = seqs[i].pos0;
        st = copy_slot(cache, cache->cpu, seqs[i].slot, seqs[i].pos0);
    }
    return st;
}

forge_status forge_cpu_recompute(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                 int n_seqs, int total, const void *x, void *y_host) {
    forge_context *ctx = layer->ctx;
    size_t bytes = forge_dtype_size(layer->cfg.dtype) * (size_t)total * layer->cfg.hidden;
    void *x_host = malloc(bytes);
    if (!x_host) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "cpu twin: out of memory");
    forge_status st = ctx->ops->buffer_copy(ctx, x_host, x, bytes, 1);
    if (st == FORGE_OK && cache) st = sync_prefixes(layer, cache, seqs, n_seqs);
    if (st == FORGE_OK)
        st = forge_layer_forward(layer->cpu, cache ? cache->cpu : NULL, seqs, n_seqs, x_host, y_host);
    free(x_host);
    return st;
}

forge_status forge_cpu_copy_out(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                int n_seqs, int total, const void *y_host, void *y) {
    forge_context *ctx = layer->ctx;
    forge_status st = ctx->ops->buffer_copy(ctx, y, y_host,
                                            forge_dtype_size(layer->cfg.dtype) * (size_t)total * layer->cfg.hidden, 0);
    for (int i = 0; cache && i < n_seqs && st == FORGE_OK; i++)
        st = copy_slot(cache->cpu, cache, seqs[i].slot, seqs[i].pos0 + seqs[i].n_tokens);
    return st;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kv_cache.c: KV cache handles and slot bookkeeping; storage is the backend's. */
#include <stdlib.h>

#include "backend.h"
#include "error.h"

forge_status forge_kv_cache_create(forge_layer *layer, int slots, forge_kv_cache **out) {
    static const char fn[] = "forge_kv_cache_create";
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    if (slots < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: slots = %d is below 1", fn, slots);
    const forge_layer_config *cfg = &layer->cfg;
    /* K and V: 2 * slots * kv_heads * max_seq * head_dim elements */
    size_t elems = (size_t)cfg->kv_heads * (size_t)cfg->max_seq * (size_t)cfg->head_dim;
    if (elems > SIZE_MAX / 2 / forge_dtype_size(cfg->dtype) / (size_t)slots)
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: %d slots of %zu elements overflow size_t",
                          fn, slots, elems);
    forge_kv_cache *cache = calloc(1, sizeof *cache);
    int *len = calloc((size_t)slots, sizeof *len);
    if (!cache || !len) {
        free(cache);
        free(len);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    *cache = (forge_kv_cache){
        .ctx = layer->ctx,
        .slots = slots,
        .kv_heads = cfg->kv_heads,
        .head_dim = cfg->head_dim,
        .max_seq = cfg->max_seq,
        .dtype = cfg->dtype,
        .len = len,
    };
    forge_status st = layer->ctx->ops->cache_init(cache);
    if (st != FORGE_OK) {
        free(len);
        free(cache);
        return st;
    }
    *out = cache;
    return FORGE_OK;
}

void forge_kv_cache_destroy(forge_kv_cache *cache) {
    if (!cache) return;
    cache->ctx->ops->cache_free(cache);
    free(cache->len);
    free(cache);
}

int forge_kv_cache_slots(const forge_kv_cache *cache) { return cache ? cache->slots : 0; }

static forge_status check_slot(const forge_kv_cache *cache, int slot, const char *fn) {
    FORGE_CHECK_NOT_NULL(cache, fn);
    if (slot < 0 || slot >= cache->slots)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: slot %d is outside the cache's %d slots",
                          fn, slot, cache->slots);
    return FORGE_OK;
}

forge_status forge_kv_cache_len(const forge_kv_cache *cache, int slot, int *len) {
    forge_status st = check_slot(cache, slot, "forge_kv_cache_len");
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(len, "forge_kv_cache_len");
    *len = cache->len[slot];
    return FORGE_OK;
}

forge_status forge_kv_cache_reset(forge_kv_cache *cache, int slot) {
    forge_status st = check_slot(cache, slot, "forge_kv_cache_reset");
    if (st != FORGE_OK) return st;
    cache->len[slot] = 0;
    return FORGE_OK;
}

forge_status forge_kv_cache_read(const forge_kv_cache *cache, int slot, void *k, void *v) {
    forge_status st = check_slot(cache, slot, "forge_kv_cache_read");
    if (st != FORGE_OK) return st;
    if (cache->len[slot] == 0) return FORGE_OK;
    return cache->ctx->ops->cache_read(cache, slot, cache->len[slot], k, v);
}

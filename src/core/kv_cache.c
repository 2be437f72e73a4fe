/* SPDX-License-Identifier: Apache-2.0 */
/* kv_cache.c: the slot cache of forge.h, a face over the one KV cache: a
 * pinned paged cache whose sequences are the slots, each holding one page
 * of max_seq tokens for life. A slot's length is its sequence's; a call may
 * rewrite a slot from any position up to its length (the pages are there),
 * and the checks of forge_layer_forward are the slot cache's contract. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

forge_status forge_kv_cache_create(forge_layer *layer, int slots, forge_kv_cache **out) {
    static const char fn[] = "forge_kv_cache_create";
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    if (slots < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: slots = %d is below 1", fn, slots);
    const forge_layer_config *c = &layer->cfg;
    /* K and V: 2 * slots * max_seq * kv_heads * head_dim elements */
    const size_t elems = (size_t)c->kv_heads * (size_t)c->max_seq * (size_t)c->head_dim;
    if (elems > SIZE_MAX / 2 / forge_dtype_size(c->dtype) / (size_t)slots)
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: %d slots of %zu elements overflow size_t", fn, slots, elems);
    const forge_paged_config cfg = {.dtype = c->dtype, .kv_heads = c->kv_heads, .head_dim = c->head_dim,
                                    .page_size = c->max_seq, .n_pages = slots, .max_seqs = slots,
                                    .max_seq_len = c->max_seq};
    forge_kv_cache *cache = calloc(1, sizeof *cache);
    if (!cache) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    forge_status st = forge_paged_make(layer->ctx, &cfg, 1, fn, &cache->pages);
    if (st != FORGE_OK) {
        free(cache);
        return st;
    }
    *out = cache;
    return FORGE_OK;
}

void forge_kv_cache_destroy(forge_kv_cache *cache) {
    if (!cache) return;
    forge_paged_cache_destroy(cache->pages);
    free(cache);
}

int forge_kv_cache_slots(const forge_kv_cache *cache) { return cache ? cache->pages->cfg.max_seqs : 0; }

static forge_status check_slot(const forge_kv_cache *cache, int slot, const char *fn) {
    FORGE_CHECK_NOT_NULL(cache, fn);
    if (slot < 0 || slot >= cache->pages->cfg.max_seqs)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: slot %d is outside the cache's %d slots", fn, slot,
                          cache->pages->cfg.max_seqs);
    return FORGE_OK;
}

forge_status forge_kv_cache_len(const forge_kv_cache *cache, int slot, int *len) {
    forge_status st = check_slot(cache, slot, "forge_kv_cache_len");
    if (st != FORGE_OK) return st;
    FORGE_CHECK_NOT_NULL(len, "forge_kv_cache_len");
    *len = cache->pages->len[slot];
    return FORGE_OK;
}

forge_status forge_kv_cache_reset(forge_kv_cache *cache, int slot) {
    forge_status st = check_slot(cache, slot, "forge_kv_cache_reset");
    if (st != FORGE_OK) return st;
    cache->pages->len[slot] = 0;
    return FORGE_OK;
}

/* The cache holds a slot's rows [len, kv_heads, head_dim]; the caller gets
 * them head by head, [kv_heads, len, head_dim]. */
forge_status forge_kv_cache_read(const forge_kv_cache *cache, int slot, void *k, void *v) {
    static const char fn[] = "forge_kv_cache_read";
    forge_status st = check_slot(cache, slot, fn);
    if (st != FORGE_OK) return st;
    const forge_paged_cache *p = cache->pages;
    const size_t len = (size_t)p->len[slot], Hk = (size_t)p->cfg.kv_heads;
    const size_t head = (size_t)p->cfg.head_dim * forge_dtype_size(p->cfg.dtype), bytes = len * Hk * head;
    if (len == 0 || (!k && !v)) return FORGE_OK;
    unsigned char *rk = k ? malloc(bytes) : NULL, *rv = v ? malloc(bytes) : NULL;
    st = (!k || rk) && (!v || rv) ? p->ctx->ops->cache_read(p, slot, (int)len, rk, rv, fn)
                                  : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (size_t t = 0; st == FORGE_OK && t < len; t++)
        for (size_t g = 0; g < Hk; g++) {
            if (k) memcpy((unsigned char *)k + (g * len + t) * head, rk + (t * Hk + g) * head, head);
            if (v) memcpy((unsigned char *)v + (g * len + t) * head, rv + (t * Hk + g) * head, head);
        }
    free(rk);
    free(rv);
    return st;
}

/* The cache must have been made for a layer of the same geometry and context. */
static forge_status check_cache(const char *fn, const forge_layer *layer, const forge_kv_cache *cache) {
    forge_status st = forge_check_cache_fits(fn, layer, cache->pages);
    if (st == FORGE_OK && cache->pages->cfg.max_seq_len != layer->cfg.max_seq)
        st = forge_fail(FORGE_ERR_SHAPE, "%s: cache has max_seq %d but the layer has %d", fn,
                        cache->pages->cfg.max_seq_len, layer->cfg.max_seq);
    return st;
}

forge_status forge_check_slot_call(const char *fn, forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                   int n_seqs, const void *x, const void *y, int *total) {
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    FORGE_CHECK_NOT_NULL(x, fn);
    FORGE_CHECK_NOT_NULL(y, fn);
    if (n_seqs < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n_seqs = %d is below 1", fn, n_seqs);
    forge_status st;
    if (cache && (st = check_cache(fn, layer, cache)) != FORGE_OK) return st;
    int64_t tokens = 0;
    for (int i = 0; i < n_seqs; i++) {
        const forge_seq *s = &seqs[i];
        if ((st = forge_check_seq(fn, seqs, i, layer->cfg.max_seq, "max_seq", &tokens)) != FORGE_OK) return st;
        if (!cache) continue;
        const forge_paged_cache *p = cache->pages;
        if (s->slot < 0 || s->slot >= p->cfg.max_seqs)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].slot = %d is outside the cache's %d slots", fn,
                              i, s->slot, p->cfg.max_seqs);
        if (s->pos0 > p->len[s->slot])
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].pos0 = %d but slot %d holds only %d positions",
                              fn, i, s->pos0, s->slot, p->len[s->slot]);
    }
    if (cache && (st = forge_check_distinct(fn, &seqs[0].slot, sizeof *seqs, n_seqs, cache->pages->cfg.max_seqs,
                                            "slot")) != FORGE_OK)
        return st;
    *total = (int)tokens;
    return FORGE_OK;
}

forge_status forge_layer_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs,
                                 const void *x, void *y) {
    static const char fn[] = "forge_layer_forward";
    int total = 0;
    forge_status st = forge_check_slot_call(fn, layer, cache, seqs, n_seqs, x, y, &total);
    if (st != FORGE_OK) return st;
    return forge_run(fn, layer, cache ? cache->pages : NULL, seqs, n_seqs, x, y, NULL);
}

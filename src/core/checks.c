/* SPDX-License-Identifier: Apache-2.0 */
/* checks.c: the checks that several calls share: a layer call's batch
 * (both faces of the KV cache, kv_cache.c and forward.c, and the paged
 * cache's appends), a cache against a layer, and attention's offsets and
 * scale (attention.c, paged_attention.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

forge_status forge_check_seq(const char *fn, const forge_seq *seqs, int i, int max_pos, const char *max_name,
                             int64_t *tokens) {
    const forge_seq *s = &seqs[i];
    if (s->n_tokens < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].n_tokens = %d is below 1", fn, i, s->n_tokens);
    if (s->pos0 < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].pos0 = %d is negative", fn, i, s->pos0);
    if ((int64_t)s->pos0 + s->n_tokens > max_pos)
        return forge_fail(FORGE_ERR_CAPACITY, "%s: seqs[%d] reaches position %lld, past %s = %d", fn, i,
                          (long long)s->pos0 + s->n_tokens - 1, max_name, max_pos);
    if ((*tokens += s->n_tokens) > FORGE_MAX_DIM)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: the batch has more than %d tokens", fn, FORGE_MAX_DIM);
    return FORGE_OK;
}

/* ids are ints `stride` bytes apart: an int array's, or forge_seq's slots. */
forge_status forge_check_distinct(const char *fn, const int *ids, size_t stride, int n, int n_ids, const char *what) {
    int *first = malloc(sizeof *first * (size_t)n_ids); /* the entry where each id was seen, or -1 */
    if (!first) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memset(first, 0xff, sizeof *first * (size_t)n_ids);
    forge_status st = FORGE_OK;
    for (int i = 0; i < n && st == FORGE_OK; i++) {
        const int id = *(const int *)((const char *)ids + (size_t)i * stride);
        if (first[id] >= 0)
            st = forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s %d appears twice in the batch (entries %d and %d)", fn,
                            what, id, first[id], i);
        first[id] = i;
    }
    free(first);
    return st;
}


forge_status forge_check_cache_fits(const char *fn, const forge_layer *layer, const forge_paged_cache *cache) {
    const forge_layer_config *lc = &layer->cfg;
    const forge_paged_config *cc = &cache->cfg;
    if (cache->ctx != layer->ctx)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: the cache belongs to another context than the layer", fn);
    if (cc->dtype != lc->dtype)
        return forge_fail(FORGE_ERR_DTYPE, "%s: cache dtype %s differs from layer dtype %s", fn,
                          forge_dtype_name(cc->dtype), forge_dtype_name(lc->dtype));
    if (cc->kv_heads != lc->kv_heads || cc->head_dim != lc->head_dim)
        return forge_fail(FORGE_ERR_SHAPE, "%s: cache has kv_heads %d, head_dim %d but the layer has %d, %d", fn,
                          cc->kv_heads, cc->head_dim, lc->kv_heads, lc->head_dim);
    return FORGE_OK;
}

forge_status forge_check_offsets(const char *fn, const char *name, const int *offsets, int batch, int *total) {
    if (offsets[0] != 0) return forge_fail(FORGE_ERR_SHAPE, "%s: %s[0] is %d, not 0", fn, name, offsets[0]);
    for (int b = 0; b < batch; b++)
        if (offsets[b + 1] < offsets[b])
            return forge_fail(FORGE_ERR_SHAPE, "%s: %s[%d] = %d is below %s[%d] = %d", fn, name, b + 1, offsets[b + 1],
                              name, b, offsets[b]);
    *total = offsets[batch];
    return FORGE_OK;
}

forge_status forge_check_scale(const char *fn, float scale) {
    if (!(scale >= 0.0f) || isinf(scale))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: scale %g is not a finite number >= 0", fn, (double)scale);
    return FORGE_OK;
}

forge_status forge_check_score_options(const char *fn, const char *owner, int window, float softcap) {
    if (window < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %swindow %d is negative (0: no window)", fn, owner, window);
    if (!(softcap >= 0.0f) || isinf(softcap))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %ssoftcap %g is not a finite number >= 0 (0: off)", fn,
                          owner, (double)softcap);
    return FORGE_OK;
}

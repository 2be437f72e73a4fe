/* SPDX-License-Identifier: Apache-2.0 */
/* paged_attention.c: attention of new queries over a paged cache
 * (forge_paged_attention) and the split size it would use: every argument
 * checked here, the work done by the cache's backend. */
#include <math.h>
#include <stdlib.h>

#include "core.h"
#include "error.h"

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
    forge_status st = forge_check_scale(fn, a->scale);
    if (st == FORGE_OK) st = forge_check_score_options(fn, "args->", a->window, a->softcap);
    if (st != FORGE_OK) return st;
    if (a->split_size < 0 || a->split_size % c->page_size != 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: split_size %d is not 0 or a positive multiple of the "
                          "page size %d", fn, a->split_size, c->page_size);
    FORGE_CHECK_NAMED(a->seqs, "args->seqs", fn);
    FORGE_CHECK_NAMED(a->q_offsets, "args->q_offsets", fn);
    if ((st = forge_check_offsets(fn, "q_offsets", a->q_offsets, a->batch, total_q)) != FORGE_OK) return st;
    for (int b = 0; b < a->batch; b++) {
        if ((st = forge_paged_check_live(cache, a->seqs[b], fn)) != FORGE_OK) return st;
        const int nq = a->q_offsets[b + 1] - a->q_offsets[b];
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
    st = cache->ctx->ops->paged_attention(cache, &resolved, lens, total_q, NULL, fn);
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

/* SPDX-License-Identifier: Apache-2.0 */
/* layer_paged.c: the layer's forward call over a paged KV cache. The checks,
 * the pages of the new tokens (found before the backend runs, given back if
 * it fails), and the lengths, advanced after it; the backend projects,
 * rotates, writes K and V into the pages and attends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

forge_status forge_check_forward_paged(const char *fn, forge_layer *layer, forge_paged_cache *cache,
                                       const forge_seq *seqs, int n_seqs, const void *x, const void *y,
                                       int at_length, int *total) {
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(cache, fn);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    FORGE_CHECK_NOT_NULL(x, fn);
    FORGE_CHECK_NOT_NULL(y, fn);
    if (n_seqs < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n_seqs = %d is below 1", fn, n_seqs);
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
    if (layer->paged_split % cc->page_size != 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: the layer's paged split size %d is not a multiple of the cache's page size %d", fn,
                          layer->paged_split, cc->page_size);
    if (!layer->ctx->ops->forward_paged)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the %s backend has no paged forward call", fn,
                          forge_backend_name(layer->ctx->ops->kind));
    int64_t tokens = 0;
    for (int i = 0; i < n_seqs; i++) {
        const forge_seq *s = &seqs[i];
        if (s->slot < 0 || s->slot >= cc->max_seqs || cache->len[s->slot] < 0)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].slot = %d is not a live sequence of the cache",
                              fn, i, s->slot);
        forge_status st = forge_check_seq(fn, seqs, i, cc->max_seq_len, "the cache's max_seq_len", &tokens);
        if (st != FORGE_OK) return st;
        if (at_length && s->pos0 != cache->len[s->slot])
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                              "%s: seqs[%d].pos0 = %d but sequence %d holds %d tokens: a paged call appends at the end",
                              fn, i, s->pos0, s->slot, cache->len[s->slot]);
    }
    forge_status st = forge_check_distinct(fn, seqs, n_seqs, cc->max_seqs, "sequence");
    if (st == FORGE_OK) *total = (int)tokens;
    return st;
}

forge_status forge_paged_step_make(forge_paged_step *step, const forge_layer *layer, const forge_seq *seqs,
                                   int n_seqs) {
    memset(step, 0, sizeof *step);
    int *mem = malloc(sizeof *mem * (5 * (size_t)n_seqs + 1));
    if (!mem) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_layer_forward_paged: out of memory");
    step->seqs = seqs;
    step->n = n_seqs;
    step->ids = mem, step->pos0 = mem + n_seqs, step->n_tokens = mem + 2 * n_seqs, step->lens = mem + 3 * n_seqs;
    step->rows = mem + 4 * n_seqs;
    step->rows[0] = 0;
    for (int i = 0; i < n_seqs; i++) {
        step->ids[i] = seqs[i].slot, step->pos0[i] = seqs[i].pos0, step->n_tokens[i] = seqs[i].n_tokens;
        step->lens[i] = seqs[i].pos0 + seqs[i].n_tokens;
        step->rows[i + 1] = step->rows[i] + seqs[i].n_tokens;
    }
    step->total = step->rows[n_seqs];
    step->attn = (forge_paged_attention_args){.batch = n_seqs, .seqs = step->ids, .q_offsets = step->rows,
                                              .heads = layer->cfg.heads,
                                              .scale = 1.0f / sqrtf((float)layer->cfg.head_dim),
                                              .split_size = layer->paged_split};
    return FORGE_OK;
}

void forge_paged_step_free(forge_paged_step *step) { free(step->ids); }

forge_status forge_run_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                                     int n_seqs, const void *x, void *y, forge_graph *graph) {
    static const char fn[] = "forge_layer_forward_paged";
    const forge_backend_ops *ops = layer->ctx->ops;
    forge_paged_step step;
    forge_status st = forge_paged_step_make(&step, layer, seqs, n_seqs);
    if (st != FORGE_OK) return st;
    forge_page_growth *g = malloc(sizeof *g * (size_t)n_seqs);
    if (!g) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == FORGE_OK) st = forge_paged_check_growth(cache, n_seqs, step.ids, step.n_tokens, fn);
    if (st == FORGE_OK) st = forge_paged_grow(cache, n_seqs, step.ids, step.n_tokens, g);
    if (st == FORGE_OK) {
        forge_stage failed = FORGE_STAGE_COUNT;
        if (graph && ops->graph_launch) {
            st = ops->graph_launch(graph);
        } else {
            if (ops->reserve_paged) st = ops->reserve_paged(layer, cache, &step);
            if (st == FORGE_OK) st = ops->forward_paged(layer, cache, &step, x, y, &failed);
        }
        if (st != FORGE_OK) {
            forge_paged_ungrow(cache, n_seqs, step.ids, g);
        } else {
            for (int i = 0; i < n_seqs; i++) cache->len[step.ids[i]] = step.lens[i];
            if (layer->profiling) layer->has_timings = !(graph && ops->graph_launch); /* a graph is not timed */
        }
    }
    free(g);
    forge_paged_step_free(&step);
    return st;
}

forge_status forge_layer_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                                       int n_seqs, const void *x, void *y) {
    static const char fn[] = "forge_layer_forward_paged";
    int total = 0;
    forge_status st = forge_check_forward_paged(fn, layer, cache, seqs, n_seqs, x, y, 1, &total);
    if (st != FORGE_OK) return st;
    return forge_run_forward_paged(layer, cache, seqs, n_seqs, x, y, NULL);
}

forge_status forge_layer_set_paged_split(forge_layer *layer, int split_size) {
    FORGE_CHECK_NOT_NULL(layer, "forge_layer_set_paged_split");
    if (split_size < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_layer_set_paged_split: split_size %d is negative",
                          split_size);
    layer->paged_split = split_size;
    return FORGE_OK;
}

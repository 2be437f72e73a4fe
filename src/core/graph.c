/* SPDX-License-Identifier: Apache-2.0 */
/* graph.c: recorded forward calls of fixed shape, made through either face
 * of the KV cache (slots, or a paged cache) or without one. A backend with
 * graph_capture records them as one replayable unit (CUDA graphs);
 * elsewhere a graph is the call's arguments, replayed as a plain call. A
 * launch runs as forward.c runs every call. */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

/* Makes room for the recorded call and captures it, where the backend can. */
static forge_status reserve_and_capture(forge_graph *g, const char *fn) {
    forge_layer *layer = g->layer;
    const forge_backend_ops *ops = layer->ctx->ops;
    forge_batch b;
    forge_status st = forge_batch_make(&b, fn, layer, g->seqs, g->n_seqs, g->cache != NULL);
    if (st != FORGE_OK) return st;
    if (ops->reserve) st = ops->reserve(layer, g->cache, &b);
    if (st == FORGE_OK && ops->graph_capture) st = ops->graph_capture(g, &b);
    forge_batch_free(&b);
    return st;
}

void forge_graph_destroy(forge_graph *graph) {
    if (!graph) return;
    const forge_backend_ops *ops = graph->layer->ctx->ops;
    if (ops->graph_free) ops->graph_free(graph);
    free(graph->seqs);
    free(graph);
}

/* A graph of the call, reserved and captured; graph->seqs a copy of seqs. */
static forge_status record(const char *fn, forge_graph proto, const forge_seq *seqs, forge_graph **out) {
    forge_graph *g = calloc(1, sizeof *g);
    forge_seq *copy = malloc(sizeof *copy * (size_t)proto.n_seqs);
    if (!g || !copy) {
        free(g);
        free(copy);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    memcpy(copy, seqs, sizeof *copy * (size_t)proto.n_seqs);
    *g = proto;
    g->seqs = copy;
    forge_status st = reserve_and_capture(g, fn);
    if (st != FORGE_OK) {
        forge_graph_destroy(g);
        return st;
    }
    *out = g;
    return FORGE_OK;
}

forge_status forge_graph_create(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                int n_seqs, const void *x, void *y, forge_graph **out) {
    static const char fn[] = "forge_graph_create";
    FORGE_CHECK_NOT_NULL(out, fn);
    int total = 0;
    forge_status st = forge_check_slot_call(fn, layer, cache, seqs, n_seqs, x, y, &total);
    if (st != FORGE_OK) return st;
    return record(fn, (forge_graph){.layer = layer, .cache = cache ? cache->pages : NULL, .slots = cache,
                                    .n_seqs = n_seqs, .total = total, .x = x, .y = y},
                  seqs, out);
}

forge_status forge_graph_create_paged(forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                                      int n_seqs, const void *x, void *y, forge_graph **out) {
    static const char fn[] = "forge_graph_create_paged";
    FORGE_CHECK_NOT_NULL(out, fn);
    int total = 0;
    forge_status st = forge_check_paged_call(fn, layer, cache, seqs, n_seqs, x, y, 0, &total);
    if (st != FORGE_OK) return st;
    return record(fn, (forge_graph){.layer = layer, .cache = cache, .n_seqs = n_seqs, .total = total, .x = x, .y = y},
                  seqs, out);
}

/* A graph made by forge_graph_create_paged: its calls append at the end. */
static int is_paged(const forge_graph *g) { return g->cache && !g->slots; }

forge_status forge_graph_update(forge_graph *graph, const forge_seq *seqs, int n_seqs) {
    static const char fn[] = "forge_graph_update";
    FORGE_CHECK_NOT_NULL(graph, fn);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    if (n_seqs != graph->n_seqs)
        return forge_fail(FORGE_ERR_SHAPE, "%s: %d sequences, the graph has %d", fn, n_seqs,
                          graph->n_seqs);
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i].slot != graph->seqs[i].slot || seqs[i].n_tokens != graph->seqs[i].n_tokens)
            return forge_fail(FORGE_ERR_SHAPE,
                              "%s: seqs[%d] has slot %d and %d tokens, the graph slot %d and %d",
                              fn, i, seqs[i].slot, seqs[i].n_tokens, graph->seqs[i].slot,
                              graph->seqs[i].n_tokens);
        const int max_seq = is_paged(graph) ? graph->cache->cfg.max_seq_len : graph->layer->cfg.max_seq;
        if (seqs[i].pos0 < 0 || (int64_t)seqs[i].pos0 + seqs[i].n_tokens > max_seq)
            return forge_fail(FORGE_ERR_CAPACITY, "%s: seqs[%d] at pos0 %d is outside max_seq %d", fn,
                              i, seqs[i].pos0, max_seq);
    }
    forge_seq *old = malloc(sizeof *old * (size_t)n_seqs);
    if (!old) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memcpy(old, graph->seqs, sizeof *old * (size_t)n_seqs);
    memcpy(graph->seqs, seqs, sizeof *old * (size_t)n_seqs);
    forge_status st = reserve_and_capture(graph, fn);
    if (st != FORGE_OK) memcpy(graph->seqs, old, sizeof *old * (size_t)n_seqs);
    free(old);
    return st;
}

forge_status forge_graph_launch(forge_graph *graph) {
    static const char fn[] = "forge_graph_launch";
    FORGE_CHECK_NOT_NULL(graph, fn);
    int total = 0;
    forge_status st = is_paged(graph) ? forge_check_paged_call(fn, graph->layer, graph->cache, graph->seqs,
                                                               graph->n_seqs, graph->x, graph->y, 1, &total)
                                      : forge_check_slot_call(fn, graph->layer, graph->slots, graph->seqs,
                                                              graph->n_seqs, graph->x, graph->y, &total);
    if (st != FORGE_OK) return st;
    return forge_run(fn, graph->layer, graph->cache, graph->seqs, graph->n_seqs, graph->x, graph->y, graph);
}

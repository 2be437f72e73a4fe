/* SPDX-License-Identifier: Apache-2.0 */
/* graph.c: recorded forward calls of fixed shape, over a KV cache or a paged
 * one. A backend with graph_capture records them as one replayable unit
 * (CUDA graphs); elsewhere a graph is the call's arguments, replayed as a
 * plain forward call. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

/* Makes room for the recorded call and captures it, where the backend can. */
static forge_status reserve_and_capture(forge_graph *g) {
    forge_layer *layer = g->layer;
    const forge_backend_ops *ops = layer->ctx->ops;
    forge_status st = FORGE_OK;
    if (g->paged) {
        forge_paged_step step;
        if ((st = forge_paged_step_make(&step, layer, g->seqs, g->n_seqs)) != FORGE_OK) return st;
        if (ops->reserve_paged) st = ops->reserve_paged(layer, g->paged, &step);
        forge_paged_step_free(&step);
    } else if (ops->reserve) {
        st = ops->reserve(layer, g->cache, g->seqs, g->n_seqs, g->total);
    }
    if (st == FORGE_OK && ops->graph_capture) st = ops->graph_capture(g);
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
    forge_status st = reserve_and_capture(g);
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
    forge_status st = forge_check_forward(fn, layer, cache, seqs, n_seqs, x, y, &total);
    if (st != FORGE_OK) return st;
    return record(fn, (forge_graph){.layer = layer, .cache = cache, .n_seqs = n_seqs, .total = total, .x = x, .y = y},
                  seqs, out);
}

forge_status forge_graph_create_paged(forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                                      int n_seqs, const void *x, void *y, forge_graph **out) {
    static const char fn[] = "forge_graph_create_paged";
    FORGE_CHECK_NOT_NULL(out, fn);
    int total = 0;
    forge_status st = forge_check_forward_paged(fn, layer, cache, seqs, n_seqs, x, y, 0, &total);
    if (st != FORGE_OK) return st;
    return record(fn, (forge_graph){.layer = layer, .paged = cache, .n_seqs = n_seqs, .total = total, .x = x, .y = y},
                  seqs, out);
}

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
        const int max_seq = graph->paged ? graph->paged->cfg.max_seq_len : graph->layer->cfg.max_seq;
        if (seqs[i].pos0 < 0 || (int64_t)seqs[i].pos0 + seqs[i].n_tokens > max_seq)
            return forge_fail(FORGE_ERR_CAPACITY, "%s: seqs[%d] at pos0 %d is outside max_seq %d", fn,
                              i, seqs[i].pos0, max_seq);
    }
    forge_seq *old = malloc(sizeof *old * (size_t)n_seqs);
    if (!old) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memcpy(old, graph->seqs, sizeof *old * (size_t)n_seqs);
    memcpy(graph->seqs, seqs, sizeof *old * (size_t)n_seqs);
    forge_status st = reserve_and_capture(graph);
    if (st != FORGE_OK) memcpy(graph->seqs, old, sizeof *old * (size_t)n_seqs);
    free(old);
    return st;
}

forge_status forge_graph_launch(forge_graph *graph) {
    static const char fn[] = "forge_graph_launch";
    FORGE_CHECK_NOT_NULL(graph, fn);
    int total = 0;
    forge_status st;
    if (graph->paged) {
        st = forge_check_forward_paged(fn, graph->layer, graph->paged, graph->seqs, graph->n_seqs, graph->x, graph->y,
                                       1, &total);
        return st == FORGE_OK ? forge_run_forward_paged(graph->layer, graph->paged, graph->seqs, graph->n_seqs,
                                                        graph->x, graph->y, graph)
                              : st;
    }
    st = forge_check_forward(fn, graph->layer, graph->cache, graph->seqs, graph->n_seqs, graph->x, graph->y, &total);
    if (st != FORGE_OK) return st;
    const forge_backend_ops *ops = graph->layer->ctx->ops;
    if (!ops->graph_launch)
        return forge_run_forward(graph->layer, graph->cache, graph->seqs, graph->n_seqs, total,
                                 graph->x, graph->y);
    if ((st = ops->graph_launch(graph)) != FORGE_OK) return st;
    forge_commit_forward(graph->layer, graph->cache, graph->seqs, graph->n_seqs, 0);
    return FORGE_OK;
}

/* graph.c: recorded forward calls of fixed shape. A backend with graph_capture
 * records them as one replayable unit (CUDA graphs); elsewhere a graph is the
 * call's arguments, replayed as a plain forward call. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

void forge_graph_destroy(forge_graph *graph) {
    if (!graph) return;
    const forge_backend_ops *ops = graph->layer->ctx->ops;
    if (ops->graph_free) ops->graph_free(graph);
    free(graph->seqs);
    free(graph);
}

forge_status forge_graph_create(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                int n_seqs, const void *x, void *y, forge_graph **out) {
    static const char fn[] = "forge_graph_create";
    FORGE_CHECK_NOT_NULL(out, fn);
    int total = 0;
    forge_status st = forge_check_forward(fn, layer, cache, seqs, n_seqs, x, y, &total);
    if (st != FORGE_OK) return st;
    forge_graph *g = calloc(1, sizeof *g);
    forge_seq *copy = malloc(sizeof *copy * (size_t)n_seqs);
    if (!g || !copy) {
        free(g);
        free(copy);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    memcpy(copy, seqs, sizeof *copy * (size_t)n_seqs);
    *g = (forge_graph){layer, cache, copy, n_seqs, total, x, y, NULL};
    const forge_backend_ops *ops = layer->ctx->ops;
    if (ops->reserve) st = ops->reserve(layer, cache, seqs, n_seqs, total);
    if (st == FORGE_OK && ops->graph_capture) st = ops->graph_capture(g);
    if (st != FORGE_OK) {
        forge_graph_destroy(g);
        return st;
    }
    *out = g;
    return FORGE_OK;
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
        if (seqs[i].pos0 < 0 || (int64_t)seqs[i].pos0 + seqs[i].n_tokens > graph->layer->cfg.max_seq)
            return forge_fail(FORGE_ERR_CAPACITY, "%s: seqs[%d] at pos0 %d is outside max_seq %d", fn,
                              i, seqs[i].pos0, graph->layer->cfg.max_seq);
    }
    forge_seq *old = malloc(sizeof *old * (size_t)n_seqs);
    if (!old) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memcpy(old, graph->seqs, sizeof *old * (size_t)n_seqs);
    memcpy(graph->seqs, seqs, sizeof *old * (size_t)n_seqs);
    const forge_backend_ops *ops = graph->layer->ctx->ops;
    forge_status st = FORGE_OK;
    if (ops->reserve) st = ops->reserve(graph->layer, graph->cache, seqs, n_seqs, graph->total);
    if (st == FORGE_OK && ops->graph_capture) st = ops->graph_capture(graph);
    if (st != FORGE_OK) memcpy(graph->seqs, old, sizeof *old * (size_t)n_seqs);
    free(old);
    return st;
}

forge_status forge_graph_launch(forge_graph *graph) {
    static const char fn[] = "forge_graph_launch";
    FORGE_CHECK_NOT_NULL(graph, fn);
    int total = 0;
    forge_status st = forge_check_forward(fn, graph->layer, graph->cache, graph->seqs, graph->n_seqs,
                                          graph->x, graph->y, &total);
    if (st != FORGE_OK) return st;
    const forge_backend_ops *ops = graph->layer->ctx->ops;
    if (!ops->graph_launch)
        return forge_run_forward(graph->layer, graph->cache, graph->seqs, graph->n_seqs, total,
                                 graph->x, graph->y);
    if ((st = ops->graph_launch(graph)) != FORGE_OK) return st;
    forge_commit_forward(graph->layer, graph->cache, graph->seqs, graph->n_seqs);
    return FORGE_OK;
}

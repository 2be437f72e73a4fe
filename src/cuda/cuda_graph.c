/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_graph.c: a forward call captured as a CUDA graph and replayed,
 * captured again when a buffer it recorded has moved. A call whose
 * attention reads the cache's pages reads its positions from device memory
 * too, so that its graph moves along a decode loop without a new capture;
 * one over rows has them in its kernels' parameters, and is captured anew
 * (the executable graph updated in place) at new positions. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

typedef struct {
    cudaGraphExec_t exec;
    unsigned ws_gen, part_gen; /* of the buffers the capture baked in */
    /* a graph over pages: its positions, uploaded before each launch, and
     * the length its sequences may reach before the recorded splits fall short */
    int *pos_dev, *pos_host;
    int reach;
} cuda_graph;

void cuda_graph_free(forge_graph *graph) {
    cuda_graph *g = graph->impl;
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    cudaFree(g->pos_dev);
    free(g->pos_host);
    free(g);
    graph->impl = NULL;
}

/* The graph's attention reads the cache's pages (cuda_forward.c). */
static int over_pages(const forge_graph *graph) { return graph->cache && !graph->cache->pinned; }

static unsigned part_gen(const forge_graph *graph) { return ((const cuda_pool *)graph->cache->impl)->part_gen; }

/* A call since the capture has moved the workspace or the split results
 * (grown for more tokens or splits) that the graph recorded. */
static int moved(const forge_graph *graph, const cuda_graph *g) {
    return g->ws_gen != ((cuda_layer *)graph->layer->impl)->ws_gen || (over_pages(graph) && g->part_gen != part_gen(graph));
}

/* A graph over pages reads its positions when it runs, so that moved to
 * new ones it still serves, unless its buffers moved or a sequence
 * outgrew it. */
static int still_serves(const forge_graph *graph, const cuda_graph *g) {
    if (!over_pages(graph) || !g->exec || moved(graph, g)) return 0;
    for (int i = 0; i < graph->n_seqs; i++)
        if (graph->seqs[i].pos0 + graph->seqs[i].n_tokens > g->reach) return 0;
    return 1;
}

/* Captures the call in global mode, where any synchronising or host-copying
 * call fails the capture: a captured forward proves it has none. An existing
 * executable graph is updated in place when only parameters changed. */
forge_status cuda_graph_capture(forge_graph *graph, const forge_batch *b) {
    const char *fn = b->fn;
    forge_layer *layer = graph->layer;
    cuda_ctx *cx = layer->ctx->impl;
    cuda_graph *g = graph->impl;
    if (!g && !(g = graph->impl = calloc(1, sizeof *g)))
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (still_serves(graph, g)) return FORGE_OK;
    const int n = graph->n_seqs;
    if (over_pages(graph) && !g->pos_dev) {
        if (!g->pos_host && !(g->pos_host = malloc(sizeof(int) * (size_t)n)))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        CUDA_TRY(fn, cudaMalloc((void **)&g->pos_dev, sizeof(int) * (size_t)n));
    }
    forge_batch call = *b;
    g->ws_gen = ((cuda_layer *)layer->impl)->ws_gen;
    if (over_pages(graph)) {
        const int reach = g->reach;
        call.pos_dev = g->pos_dev;
        g->part_gen = part_gen(graph);
        g->reach = cuda_paged_reach(graph->cache, &b->attn, b->lens);
        /* other splits: maybe a merge kernel more or less, which an update
         * of the executable graph cannot take; it is made anew */
        if (g->exec && g->reach != reach) cudaGraphExecDestroy(g->exec), g->exec = NULL;
    }
    CUDA_TRY(fn, cudaStreamBeginCapture(cx->stream, cudaStreamCaptureModeGlobal));
    forge_stage failed;
    forge_status st = cuda_forward(layer, graph->cache, &call, graph->x, graph->y, &failed);
    cudaGraph_t captured = NULL;
    cudaError_t e = cudaStreamEndCapture(cx->stream, &captured);
    if (st != FORGE_OK) {
        if (captured) cudaGraphDestroy(captured);
        return st;
    }
    if (e) return cuda_err(fn, "cudaStreamEndCapture", e);
    if (g->exec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(g->exec, captured, &info) != cudaSuccess) {
            cudaGetLastError();
            cudaGraphExecDestroy(g->exec);
            g->exec = NULL;
        }
    }
    if (!g->exec) e = cudaGraphInstantiate(&g->exec, captured, 0);
    cudaGraphDestroy(captured);
    if (e) return cuda_err(fn, "cudaGraphInstantiate", e);
    return FORGE_OK;
}

/* A graph whose buffers moved since its capture is captured again, into
 * them as they are now; a paged graph's positions go up first, in stream
 * order, so that the launches before it have read theirs. */
forge_status cuda_graph_launch(forge_graph *graph, const forge_batch *b) {
    static const char fn[] = "forge_graph_launch";
    cuda_ctx *cx = graph->layer->ctx->impl;
    cuda_graph *g = graph->impl;
    forge_status st;
    if (moved(graph, g) && (st = cuda_graph_capture(graph, b)) != FORGE_OK) return st;
    if (over_pages(graph)) {
        for (int i = 0; i < graph->n_seqs; i++) g->pos_host[i] = graph->seqs[i].pos0;
        CUDA_TRY(fn, cudaMemcpyAsync(g->pos_dev, g->pos_host, sizeof(int) * (size_t)graph->n_seqs,
                                     cudaMemcpyHostToDevice, cx->stream));
    }
    CUDA_TRY(fn, cudaGraphLaunch(g->exec, cx->stream));
    return FORGE_OK;
}

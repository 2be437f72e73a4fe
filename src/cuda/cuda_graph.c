/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_graph.c: a forward call captured as a CUDA graph and replayed,
 * captured again when a buffer it recorded has moved. A call whose
 * attention reads the cache's pages reads its positions from device memory
 * too, so that its graph moves along a decode loop without a new capture;
 * one over rows has them in its kernels' parameters, and is captured anew
 * (the executable graph updated in place) at new positions. Also here:
 * recordings of any work on the context's stream (a model's whole step),
 * and the stamp by which their layer calls know they still serve. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

typedef struct {
    cudaGraphExec_t exec;
    uint64_t stamp; /* cuda_call_stamp of the buffers the capture baked in */
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

/* The call's attention reads the cache's pages (cuda_forward.c). */
static int over_pages(const forge_paged_cache *cache) { return cache && !cache->pinned; }

uint64_t cuda_call_stamp(const forge_layer *layer, const forge_paged_cache *cache, const forge_batch *b, int *reach) {
    const unsigned part_gen = over_pages(cache) ? ((const cuda_pool *)cache->impl)->part_gen : 0;
    if (reach) *reach = over_pages(cache) ? cuda_paged_reach(cache, &b->attn, b->lens) : 0;
    return (uint64_t)((const cuda_layer *)layer->impl)->ws_gen << 32 | part_gen;
}

/* A call since the capture has moved the workspace or the split results
 * (grown for more tokens or splits) that the graph recorded. */
static int moved(const forge_graph *graph, const cuda_graph *g) {
    return g->stamp != cuda_call_stamp(graph->layer, graph->cache, NULL, NULL);
}

/* A graph over pages reads its positions when it runs, so that moved to
 * new ones it still serves, unless its buffers moved or a sequence
 * outgrew it. */
static int still_serves(const forge_graph *graph, const cuda_graph *g) {
    if (!over_pages(graph->cache) || !g->exec || moved(graph, g)) return 0;
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
    cuda_graph *g = graph->impl;
    if (!g && !(g = graph->impl = calloc(1, sizeof *g)))
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (still_serves(graph, g)) return FORGE_OK;
    const int n = graph->n_seqs;
    if (over_pages(graph->cache) && !g->pos_dev) {
        if (!g->pos_host && !(g->pos_host = malloc(sizeof(int) * (size_t)n)))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        CUDA_TRY(fn, cudaMalloc((void **)&g->pos_dev, sizeof(int) * (size_t)n));
    }
    forge_batch call = *b;
    const int reach = g->reach;
    g->stamp = cuda_call_stamp(layer, graph->cache, b, &g->reach);
    if (over_pages(graph->cache)) {
        call.pos_dev = g->pos_dev;
        /* other splits: maybe a merge kernel more or less, which an update
         * of the executable graph cannot take; it is made anew */
        if (g->exec && g->reach != reach) cudaGraphExecDestroy(g->exec), g->exec = NULL;
    }
    forge_status st = cuda_record_begin(layer->ctx, fn);
    if (st != FORGE_OK) return st;
    forge_stage failed;
    st = cuda_forward(layer, graph->cache, &call, graph->x, graph->y, &failed);
    void *rec = g->exec;
    const forge_status end = cuda_record_end(layer->ctx, st == FORGE_OK ? &rec : NULL, fn);
    g->exec = rec;
    return st != FORGE_OK ? st : end;
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
    if (over_pages(graph->cache)) {
        for (int i = 0; i < graph->n_seqs; i++) g->pos_host[i] = graph->seqs[i].pos0;
        CUDA_TRY(fn, cudaMemcpyAsync(g->pos_dev, g->pos_host, sizeof(int) * (size_t)graph->n_seqs,
                                     cudaMemcpyHostToDevice, cx->stream));
    }
    return cuda_replay(graph->layer->ctx, g->exec, fn);
}

/* Thread-local: only this thread's calls must be capture-safe, so that
 * the other ranks' threads of a split model may grow their buffers while
 * this one records (global mode would fail their cudaMalloc). */
forge_status cuda_record_begin(forge_context *ctx, const char *fn) {
    CUDA_TRY(fn, cudaStreamBeginCapture(((cuda_ctx *)ctx->impl)->stream, cudaStreamCaptureModeThreadLocal));
    return FORGE_OK;
}

/* The capture ended; an executable graph of the same shape is updated in
 * place, else made anew. */
forge_status cuda_record_end(forge_context *ctx, void **rec, const char *fn) {
    cudaGraph_t captured = NULL;
    cudaError_t e = cudaStreamEndCapture(((cuda_ctx *)ctx->impl)->stream, &captured);
    const char *call = "cudaStreamEndCapture";
    if (!e && rec) {
        call = "cudaGraphInstantiate";
        cudaGraphExec_t exec = *rec;
        cudaGraphExecUpdateResultInfo info;
        if (exec && cudaGraphExecUpdate(exec, captured, &info) != cudaSuccess) {
            cudaGetLastError();
            cudaGraphExecDestroy(exec);
            *rec = exec = NULL;
        }
        if (!exec && !(e = cudaGraphInstantiate(&exec, captured, 0))) *rec = exec;
    }
    if (captured) cudaGraphDestroy(captured);
    if (e) return cuda_err(fn, call, e);
    return FORGE_OK;
}

forge_status cuda_replay(forge_context *ctx, void *rec, const char *fn) {
    CUDA_TRY(fn, cudaGraphLaunch((cudaGraphExec_t)rec, ((cuda_ctx *)ctx->impl)->stream));
    return FORGE_OK;
}

void cuda_record_free(void *rec) {
    if (rec) cudaGraphExecDestroy((cudaGraphExec_t)rec);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_forward.c: the CUDA backend's forward call, the one way every layer
 * call goes, in every dtype. It queues, on the context's stream with no
 * host copy or synchronisation (so that a graph can record it):
 *   qkv  = x Wqkv^T + b        cuBLASLt, bias in the epilogue (cuda_linear.c)
 *   split, RoPE, K, V -> rows  split_rope.cu: Q token-major, K and V into
 *                              the cache's pages (or the call's scratch)
 *   attention                  over rows where each sequence's K and V lie
 *                              one after another (no cache, or a pinned
 *                              one): the flash kernels (cuda_attention.c);
 *                              else over the pages, split and merged
 *                              (cuda_paged.c)
 *   y    = attn Wo^T + b       as qkv
 * An fp32 call of few tokens takes linear_small.cu's GEMMs instead of
 * cuBLASLt, with the split and RoPE in the QKV projection's epilogue. Also
 * here: the workspace of a call (reserve) and stage timings. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

/* The attention reads rows (cuda_attend_rows), not pages. */
static int reads_rows(const forge_paged_cache *cache) { return !cache || cache->pinned; }

/* Grows a workspace buffer of the layer to `bytes` (contents dropped); the
 * move invalidates the graphs that recorded it (ws_gen). */
static forge_status grow(cuda_layer *l, void **p, size_t bytes, const char *fn) {
    l->ws_gen++;
    cudaFree(*p);
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e) {
        cudaGetLastError();
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: no device memory for %zu bytes of workspace", fn, bytes);
    }
    return FORGE_OK;
}

forge_status cuda_reserve(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b) {
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    forge_status st = FORGE_OK;
    if (b->total > l->ws_tokens) {
        const size_t t = (size_t)b->total * forge_dtype_size(c->dtype), hd = (size_t)c->heads * c->head_dim,
                     kvd = (size_t)c->kv_heads * c->head_dim;
        if (st == FORGE_OK) st = grow(l, &l->qkv, t * (hd + 2 * kvd), b->fn);
        if (st == FORGE_OK) st = grow(l, &l->q, t * hd, b->fn);
        if (st == FORGE_OK) st = grow(l, &l->attn, t * hd, b->fn);
        if (st == FORGE_OK) st = grow(l, &l->k_tmp, t * kvd, b->fn);
        if (st == FORGE_OK) st = grow(l, &l->v_tmp, t * kvd, b->fn);
        l->ws_tokens = st == FORGE_OK ? b->total : 0;
        if (st != FORGE_OK) return st;
    }
    if (cuda_unfused(layer)) {
        size_t need = 0;
        for (int i = 0; i < b->n; i++) {
            const size_t n = (size_t)c->heads * b->n_tokens[i] * b->lens[i];
            need = n > need ? n : need;
        }
        if (need > l->ws_scores) {
            st = grow(l, (void **)&l->scores, need * sizeof(float), b->fn);
            l->ws_scores = st == FORGE_OK ? need : 0;
            if (st != FORGE_OK) return st;
        }
    }
    const int qkv_dim = (c->heads + 2 * c->kv_heads) * c->head_dim, hd = c->heads * c->head_dim;
    if (!cuda_small_gemm(layer, b->total, c->hidden, qkv_dim) &&
        (st = lt_linear_plan(cx, &l->qkv_gemm, c->dtype, l->b_qkv, b->total, c->hidden, qkv_dim, b->fn)) != FORGE_OK)
        return st;
    if (!cuda_small_gemm(layer, b->total, hd, c->hidden) &&
        (st = lt_linear_plan(cx, &l->o_gemm, c->dtype, l->b_o, b->total, hd, c->hidden, b->fn)) != FORGE_OK)
        return st;
    return reads_rows(cache) ? FORGE_OK : cuda_paged_reserve(cache, &b->attn, b->lens, b->total, b->fn);
}

/* The sequences [first, first + count) of the batch as one launch's. */
static fcuda_batch launch_batch(const forge_batch *b, int first, int count) {
    fcuda_batch lb;
    memset(&lb, 0, sizeof lb);
    lb.n = count;
    for (int i = 0; i <= count; i++) lb.tok0[i] = b->rows[first + i];
    for (int i = 0; i < count; i++) {
        lb.pos0[i] = b->pos0[first + i];
        lb.seq[i] = b->ids[first + i];
        if (b->n_tokens[first + i] > lb.max_tokens) lb.max_tokens = b->n_tokens[first + i];
    }
    return lb;
}

/* Starts a stage of a forward call: fails it when the test hook asks, and
 * records its event when profiling. */
static forge_status stage_begin(forge_layer *layer, forge_stage stage, int record, forge_stage *failed, const char *fn) {
    *failed = stage;
    if (layer->ctx->fail_stage == (int)stage)
        return forge_fail(FORGE_ERR_BACKEND, "%s: %s: injected failure (test hook)", fn, forge_stage_name(stage));
    if (record) {
        cudaError_t e = cudaEventRecord(((cuda_layer *)layer->impl)->ev[stage], ((cuda_ctx *)layer->ctx->impl)->stream);
        if (e) return cuda_err(fn, "cudaEventRecord", e);
    }
    return FORGE_OK;
}

static forge_status check_device_pointer(const void *p, const char *name, const char *fn) {
    struct cudaPointerAttributes attr;
    cudaError_t e = cudaPointerGetAttributes(&attr, p);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s is not a device pointer (%s)", fn, name,
                          cudaGetErrorString(e));
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: %s is host memory; the cuda backend takes device buffers (forge_buffer_alloc)", fn, name);
    return FORGE_OK;
}

forge_status cuda_forward(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x, void *y,
                          forge_stage *failed) {
    const char *fn = b->fn;
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    forge_status st;
    if ((st = check_device_pointer(x, "x", fn)) != FORGE_OK || (st = check_device_pointer(y, "y", fn)) != FORGE_OK)
        return st;
    enum cudaStreamCaptureStatus capturing;
    CUDA_TRY(fn, cudaStreamIsCapturing(cx->stream, &capturing));
    const int record = layer->profiling && capturing == cudaStreamCaptureStatusNone;
    BLAS_TRY(fn, cublasSetStream(cx->blas, cx->stream));

    const fcuda_pool *pool = cache ? &((const cuda_pool *)cache->impl)->pool : NULL;
    const fcuda_split_args split = {.qkv = l->qkv, .q = l->q, .k = pool ? pool->k : l->k_tmp,
                                    .v = pool ? pool->v : l->v_tmp, .inv_freq = l->inv_freq,
                                    .table = pool ? pool->table : NULL, .page_size = pool ? pool->page_size : 0,
                                    .max_pages = pool ? pool->max_pages : 0, .heads = c->heads,
                                    .kv_heads = c->kv_heads, .head_dim = c->head_dim, .rope_style = c->rope_style,
                                    .dtype = c->dtype, .pos = b->pos_dev};
    const int qkv_dim = (c->heads + 2 * c->kv_heads) * c->head_dim, hd = c->heads * c->head_dim;
    /* a small fp32 call splits in the projection's epilogue: that stage is empty */
    if ((st = stage_begin(layer, FORGE_STAGE_QKV, record, failed, fn)) != FORGE_OK) return st;
    const int fused = cuda_small_gemm(layer, b->total, c->hidden, qkv_dim);
    if (fused) { /* the whole batch fits one launch: total <= FCUDA_SMALL_TOKENS <= FCUDA_MAX_SEQS */
        const fcuda_batch lb = launch_batch(b, 0, b->n);
        CUDA_TRY(fn, fcuda_qkv_small(x, l->w_qkv, l->b_qkv, c->hidden, &split, &lb, cx->stream));
    } else if ((st = cuda_linear(layer, &l->qkv_gemm, l->qkv, x, l->w_qkv, l->b_qkv, b->total, c->hidden, qkv_dim,
                                 fn)) != FORGE_OK) {
        return st;
    }
    if (c->qk_norm) { /* RMSNorm of each head of Q, then of K, in place in the QKV rows */
        const size_t es = forge_dtype_size(c->dtype);
        CUDA_TRY(fn, fcuda_rmsnorm(c->dtype, l->qkv, l->qkv, NULL, l->q_norm, (long)b->total * c->heads, c->head_dim,
                                   c->norm_eps, c->heads, qkv_dim, cx->stream));
        char *k = (char *)l->qkv + (size_t)hd * es;
        CUDA_TRY(fn, fcuda_rmsnorm(c->dtype, k, k, NULL, l->k_norm, (long)b->total * c->kv_heads, c->head_dim, c->norm_eps,
                                   c->kv_heads, qkv_dim, cx->stream));
    }

    if ((st = stage_begin(layer, FORGE_STAGE_ROPE_CACHE, record, failed, fn)) != FORGE_OK) return st;
    for (int first = 0; !fused && first < b->n; first += FCUDA_MAX_SEQS) {
        const fcuda_batch lb = launch_batch(b, first, cuda_launch_seqs(b->n, first));
        fcuda_split_args a = split;
        a.pos = split.pos ? split.pos + first : NULL;
        CUDA_TRY(fn, fcuda_split_rope(&a, &lb, cx->stream));
    }

    if ((st = stage_begin(layer, FORGE_STAGE_ATTENTION, record, failed, fn)) != FORGE_OK) return st;
    if (reads_rows(cache)) {
        st = cuda_attend_rows(layer, cache, b);
    } else {
        forge_paged_attention_args attn = b->attn;
        attn.q = l->q, attn.out = l->attn;
        st = cuda_paged_attention(cache, &attn, b->lens, b->total, b->pos_dev, fn);
    }
    if (st != FORGE_OK) return st;

    if ((st = stage_begin(layer, FORGE_STAGE_OUTPUT, record, failed, fn)) != FORGE_OK) return st;
    if ((st = cuda_linear(layer, &l->o_gemm, y, l->attn, l->w_o, l->b_o, b->total, hd, c->hidden, fn)) != FORGE_OK)
        return st;
    if (record) CUDA_TRY(fn, cudaEventRecord(l->ev[FORGE_STAGE_COUNT], cx->stream));
    *failed = FORGE_STAGE_COUNT;
    return FORGE_OK;
}

forge_status cuda_timings(forge_layer *layer, double us[FORGE_STAGE_COUNT]) {
    static const char fn[] = "forge_layer_last_timings";
    cuda_layer *l = layer->impl;
    CUDA_TRY(fn, cudaEventSynchronize(l->ev[FORGE_STAGE_COUNT]));
    for (int i = 0; i < FORGE_STAGE_COUNT; i++) {
        float ms;
        CUDA_TRY(fn, cudaEventElapsedTime(&ms, l->ev[i], l->ev[i + 1]));
        us[i] = ms * 1e3;
    }
    return FORGE_OK;
}

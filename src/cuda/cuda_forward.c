/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_forward.c: the CUDA backend's forward call. One call queues, on
 * the context's stream and with no host copy or synchronisation:
 *   qkv  = x Wqkv^T + b       cuBLASLt, bias in the epilogue
 *   split, RoPE, K/V -> cache  one fused kernel (split_rope.cu)
 *   attention                 flash kernel, or the unfused path
 *                             (cuBLAS strided-batched QK^T, softmax, PV)
 *   y    = attn Wo^T + b      cuBLASLt, bias in the epilogue
 * Calls of few tokens take linear_small.cu's kernels instead of cuBLASLt,
 * with the split and RoPE in the QKV projection's epilogue. That is the
 * fp32 layer; a bf16 or fp16 one (layer16.c) takes cuBLASLt at every size,
 * split_rope_rows.cu, and the tensor-core flash kernels. Sequence metadata
 * travels as kernel parameters (kernels.h). Also here: the workspace of a
 * call (reserve), stage timings, and the projection every path calls. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

/* bf16 and fp16 layers always run flash attention (on tensor cores) */
static int use_flash(const forge_layer *layer) {
    return layer->cfg.dtype != FORGE_F32 ||
           (layer->attention == FORGE_ATTENTION_FLASH && fcuda_flash_supported(layer->cfg.head_dim));
}

/* Grows a workspace buffer of the layer to `bytes` (contents dropped); the
 * move invalidates the graphs that recorded it (ws_gen). */
static forge_status grow(cuda_layer *l, void **p, size_t bytes) {
    l->ws_gen++;
    cudaFree(*p);
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e) {
        cudaGetLastError();
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_layer_forward: no device memory for %zu bytes of workspace",
                          bytes);
    }
    return FORGE_OK;
}

/* An fp32 call of few tokens runs linear_small.cu's GEMM instead of cuBLASLt. */
static int small_gemm(const forge_layer *layer, int tokens, int in, int out) {
    return layer->cfg.dtype == FORGE_F32 && fcuda_linear_small_fits(tokens, in, out);
}

forge_status cuda_linear(forge_layer *layer, const lt_linear *plan, void *y, const void *x, const void *w,
                         const void *bias, int tokens, int in, int out) {
    cuda_ctx *cx = layer->ctx->impl;
    if (!small_gemm(layer, tokens, in, out)) return lt_linear_run(cx, plan, y, x, w);
    CUDA_TRY("forge_layer_forward", fcuda_linear_small(x, w, bias, y, tokens, in, out, cx->stream));
    return FORGE_OK;
}

forge_status cuda_reserve(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs, int total) {
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    forge_status st = FORGE_OK;
    const int fp32 = c->dtype == FORGE_F32;
    if (total > l->ws_tokens) {
        const size_t t = (size_t)total * forge_dtype_size(c->dtype), hd = (size_t)c->heads * c->head_dim,
                     kvd = (size_t)c->kv_heads * c->head_dim;
        if (st == FORGE_OK) st = grow(l, &l->qkv, t * (hd + 2 * kvd));
        if (st == FORGE_OK) st = grow(l, &l->q, t * hd);
        if (st == FORGE_OK) st = grow(l, &l->attn, t * hd);
        if (st == FORGE_OK && fp32) st = grow(l, (void **)&l->heads_out, t * hd);
        if (st == FORGE_OK) st = grow(l, &l->k_tmp, t * kvd);
        if (st == FORGE_OK) st = grow(l, &l->v_tmp, t * kvd);
        l->ws_tokens = st == FORGE_OK ? total : 0;
        if (st != FORGE_OK) return st;
    }
    if (!use_flash(layer)) {
        size_t need = 0;
        for (int i = 0; i < n_seqs; i++) {
            size_t keys = (size_t)(cache ? seqs[i].pos0 + seqs[i].n_tokens : seqs[i].n_tokens);
            size_t n = (size_t)c->heads * seqs[i].n_tokens * keys;
            need = n > need ? n : need;
        }
        if (need > l->ws_scores) {
            st = grow(l, (void **)&l->scores, need * sizeof(float));
            l->ws_scores = st == FORGE_OK ? need : 0;
            if (st != FORGE_OK) return st;
        }
    }
    const int qkv_dim = (c->heads + 2 * c->kv_heads) * c->head_dim, hd = c->heads * c->head_dim;
    if (!small_gemm(layer, total, c->hidden, qkv_dim) &&
        (st = lt_linear_plan(cx, &l->qkv_gemm, c->dtype, l->b_qkv, total, c->hidden, qkv_dim)) != FORGE_OK)
        return st;
    if (!small_gemm(layer, total, hd, c->hidden))
        return lt_linear_plan(cx, &l->o_gemm, c->dtype, l->b_o, total, hd, c->hidden);
    return FORGE_OK;
}

fcuda_batch cuda_batch_of(const forge_seq *seqs, int first, int count, int tok0) {
    fcuda_batch b;
    memset(&b, 0, sizeof b);
    b.n = count;
    b.tok0[0] = tok0;
    for (int i = 0; i < count; i++) {
        const forge_seq *s = &seqs[first + i];
        b.tok0[i + 1] = b.tok0[i] + s->n_tokens;
        b.pos0[i] = s->pos0;
        b.slot[i] = s->slot;
        b.max_tokens = s->n_tokens > b.max_tokens ? s->n_tokens : b.max_tokens;
    }
    return b;
}

/* The seed's attention for one sequence, around two strided-batched GEMMs
 * (one batch entry a KV head, its query group's rows stacked). */
static forge_status unfused_sequence(forge_layer *layer, const fcuda_kv *kv, const forge_seq *s, int tok0) {
    static const char fn[] = "forge_layer_forward: attention";
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    const int D = c->head_dim, Hk = c->kv_heads, G = c->heads / Hk, n = s->n_tokens;
    const int keys = kv->use_cache ? s->pos0 + n : n, k_pos0 = kv->use_cache ? 0 : s->pos0;
    const long long head_stride = kv->use_cache ? (long long)c->max_seq * D : (long long)n * D;
    const size_t kv_off = kv->use_cache ? (size_t)s->slot * Hk * c->max_seq * D : (size_t)tok0 * Hk * D;
    const float *q = (const float *)l->q + (size_t)c->heads * tok0 * D;
    const float scale = 1.0f / sqrtf((float)D), one = 1.0f, zero = 0.0f;
    /* scores [G*n, keys] = Q_g K_g^T * scale, i.e. scores^T = op_T(K) Q^T */
    BLAS_TRY(fn, cublasSgemmStridedBatched(cx->blas, CUBLAS_OP_T, CUBLAS_OP_N, keys, G * n, D, &scale,
                                           kv->k + kv_off, D, head_stride, q, D, (long long)G * n * D,
                                           &zero, l->scores, keys, (long long)G * n * keys, Hk));
    cudaError_t e = fcuda_softmax_causal(l->scores, c->heads * n, n, keys, s->pos0, k_pos0, cx->stream);
    if (e) return cuda_err(fn, "fcuda_softmax_causal", e);
    /* out [G*n, D] = P V_g, i.e. out^T = V^T P^T */
    BLAS_TRY(fn, cublasSgemmStridedBatched(cx->blas, CUBLAS_OP_N, CUBLAS_OP_N, D, G * n, keys, &one,
                                           kv->v + kv_off, D, head_stride, l->scores, keys,
                                           (long long)G * n * keys, &zero,
                                           l->heads_out + (size_t)c->heads * tok0 * D, D, (long long)G * n * D, Hk));
    return FORGE_OK;
}

forge_status cuda_stage_begin(forge_layer *layer, forge_stage stage, int record, forge_stage *failed) {
    *failed = stage;
    if (layer->ctx->fail_stage == (int)stage)
        return forge_fail(FORGE_ERR_BACKEND, "forge_layer_forward: %s: injected failure (test hook)",
                          forge_stage_name(stage));
    if (record) {
        cudaError_t e = cudaEventRecord(((cuda_layer *)layer->impl)->ev[stage], ((cuda_ctx *)layer->ctx->impl)->stream);
        if (e) return cuda_err("forge_layer_forward", "cudaEventRecord", e);
    }
    return FORGE_OK;
}

static forge_status check_device_pointer(const void *p, const char *name) {
    struct cudaPointerAttributes attr;
    cudaError_t e = cudaPointerGetAttributes(&attr, p);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_layer_forward: %s is not a device pointer (%s)", name, cudaGetErrorString(e));
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "forge_layer_forward: %s is host memory; the cuda backend takes device buffers (forge_buffer_alloc)", name);
    return FORGE_OK;
}

/* The fp32 layer's call (cuda_forward has checked x and y). */
static forge_status forward32(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs,
                              int total, const void *x, void *y, int record, forge_stage *failed) {
    static const char fn[] = "forge_layer_forward";
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    forge_status st;
    cudaError_t e;
    BLAS_TRY(fn, cublasSetStream(cx->blas, cx->stream));

    fcuda_kv kv = {l->k_tmp, l->v_tmp, 0, c->max_seq};
    if (cache) kv = (fcuda_kv){((cuda_cache *)cache->impl)->k, ((cuda_cache *)cache->impl)->v, 1, c->max_seq};
    fcuda_split_args split = {l->qkv, l->q, l->inv_freq, kv, c->heads, c->kv_heads, c->head_dim, (int)c->rope_style};
    const int qkv_dim = (c->heads + 2 * c->kv_heads) * c->head_dim, hd = c->heads * c->head_dim;
    /* a small call's whole batch fits one launch: total <= FCUDA_SMALL_TOKENS <= FCUDA_MAX_SEQS */
    const int small_qkv = small_gemm(layer, total, c->hidden, qkv_dim);

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_QKV, record, failed)) != FORGE_OK) return st;
    if (small_qkv) {
        fcuda_batch b = cuda_batch_of(seqs, 0, n_seqs, 0);
        if ((e = fcuda_qkv_small(x, l->w_qkv, l->b_qkv, c->hidden, &split, &b, cx->stream)))
            return cuda_err(fn, "fcuda_qkv_small", e);
    } else if ((st = lt_linear_run(cx, &l->qkv_gemm, l->qkv, x, l->w_qkv)) != FORGE_OK) {
        return st;
    }

    /* with small_qkv, done in the projection's epilogue: the stage is empty */
    if ((st = cuda_stage_begin(layer, FORGE_STAGE_ROPE_CACHE, record, failed)) != FORGE_OK) return st;
    for (int first = 0, tok0 = 0; !small_qkv && first < n_seqs; first += FCUDA_MAX_SEQS) {
        int count = cuda_launch_seqs(n_seqs, first);
        fcuda_batch b = cuda_batch_of(seqs, first, count, tok0);
        if ((e = fcuda_split_rope(&split, &b, cx->stream))) return cuda_err(fn, "fcuda_split_rope", e);
        tok0 = b.tok0[count];
    }

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_ATTENTION, record, failed)) != FORGE_OK) return st;
    if (use_flash(layer)) {
        fcuda_attn_args attn = {l->q, kv, l->attn, c->heads, c->kv_heads, c->head_dim, 1.0f / sqrtf((float)c->head_dim)};
        for (int first = 0, tok0 = 0; first < n_seqs; first += FCUDA_MAX_SEQS) {
            int count = cuda_launch_seqs(n_seqs, first);
            fcuda_batch b = cuda_batch_of(seqs, first, count, tok0);
            if ((e = fcuda_flash_attention(&attn, &b, cx->stream))) return cuda_err(fn, "fcuda_flash_attention", e);
            tok0 = b.tok0[count];
        }
    } else {
        for (int i = 0, tok0 = 0; i < n_seqs; tok0 += seqs[i].n_tokens, i++)
            if ((st = unfused_sequence(layer, &kv, &seqs[i], tok0)) != FORGE_OK) return st;
        for (int first = 0, tok0 = 0; first < n_seqs; first += FCUDA_MAX_SEQS) {
            int count = cuda_launch_seqs(n_seqs, first);
            fcuda_batch b = cuda_batch_of(seqs, first, count, tok0);
            if ((e = fcuda_flatten(l->heads_out, l->attn, c->heads, c->head_dim, &b, cx->stream)))
                return cuda_err(fn, "fcuda_flatten", e);
            tok0 = b.tok0[count];
        }
    }

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_OUTPUT, record, failed)) != FORGE_OK) return st;
    return cuda_linear(layer, &l->o_gemm, y, l->attn, l->w_o, l->b_o, total, hd, c->hidden);
}

forge_status cuda_forward_begin(forge_layer *layer, const void *x, const void *y, int *record) {
    cuda_ctx *cx = layer->ctx->impl;
    forge_status st;
    if ((st = check_device_pointer(x, "x")) != FORGE_OK || (st = check_device_pointer(y, "y")) != FORGE_OK)
        return st;
    enum cudaStreamCaptureStatus capturing;
    CUDA_TRY("forge_layer_forward", cudaStreamIsCapturing(cx->stream, &capturing));
    *record = layer->profiling && capturing == cudaStreamCaptureStatusNone;
    return FORGE_OK;
}

forge_status cuda_forward_end(forge_layer *layer, int record, forge_stage *failed) {
    cuda_ctx *cx = layer->ctx->impl;
    if (record)
        CUDA_TRY("forge_layer_forward", cudaEventRecord(((cuda_layer *)layer->impl)->ev[FORGE_STAGE_COUNT], cx->stream));
    *failed = FORGE_STAGE_COUNT;
    return FORGE_OK;
}

forge_status cuda_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                 int n_seqs, int total, const void *x, void *y, forge_stage *failed) {
    int record = 0;
    forge_status st = cuda_forward_begin(layer, x, y, &record);
    if (st != FORGE_OK) return st;
    st = layer->cfg.dtype == FORGE_F32 ? forward32(layer, cache, seqs, n_seqs, total, x, y, record, failed)
                                       : cuda_forward16(layer, cache, seqs, n_seqs, total, x, y, record, failed);
    return st == FORGE_OK ? cuda_forward_end(layer, record, failed) : st;
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

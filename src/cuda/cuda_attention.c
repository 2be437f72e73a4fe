/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_attention.c: attention over rows, where each sequence's K and V lie
 * one after another (FlashAttention's varlen layout): attention alone
 * (forge_attention_forward) on the tensor-core kernels, and the layer's
 * attention without a cache or over a pinned one, its kernel chosen from
 * the dtype: the tensor-core kernels (Hopper's, else the portable one) in
 * bf16 and fp16; in fp32 the flash kernel on CUDA cores, or the unfused
 * path (cuBLAS QK^T, softmax, cuBLAS PV). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

/* Queues tensor-core attention: Hopper's kernel where it serves the head
 * dim and the call's options and the context has not asked for the
 * portable one, else mma.sync. */
static forge_status flash_tc(forge_context *ctx, fcuda_attn_args *m, const fcuda_varlen *b, const char *fn) {
    cuda_ctx *c = ctx->impl;
    if (!c->hopper || ctx->kernel == FORGE_KERNEL_PORTABLE || !forge_support_has(SUPPORT_WGMMA, m->head_dim) ||
        !forge_support_takes(SUPPORT_WGMMA, m->window, 0.0f)) {
        CUDA_TRY(fn, fcuda_flash_mma(m, b, c->stream));
        return FORGE_OK;
    }
    /* the Hopper kernel's work counters: a context's calls run one after
     * another on its stream, and each launch leaves them zero for the next */
    m->work = c->work;
    CUDA_TRY(fn, fcuda_flash_wgmma(m, b, c->stream));
    return FORGE_OK;
}

/* forge_attention_forward on a tensor-core kernel, FCUDA_MAX_SEQS sequences
 * a launch (their offsets travel as a kernel parameter, so the call makes
 * no host copy and can be captured in a graph). */
forge_status cuda_attention(forge_context *ctx, const forge_attention_args *a, int total_q,
                                   int total_kv) {
    static const char fn[] = "forge_attention_forward";
    if (a->dtype != FORGE_BF16 && a->dtype != FORGE_F16)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend computes attention alone in bf16 and fp16, not %s",
                          fn, forge_dtype_name(a->dtype));
    char dims[64];
    if (!forge_support_has(SUPPORT_MMA, a->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend computes attention alone for head dims %s, not %d",
                          fn, forge_support_dims(SUPPORT_MMA, dims, sizeof dims), a->head_dim);
    forge_status st = forge_support_check_options(SUPPORT_MMA, a->window, a->softcap, fn);
    if (st != FORGE_OK) return st;
    const void *bufs[] = {a->q, a->k, a->v, a->out, a->lse};
    static const char *names[] = {"q", "k", "v", "out", "lse"};
    for (int i = 0; i < 5; i++)
        if ((uintptr_t)bufs[i] % (i == 4 ? 4 : 16))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s is not %d-byte aligned", fn, names[i],
                              i == 4 ? 4 : 16);
    fcuda_attn_args m = {a->q, total_kv ? a->k : a->q, total_kv ? a->v : a->q, a->out, a->lse, total_q, total_kv,
                        a->heads, a->kv_heads, a->head_dim, a->scale, a->causal, a->dtype, NULL, a->window};
    for (int first = 0; first < a->batch; first += FCUDA_MAX_SEQS) {
        fcuda_varlen b = {.n = cuda_launch_seqs(a->batch, first)};
        for (int i = 0; i <= b.n; i++) {
            b.q0[i] = a->q_offsets[first + i];
            if (i > 0 && b.q0[i] - b.q0[i - 1] > b.max_q) b.max_q = b.q0[i] - b.q0[i - 1];
        }
        for (int i = 0; i < b.n; i++) {
            b.k0[i] = a->kv_offsets[first + i];
            b.nk[i] = a->kv_offsets[first + i + 1] - b.k0[i];
        }
        if (b.max_q > 0 && (st = flash_tc(ctx, &m, &b, fn)) != FORGE_OK) return st;
    }
    return FORGE_OK;
}

/* One sequence's attention, unfused, in fp32: its query rows q0 .. q0+n-1
 * of m->q over key rows k0 .. k0+keys-1, its queries the last n of the
 * keys. The GEMMs are strided-batched over query heads: one call for all
 * heads where each has its own KV head, else one a KV head for its group
 * (its K and V read by every head of the group, a stride of 0). */
static forge_status unfused_sequence(forge_layer *layer, const fcuda_attn_args *m, int q0, int k0, int n, int keys,
                                     const char *fn) {
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    const int H = m->heads, Hk = m->kv_heads, D = m->head_dim, G = H / Hk;
    const int calls = G == 1 ? 1 : Hk, batch = G == 1 ? H : G;
    const long long kv_stride = G == 1 ? D : 0, ld_q = (long long)H * D, ld_kv = (long long)Hk * D;
    const float one = 1.0f, zero = 0.0f;
    const float *q = (const float *)m->q + (size_t)q0 * H * D;
    const float *k = (const float *)m->k + (size_t)k0 * Hk * D, *v = (const float *)m->v + (size_t)k0 * Hk * D;
    float *out = (float *)m->out + (size_t)q0 * H * D;
    /* scores [H, n, keys]: head h's scores^T = op_T(K) Q_h^T */
    for (int g = 0; g < calls; g++)
        BLAS_TRY(fn, cublasSgemmStridedBatched(cx->blas, CUBLAS_OP_T, CUBLAS_OP_N, keys, n, D, &m->scale,
                                               k + (size_t)g * D, (int)ld_kv, kv_stride, q + (size_t)g * G * D,
                                               (int)ld_q, D, &zero, l->scores + (size_t)g * G * n * keys, keys,
                                               (long long)n * keys, batch));
    cudaError_t e = fcuda_softmax_causal(l->scores, H * n, n, keys, keys - n, 0, m->window, cx->stream);
    if (e) return cuda_err(fn, "fcuda_softmax_causal", e);
    /* out_h^T [D, n] = V^T P_h^T, written straight into its rows */
    for (int g = 0; g < calls; g++)
        BLAS_TRY(fn, cublasSgemmStridedBatched(cx->blas, CUBLAS_OP_N, CUBLAS_OP_N, D, n, keys, &one,
                                               v + (size_t)g * D, (int)ld_kv, kv_stride,
                                               l->scores + (size_t)g * G * n * keys, keys, (long long)n * keys,
                                               &zero, out + (size_t)g * G * D, (int)ld_q, D, batch));
    return FORGE_OK;
}

int cuda_unfused(const forge_layer *layer) {
    return layer->cfg.dtype == FORGE_F32 &&
           (layer->attention == FORGE_ATTENTION_UNFUSED || !forge_support_has(SUPPORT_FLASH_F32, layer->cfg.head_dim));
}

forge_status cuda_attend_rows(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b) {
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    const fcuda_pool *pool = cache ? &((const cuda_pool *)cache->impl)->pool : NULL;
    fcuda_attn_args m = {l->q, pool ? pool->k : l->k_tmp, pool ? pool->v : l->v_tmp, l->attn, NULL, b->total,
                         pool ? cache->cfg.n_pages * cache->cfg.page_size : b->total, c->heads, c->kv_heads,
                         c->head_dim, b->attn.scale, 1, c->dtype, NULL, c->window};
    const int fp32 = c->dtype == FORGE_F32, flash = !cuda_unfused(layer);
    for (int first = 0; first < b->n; first += FCUDA_MAX_SEQS) {
        fcuda_varlen v = {.n = cuda_launch_seqs(b->n, first)};
        for (int i = 0; i <= v.n; i++) v.q0[i] = b->rows[first + i];
        for (int i = 0; i < v.n; i++) {
            const int s = first + i;
            /* a pinned cache's sequence: its pages in order, from its first */
            v.k0[i] = cache ? cache->table[(size_t)b->ids[s] * cache->max_pages] * cache->cfg.page_size : b->rows[s];
            v.nk[i] = b->lens[s];
            if (b->n_tokens[s] > v.max_q) v.max_q = b->n_tokens[s];
        }
        forge_status st = FORGE_OK;
        if (!fp32) st = flash_tc(layer->ctx, &m, &v, b->fn);
        else if (flash) CUDA_TRY(b->fn, fcuda_flash_f32(&m, &v, cx->stream));
        for (int i = 0; fp32 && !flash && st == FORGE_OK && i < v.n; i++)
            st = unfused_sequence(layer, &m, v.q0[i], v.k0[i], v.q0[i + 1] - v.q0[i], v.nk[i], b->fn);
        if (st != FORGE_OK) return st;
    }
    return FORGE_OK;
}

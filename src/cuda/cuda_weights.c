/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_weights.c: a layer's weights on the device: the Q and K rows of the
 * QKV projection reordered for RoPE, the events of its stage timings. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "rope_freq.h"

void cuda_layer_free(forge_layer *layer) {
    cuda_layer *l = layer->impl;
    if (!l) return;
    void *bufs[] = {l->w_qkv, l->b_qkv, l->w_o, l->b_o, l->inv_freq, l->q_norm, l->k_norm, l->qkv, l->q,
                    l->attn, l->k_tmp, l->v_tmp, l->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    lt_linear_free(&l->qkv_gemm);
    lt_linear_free(&l->o_gemm);
    for (int i = 0; i <= FORGE_STAGE_COUNT; i++)
        if (l->ev[i]) cudaEventDestroy(l->ev[i]);
    free(l);
    layer->impl = NULL;
}

/* Uploads `heads` head blocks of head_dim rows of `cols` elements of es
 * bytes (zeros when src is NULL) to element `offset` of dst, rows of each
 * head in RoPE pair order (qkv_store.cuh): row 2p from element ia(p), row
 * 2p + 1 from ib(p). */
static forge_status upload_rows(void *dst, size_t offset, const void *src, int heads, int head_dim,
                                size_t cols, size_t es, forge_rope_style style) {
    static const char fn[] = "forge_layer_create";
    const size_t row = cols * es, n = (size_t)heads * head_dim * row;
    char *to = (char *)dst + offset * es;
    if (!src) {
        CUDA_TRY(fn, cudaMemset(to, 0, n));
        return FORGE_OK;
    }
    const char *from = src;
    char *ordered = NULL;
    if (style == FORGE_ROPE_HALF) {
        if (!(ordered = malloc(n))) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        const int half = head_dim / 2;
        for (int h = 0; h < heads; h++)
            for (int p = 0; p < half; p++) {
                const size_t head = (size_t)h * head_dim;
                memcpy(ordered + (head + 2 * p) * row, from + (head + p) * row, row);
                memcpy(ordered + (head + 2 * p + 1) * row, from + (head + p + half) * row, row);
            }
        from = ordered;
    }
    cudaError_t e = cudaMemcpy(to, from, n, cudaMemcpyHostToDevice);
    free(ordered);
    if (e) return cuda_err(fn, "cudaMemcpy", e);
    return FORGE_OK;
}

forge_status cuda_layer_init(forge_layer *layer, const forge_layer_weights *w) {
    static const char fn[] = "forge_layer_create";
    const forge_layer_config *c = &layer->cfg;
    char dims[64];
    if (c->dtype != FORGE_F32 && !forge_support_has(SUPPORT_MMA, c->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the cuda backend runs %s layers at head dims %s, not %d", fn,
                          forge_dtype_name(c->dtype), forge_support_dims(SUPPORT_MMA, dims, sizeof dims), c->head_dim);
    /* the layer's attention over rows, and over pages */
    const int fp32 = c->dtype == FORGE_F32;
    forge_status st = forge_support_check_options(fp32 ? SUPPORT_FLASH_F32 : SUPPORT_MMA, c->window, c->softcap, fn);
    if (st == FORGE_OK)
        st = forge_support_check_options(fp32 ? SUPPORT_PAGED_F32 : SUPPORT_PAGED_MMA, c->window, c->softcap, fn);
    if (st != FORGE_OK) return st;
    const size_t es = forge_dtype_size(c->dtype);
    cuda_layer *l = calloc(1, sizeof *l);
    if (!l) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    layer->impl = l;
    const size_t hidden = (size_t)c->hidden, q_out = (size_t)c->heads * c->head_dim,
                 kv_out = (size_t)c->kv_heads * c->head_dim, qkv = q_out + 2 * kv_out;
    const int qkv_bias = (c->bias & (FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V)) != 0;
    double *inv_freq = malloc(sizeof *inv_freq * (size_t)(c->head_dim / 2 + 1));
    if (!inv_freq) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cudaError_t e = cudaSuccess;
    if (st == FORGE_OK) {
        forge_rope_inv_freq(c, inv_freq);
        if (!e) e = cudaMalloc(&l->w_qkv, qkv * hidden * es);
        if (!e) e = cudaMalloc(&l->w_o, hidden * q_out * es);
        if (!e) e = cudaMalloc((void **)&l->inv_freq, sizeof(double) * (size_t)(c->head_dim / 2 + 1));
        if (!e && qkv_bias) e = cudaMalloc(&l->b_qkv, qkv * es);
        if (!e && (c->bias & FORGE_BIAS_O)) e = cudaMalloc(&l->b_o, hidden * es);
        if (!e && c->qk_norm) e = cudaMalloc(&l->q_norm, (size_t)c->head_dim * es);
        if (!e && c->qk_norm) e = cudaMalloc(&l->k_norm, (size_t)c->head_dim * es);
        for (int i = 0; !e && i <= FORGE_STAGE_COUNT; i++) e = cudaEventCreate(&l->ev[i]);
        if (e) st = cuda_err(fn, "cudaMalloc", e);
    }
    /* Q and K rows (and biases) in RoPE pair order; V and O as they are */
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim;
    const forge_rope_style rope = c->rope_style, plain = FORGE_ROPE_NONE;
    if (st == FORGE_OK) st = upload_rows(l->w_qkv, 0, w->q_proj, H, D, hidden, es, rope);
    if (st == FORGE_OK) st = upload_rows(l->w_qkv, q_out * hidden, w->k_proj, Hk, D, hidden, es, rope);
    if (st == FORGE_OK) st = upload_rows(l->w_qkv, (q_out + kv_out) * hidden, w->v_proj, Hk, D, hidden, es, plain);
    if (st == FORGE_OK) st = upload_rows(l->w_o, 0, w->o_proj, 1, (int)hidden, q_out, es, plain);
    if (st == FORGE_OK && qkv_bias) st = upload_rows(l->b_qkv, 0, w->q_bias, H, D, 1, es, rope);
    if (st == FORGE_OK && qkv_bias) st = upload_rows(l->b_qkv, q_out, w->k_bias, Hk, D, 1, es, rope);
    if (st == FORGE_OK && qkv_bias) st = upload_rows(l->b_qkv, q_out + kv_out, w->v_bias, Hk, D, 1, es, plain);
    if (st == FORGE_OK && l->b_o) st = upload_rows(l->b_o, 0, w->o_bias, 1, (int)hidden, 1, es, plain);
    if (st == FORGE_OK && c->qk_norm) st = upload_rows(l->q_norm, 0, w->q_norm, 1, D, 1, es, rope);
    if (st == FORGE_OK && c->qk_norm) st = upload_rows(l->k_norm, 0, w->k_norm, 1, D, 1, es, rope);
    if (st == FORGE_OK && c->head_dim >= 2)
        if ((e = cudaMemcpy(l->inv_freq, inv_freq, sizeof(double) * (size_t)(c->head_dim / 2), cudaMemcpyHostToDevice)))
            st = cuda_err(fn, "cudaMemcpy", e);
    free(inv_freq);
    /* the copies and memsets above ran on the legacy default stream, which
     * the context's non-blocking stream does not wait for */
    if (st == FORGE_OK && (e = cudaStreamSynchronize(cudaStreamLegacy))) st = cuda_err(fn, "cudaStreamSynchronize", e);
    if (st != FORGE_OK) cuda_layer_free(layer);
    return st;
}

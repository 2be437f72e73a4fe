/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_backend.c: the CUDA backend's host side. One forward call queues, on
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
 * travels as kernel parameters (kernels.h). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

forge_status cuda_err(const char *where, const char *what, cudaError_t e) {
    return forge_fail(FORGE_ERR_BACKEND, "%s: %s: %s (%s)", where, what, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

forge_status blas_err(const char *where, const char *what, cublasStatus_t e) {
    return forge_fail(FORGE_ERR_BACKEND, "%s: %s: cuBLAS status %d", where, what, (int)e);
}

/* ------------------------------------------------------------- context */

forge_status forge_cuda_available(const char *fn) {
    int count = 0, device = 0, ptx = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: no CUDA device (%s)", fn,
                          e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    struct cudaDeviceProp prop;
    if ((e = cudaGetDevice(&device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return cuda_err(fn, "cudaGetDeviceProperties", e);
    if (prop.major < 8)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %s is sm_%d%d; Forge's CUDA kernels need sm_80 or newer",
                          fn, prop.name, prop.major, prop.minor);
    if ((e = fcuda_device_check(&ptx)) != cudaSuccess)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: this build has no code for %s (sm_%d%d): %s; rebuild with "
                          "it in CMAKE_CUDA_ARCHITECTURES", fn, prop.name, prop.major, prop.minor,
                          cudaGetErrorString(e));
    return FORGE_OK;
}

static void cuda_context_free(forge_context *ctx) {
    cuda_ctx *c = ctx->impl;
    if (!c) return;
    if (c->blas) cublasDestroy(c->blas);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->own_stream) cudaStreamDestroy(c->own_stream);
    for (int i = 0; i < 2; i++)
        if (c->watch[i]) cudaEventDestroy(c->watch[i]);
    cudaFree(c->workspace);
    cudaFree(c->work);
    free(c);
    ctx->impl = NULL;
}

/* The sm_90a kernels run on compute capability 9.0 alone, where the build
 * has them (it has, when they support a head dim). */
static int hopper_kernels_run(int major, int minor) {
    return major == 9 && minor == 0 && fcuda_flash_wgmma_supported(128);
}

static forge_status cuda_context_init(forge_context *ctx) {
    static const char fn[] = "forge_context_create";
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!c) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    ctx->impl = c;
    forge_status st = FORGE_OK;
    cudaError_t e;
    cublasStatus_t b;
    int major = 0, minor = 0, ptx = 0;
    if ((e = cudaGetDevice(&c->device)) != cudaSuccess) st = cuda_err(fn, "cudaGetDevice", e);
    else if ((e = fcuda_flash_init()) != cudaSuccess) st = cuda_err(fn, "fcuda_flash_init", e);
    else if ((e = fcuda_flash_mma_init()) != cudaSuccess) st = cuda_err(fn, "fcuda_flash_mma_init", e);
    else if ((e = fcuda_paged_init()) != cudaSuccess) st = cuda_err(fn, "fcuda_paged_init", e);
    else if ((e = cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, c->device)) != cudaSuccess)
        st = cuda_err(fn, "cudaDeviceGetAttribute", e);
    else if ((e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->device)) != cudaSuccess ||
             (e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, c->device)) != cudaSuccess)
        st = cuda_err(fn, "cudaDeviceGetAttribute", e);
    else if ((e = fcuda_device_check(&ptx)) != cudaSuccess) st = cuda_err(fn, "fcuda_device_check", e);
    else if ((c->hopper = hopper_kernels_run(major, minor)) && (e = fcuda_flash_wgmma_init()) != cudaSuccess)
        st = cuda_err(fn, "fcuda_flash_wgmma_init", e);
    else if ((e = cudaStreamCreateWithFlags(&c->own_stream, cudaStreamNonBlocking)) != cudaSuccess)
        st = cuda_err(fn, "cudaStreamCreateWithFlags", e);
    else if ((e = cudaMalloc((void **)&c->work, FCUDA_WORK_BYTES)) != cudaSuccess) st = cuda_err(fn, "cudaMalloc", e);
    else if ((e = cudaMemset(c->work, 0, FCUDA_WORK_BYTES)) != cudaSuccess) st = cuda_err(fn, "cudaMemset", e);
    else if ((e = cudaEventCreate(&c->watch[0])) != cudaSuccess || (e = cudaEventCreate(&c->watch[1])) != cudaSuccess)
        st = cuda_err(fn, "cudaEventCreate", e);
    else if ((e = cudaMalloc(&c->workspace, WORKSPACE_BYTES)) != cudaSuccess) st = cuda_err(fn, "cudaMalloc", e);
    else if ((b = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS) st = blas_err(fn, "cublasCreate", b);
    else if ((b = cublasLtCreate(&c->lt)) != CUBLAS_STATUS_SUCCESS) st = blas_err(fn, "cublasLtCreate", b);
    else if ((b = cublasSetWorkspace(c->blas, c->workspace, WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS)
        st = blas_err(fn, "cublasSetWorkspace", b);
    c->stream = c->own_stream;
    if (st == FORGE_OK) fcuda_pdl_enable(major, ptx);
    if (st != FORGE_OK) cuda_context_free(ctx);
    return st;
}

static forge_status cuda_set_stream(forge_context *ctx, void *stream) {
    cuda_ctx *c = ctx->impl;
    c->stream = stream ? (cudaStream_t)stream : c->own_stream;
    return FORGE_OK;
}

static forge_status cuda_synchronize(forge_context *ctx) {
    CUDA_TRY("forge_context_synchronize", cudaStreamSynchronize(((cuda_ctx *)ctx->impl)->stream));
    return FORGE_OK;
}

static forge_status cuda_stopwatch_start(forge_context *ctx) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_stopwatch_start", cudaEventRecord(c->watch[0], c->stream));
    return FORGE_OK;
}

static forge_status cuda_stopwatch_stop(forge_context *ctx, double *us) {
    static const char fn[] = "forge_stopwatch_stop";
    cuda_ctx *c = ctx->impl;
    float ms;
    CUDA_TRY(fn, cudaEventRecord(c->watch[1], c->stream));
    CUDA_TRY(fn, cudaEventSynchronize(c->watch[1]));
    CUDA_TRY(fn, cudaEventElapsedTime(&ms, c->watch[0], c->watch[1]));
    *us = ms * 1e3;
    return FORGE_OK;
}

static forge_status cuda_buffer_alloc(forge_context *ctx, size_t bytes, void **out) {
    CUDA_TRY("forge_buffer_alloc", cudaMalloc(out, bytes));
    return FORGE_OK;
}

static void cuda_buffer_free(forge_context *ctx, void *p) { cudaFree(p); }

static forge_status cuda_buffer_copy(forge_context *ctx, void *dst, const void *src, size_t bytes,
                                     int to_host) {
    cudaStream_t s = ((cuda_ctx *)ctx->impl)->stream;
    const char *fn = to_host ? "forge_buffer_download" : "forge_buffer_upload";
    CUDA_TRY(fn, cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, s));
    CUDA_TRY(fn, cudaStreamSynchronize(s));
    return FORGE_OK;
}

/* --------------------------------------------------------------- layer */

static void cuda_layer_free(forge_layer *layer) {
    cuda_layer *l = layer->impl;
    if (!l) return;
    void *bufs[] = {l->w_qkv, l->b_qkv, l->w_o, l->b_o, l->inv_freq, l->qkv, l->q,
                    l->attn, l->heads_out, l->k_tmp, l->v_tmp, l->scores};
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

static forge_status cuda_layer_init(forge_layer *layer, const forge_layer_weights *w) {
    static const char fn[] = "forge_layer_create";
    const forge_layer_config *c = &layer->cfg;
    char dims[64];
    if (c->dtype != FORGE_F32 && !fcuda_flash_mma_supported(c->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the cuda backend runs %s layers at head dims %s, not %d", fn,
                          forge_dtype_name(c->dtype), forge_support_dims(SUPPORT_MMA, dims, sizeof dims), c->head_dim);
    const size_t es = forge_dtype_size(c->dtype);
    cuda_layer *l = calloc(1, sizeof *l);
    if (!l) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    layer->impl = l;
    const size_t hidden = (size_t)c->hidden, q_out = (size_t)c->heads * c->head_dim,
                 kv_out = (size_t)c->kv_heads * c->head_dim, qkv = q_out + 2 * kv_out;
    const int qkv_bias = (c->bias & (FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V)) != 0;
    double *inv_freq = malloc(sizeof *inv_freq * (size_t)(c->head_dim / 2 + 1));
    forge_status st = inv_freq ? FORGE_OK : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cudaError_t e = cudaSuccess;
    if (st == FORGE_OK) {
        for (int i = 0; i < c->head_dim / 2; i++) inv_freq[i] = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
        if (!e) e = cudaMalloc(&l->w_qkv, qkv * hidden * es);
        if (!e) e = cudaMalloc(&l->w_o, hidden * q_out * es);
        if (!e) e = cudaMalloc((void **)&l->inv_freq, sizeof(double) * (size_t)(c->head_dim / 2 + 1));
        if (!e && qkv_bias) e = cudaMalloc(&l->b_qkv, qkv * es);
        if (!e && (c->bias & FORGE_BIAS_O)) e = cudaMalloc(&l->b_o, hidden * es);
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

/* -------------------------------------------------------------- cache */

static void cuda_cache_free(forge_kv_cache *cache) {
    cuda_cache *cc = cache->impl;
    if (!cc) return;
    cudaFree(cc->k);
    cudaFree(cc->v);
    free(cc);
}

/* The cache starts zeroed: the tensor-core kernels read whole tiles of key
 * rows and weight those past a sequence's length by zero, which must not
 * meet a NaN left in never-written memory. */
static forge_status cuda_cache_init(forge_kv_cache *cache) {
    static const char fn[] = "forge_kv_cache_create";
    size_t bytes = forge_dtype_size(cache->dtype) * (size_t)cache->slots * cache->kv_heads * cache->max_seq *
                   cache->head_dim;
    if (cache->dtype != FORGE_F32 && (int64_t)cache->slots * cache->max_seq > INT_MAX)
        return forge_fail(FORGE_ERR_CAPACITY, "%s: %d slots of %d positions are past the %d rows a %s cache can have",
                          fn, cache->slots, cache->max_seq, INT_MAX, forge_dtype_name(cache->dtype));
    cuda_cache *cc = calloc(1, sizeof *cc);
    if (!cc) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    cudaError_t e = cudaMalloc(&cc->k, bytes);
    if (!e) e = cudaMalloc(&cc->v, bytes);
    if (e) {
        cudaFree(cc->k);
        free(cc);
        cudaGetLastError(); /* an allocation failure is not sticky */
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: no device memory for %d slots (2 x %zu bytes): %s",
                          fn, cache->slots, bytes, cudaGetErrorString(e));
    }
    cache->impl = cc;
    /* on the legacy default stream, which the context's non-blocking
     * stream does not wait for: done before the cache is handed out */
    if ((e = cudaMemset(cc->k, 0, bytes)) == cudaSuccess && (e = cudaMemset(cc->v, 0, bytes)) == cudaSuccess)
        e = cudaStreamSynchronize(cudaStreamLegacy);
    if (!e) return FORGE_OK;
    cuda_cache_free(cache);
    return cuda_err(fn, "cudaMemset", e);
}


/* Copies positions [0, len) of a slot between the device cache (cuda_cache
 * says its layouts) and host buffers [kv_heads, len, head_dim], a 2-D copy
 * per KV head. */
static forge_status cache_copy(const forge_kv_cache *cache, int slot, int len, void *hk, void *hv,
                               const void *ck, const void *cv, int to_host) {
    const char *fn = to_host ? "forge_kv_cache_read" : "forge_kv_cache_write";
    cuda_ctx *c = cache->ctx->impl;
    const cuda_cache *cc = cache->impl;
    const size_t es = forge_dtype_size(cache->dtype), D = (size_t)cache->head_dim, Hk = (size_t)cache->kv_heads;
    const size_t row = D * es, slot_elems = (size_t)slot * Hk * cache->max_seq * D;
    const int token_major = cache->dtype != FORGE_F32;
    if (len == 0) return FORGE_OK;
    const size_t pitch = token_major ? Hk * row : row; /* between a head's positions */
    char *dev[2] = {cc->k, cc->v};
    const void *host_src[2] = {ck, cv};
    void *host_dst[2] = {hk, hv};
    for (int i = 0; i < 2; i++)
        for (size_t g = 0; g < Hk; g++) {
            char *d = dev[i] + (slot_elems + (token_major ? g * D : g * cache->max_seq * D)) * es;
            const size_t h = g * len * row;
            if (to_host && host_dst[i])
                CUDA_TRY(fn, cudaMemcpy2DAsync((char *)host_dst[i] + h, row, d, pitch, row, len, cudaMemcpyDeviceToHost, c->stream));
            if (!to_host && host_src[i])
                CUDA_TRY(fn, cudaMemcpy2DAsync(d, pitch, (const char *)host_src[i] + h, row, row, len, cudaMemcpyHostToDevice, c->stream));
        }
    CUDA_TRY(fn, cudaStreamSynchronize(c->stream));
    return FORGE_OK;
}

static forge_status cuda_cache_read(const forge_kv_cache *cache, int slot, int len, void *k, void *v) {
    return cache_copy(cache, slot, len, k, v, NULL, NULL, 1);
}

static forge_status cuda_cache_write(forge_kv_cache *cache, int slot, int len, const void *k, const void *v) {
    return cache_copy(cache, slot, len, NULL, NULL, k, v, 0);
}

/* ------------------------------------------------------------ forward */

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

static forge_status cuda_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                 int n_seqs, int total, const void *x, void *y, forge_stage *failed) {
    int record = 0;
    forge_status st = cuda_forward_begin(layer, x, y, &record);
    if (st != FORGE_OK) return st;
    st = layer->cfg.dtype == FORGE_F32 ? forward32(layer, cache, seqs, n_seqs, total, x, y, record, failed)
                                       : cuda_forward16(layer, cache, seqs, n_seqs, total, x, y, record, failed);
    return st == FORGE_OK ? cuda_forward_end(layer, record, failed) : st;
}

static forge_status cuda_timings(forge_layer *layer, double us[FORGE_STAGE_COUNT]) {
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

/* ---------------------------------------------------- attention alone */

forge_status cuda_flash_tc(forge_context *ctx, fcuda_mma_args *m, const fcuda_varlen *b, const char *fn) {
    cuda_ctx *c = ctx->impl;
    if (!c->hopper || ctx->kernel == FORGE_KERNEL_PORTABLE || !fcuda_flash_wgmma_supported(m->head_dim)) {
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
static forge_status cuda_attention(forge_context *ctx, const forge_attention_args *a, int total_q,
                                   int total_kv) {
    static const char fn[] = "forge_attention_forward";
    if (a->dtype != FORGE_BF16 && a->dtype != FORGE_F16)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend computes attention alone in bf16 and fp16, not %s",
                          fn, forge_dtype_name(a->dtype));
    char dims[64];
    if (!fcuda_flash_mma_supported(a->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend computes attention alone for head dims %s, not %d",
                          fn, forge_support_dims(SUPPORT_MMA, dims, sizeof dims), a->head_dim);
    const void *bufs[] = {a->q, a->k, a->v, a->out, a->lse};
    static const char *names[] = {"q", "k", "v", "out", "lse"};
    for (int i = 0; i < 5; i++)
        if ((uintptr_t)bufs[i] % (i == 4 ? 4 : 16))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s is not %d-byte aligned", fn, names[i],
                              i == 4 ? 4 : 16);
    fcuda_mma_args m = {a->q, total_kv ? a->k : a->q, total_kv ? a->v : a->q, a->out, a->lse, total_q, total_kv,
                        a->heads, a->kv_heads, a->head_dim, a->scale, a->causal, a->dtype == FORGE_BF16, NULL};
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
        forge_status st;
        if (b.max_q > 0 && (st = cuda_flash_tc(ctx, &m, &b, fn)) != FORGE_OK) return st;
    }
    return FORGE_OK;
}

/* -------------------------------------------------------------- graphs */

typedef struct {
    cudaGraphExec_t exec;
    unsigned ws_gen, part_gen; /* of the buffers the capture baked in */
    /* a paged graph's positions, uploaded before each launch, and the length
     * its sequences may reach before the splits it recorded fall short */
    int *pos_dev, *pos_host;
    int reach;
} cuda_graph;

static void cuda_graph_free(forge_graph *graph) {
    cuda_graph *g = graph->impl;
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    cudaFree(g->pos_dev);
    free(g->pos_host);
    free(g);
    graph->impl = NULL;
}

/* A call since the capture has moved the workspace or the split results
 * (grown for more tokens or splits) that the graph recorded. */
static int moved(const forge_graph *graph, const cuda_graph *g) {
    return g->ws_gen != ((cuda_layer *)graph->layer->impl)->ws_gen ||
           (graph->paged && g->part_gen != cuda_paged_generation(graph->paged));
}

/* A paged graph reads its positions when it runs, so that moved to new
 * ones it still serves, unless its buffers moved or a sequence outgrew it. */
static int still_serves(const forge_graph *graph, const cuda_graph *g) {
    if (!graph->paged || !g->exec || moved(graph, g)) return 0;
    for (int i = 0; i < graph->n_seqs; i++)
        if (graph->seqs[i].pos0 + graph->seqs[i].n_tokens > g->reach) return 0;
    return 1;
}

/* Captures the call in global mode, where any synchronising or host-copying
 * call fails the capture: a captured forward proves it has none. An existing
 * executable graph is updated in place when only parameters changed. */
static forge_status cuda_graph_capture(forge_graph *graph) {
    static const char fn[] = "forge_graph_create";
    forge_layer *layer = graph->layer;
    cuda_ctx *cx = layer->ctx->impl;
    cuda_graph *g = graph->impl;
    if (!g && !(g = graph->impl = calloc(1, sizeof *g)))
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (still_serves(graph, g)) return FORGE_OK;
    const int n = graph->n_seqs;
    if (graph->paged && !g->pos_dev) {
        if (!g->pos_host && !(g->pos_host = malloc(sizeof(int) * (size_t)n)))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        CUDA_TRY(fn, cudaMalloc((void **)&g->pos_dev, sizeof(int) * (size_t)n));
    }
    forge_paged_step step;
    forge_status st = graph->paged ? forge_paged_step_make(&step, layer, graph->seqs, n) : FORGE_OK;
    if (st != FORGE_OK) return st;
    g->ws_gen = ((cuda_layer *)layer->impl)->ws_gen;
    if (graph->paged) {
        const int reach = g->reach;
        step.pos_dev = g->pos_dev;
        g->part_gen = cuda_paged_generation(graph->paged);
        g->reach = cuda_paged_reach(graph->paged, &step.attn, step.lens);
        /* other splits: maybe a merge kernel more or less, which an update
         * of the executable graph cannot take; it is made anew */
        if (g->exec && g->reach != reach) cudaGraphExecDestroy(g->exec), g->exec = NULL;
    }
    cudaError_t e = cudaStreamBeginCapture(cx->stream, cudaStreamCaptureModeGlobal);
    if (e) {
        if (graph->paged) forge_paged_step_free(&step);
        return cuda_err(fn, "cudaStreamBeginCapture", e);
    }
    forge_stage failed;
    if (graph->paged) {
        st = cuda_forward_paged(layer, graph->paged, &step, graph->x, graph->y, &failed);
        forge_paged_step_free(&step);
    } else {
        st = cuda_forward(layer, graph->cache, graph->seqs, n, graph->total, graph->x, graph->y, &failed);
    }
    cudaGraph_t captured = NULL;
    e = cudaStreamEndCapture(cx->stream, &captured);
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
static forge_status cuda_graph_launch(forge_graph *graph) {
    static const char fn[] = "forge_graph_launch";
    cuda_ctx *cx = graph->layer->ctx->impl;
    cuda_graph *g = graph->impl;
    forge_status st;
    if (moved(graph, g) && (st = cuda_graph_capture(graph)) != FORGE_OK) return st;
    if (graph->paged) {
        for (int i = 0; i < graph->n_seqs; i++) g->pos_host[i] = graph->seqs[i].pos0;
        CUDA_TRY(fn, cudaMemcpyAsync(g->pos_dev, g->pos_host, sizeof(int) * (size_t)graph->n_seqs,
                                     cudaMemcpyHostToDevice, cx->stream));
    }
    CUDA_TRY(fn, cudaGraphLaunch(g->exec, cx->stream));
    return FORGE_OK;
}

const forge_backend_ops forge_cuda_backend = {
    .kind = FORGE_BACKEND_CUDA,
    .context_init = cuda_context_init,
    .context_free = cuda_context_free,
    .set_stream = cuda_set_stream,
    .synchronize = cuda_synchronize,
    .stopwatch_start = cuda_stopwatch_start,
    .stopwatch_stop = cuda_stopwatch_stop,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .buffer_copy = cuda_buffer_copy,
    .layer_init = cuda_layer_init,
    .layer_free = cuda_layer_free,
    .cache_init = cuda_cache_init,
    .cache_free = cuda_cache_free,
    .cache_read = cuda_cache_read,
    .cache_write = cuda_cache_write,
    .reserve = cuda_reserve,
    .forward = cuda_forward,
    .timings = cuda_timings,
    .attention = cuda_attention,
    .paged_init = cuda_paged_init,
    .paged_free = cuda_paged_free,
    .paged_set_table = cuda_paged_set_table,
    .paged_copy_page = cuda_paged_copy_page,
    .paged_write = cuda_paged_write,
    .paged_read = cuda_paged_read,
    .paged_attention = cuda_paged_attention,
    .paged_split_size = cuda_paged_split_size,
    .reserve_paged = cuda_reserve_paged,
    .forward_paged = cuda_forward_paged,
    .graph_capture = cuda_graph_capture,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
};

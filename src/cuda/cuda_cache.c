/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_cache.c: the contiguous KV cache on the device (fp32 slot-major,
 * 16-bit token-major) and its copies to and from the host. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

void cuda_cache_free(forge_kv_cache *cache) {
    cuda_cache *cc = cache->impl;
    if (!cc) return;
    cudaFree(cc->k);
    cudaFree(cc->v);
    free(cc);
}

/* The cache starts zeroed: the tensor-core kernels read whole tiles of key
 * rows and weight those past a sequence's length by zero, which must not
 * meet a NaN left in never-written memory. */
forge_status cuda_cache_init(forge_kv_cache *cache) {
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

forge_status cuda_cache_read(const forge_kv_cache *cache, int slot, int len, void *k, void *v) {
    return cache_copy(cache, slot, len, k, v, NULL, NULL, 1);
}

forge_status cuda_cache_write(forge_kv_cache *cache, int slot, int len, const void *k, const void *v) {
    return cache_copy(cache, slot, len, NULL, NULL, k, v, 0);
}

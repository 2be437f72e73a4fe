/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_cache.c: the KV cache's pool on the device (kernels in paged.cu).
 * The pools and a copy of the page tables live in device memory; each range
 * of a table that paged_cache.c changes is uploaded on the context's stream,
 * so that kernels queued after it see it. Appends are kernel launches on
 * that stream, FCUDA_MAX_SEQS sequences a launch (their metadata travels as
 * a kernel parameter); reads and the CPU's results go by copies. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_backend.h"

static cudaStream_t stream_of(const forge_paged_cache *cache) { return ((cuda_ctx *)cache->ctx->impl)->stream; }

forge_status cuda_cache_init(forge_paged_cache *cache, const char *fn) {
    const forge_paged_config *c = &cache->cfg;
    char dims[64];
    /* a pinned cache's pages are read by the layer's kernels, which take
     * its head dim; the others' by the paged attention kernels */
    if (!cache->pinned && !forge_support_has(c->dtype == FORGE_F32 ? SUPPORT_PAGED_F32 : SUPPORT_PAGED_MMA, c->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend's paged cache takes head dims %s, not %d", fn,
                          forge_support_dims(c->dtype == FORGE_F32 ? SUPPORT_PAGED_F32 : SUPPORT_PAGED_MMA, dims,
                                             sizeof dims), c->head_dim);
    /* the flash kernels that read a pinned cache's rows count them in int */
    if (cache->pinned && (int64_t)c->n_pages * c->page_size > INT_MAX)
        return forge_fail(FORGE_ERR_CAPACITY, "%s: %d slots of %d positions are past the %d rows a cache can have", fn,
                          c->n_pages, c->page_size, INT_MAX);
    int per_sm = 0; /* the paged attention kernel's blocks an SM holds */
    cudaError_t e = cache->pinned ? cudaSuccess : fcuda_paged_blocks_per_sm(c->dtype, c->head_dim, &per_sm);
    if (e) return cuda_err(fn, "fcuda_paged_blocks_per_sm", e);
    if (!cache->pinned && per_sm < 1)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the paged attention kernel fits no SM", fn);
    const size_t bytes = (size_t)c->n_pages * c->page_size * forge_paged_row_bytes(c);
    const size_t table_bytes = sizeof(int) * (size_t)c->max_seqs * cache->max_pages;
    cuda_pool *p = calloc(1, sizeof *p);
    if (!p) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    int *table = NULL;
    e = cudaMalloc(&p->pool.k, bytes);
    if (!e) e = cudaMalloc(&p->pool.v, bytes);
    if (!e) e = cudaMalloc((void **)&table, table_bytes);
    /* zeroed: a table entry past a sequence's pages names page 0, never a
     * page outside the pool; on the legacy stream, done before the cache
     * is handed out */
    if (!e && (e = cudaMemset(p->pool.k, 0, bytes)) == cudaSuccess && (e = cudaMemset(p->pool.v, 0, bytes)) == cudaSuccess &&
        (e = cudaMemset(table, 0, table_bytes)) == cudaSuccess)
        e = cudaStreamSynchronize(cudaStreamLegacy);
    if (e) {
        cudaFree(p->pool.k), cudaFree(p->pool.v), cudaFree(table), free(p);
        cudaGetLastError(); /* an allocation failure is not sticky */
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: no device memory for %d pages (2 x %zu bytes) and the tables: %s",
                          fn, c->n_pages, bytes, cudaGetErrorString(e));
    }
    p->pool.table = table;
    p->pool.kv_heads = c->kv_heads, p->pool.head_dim = c->head_dim, p->pool.page_size = c->page_size;
    p->pool.max_pages = cache->max_pages, p->pool.dtype = c->dtype;
    p->rows = cache->pinned ? 0 : fcuda_paged_rows(c->dtype, c->head_dim);
    p->resident = per_sm * ((cuda_ctx *)cache->ctx->impl)->sms;
    cache->impl = p;
    return FORGE_OK;
}

void cuda_cache_free(forge_paged_cache *cache) {
    cuda_pool *p = cache->impl;
    if (!p) return;
    cudaFree(p->pool.k), cudaFree(p->pool.v), cudaFree((void *)p->pool.table), cudaFree(p->part);
    free(p);
}

forge_status cuda_cache_set_table(forge_paged_cache *cache, size_t at, int count, const char *fn) {
    cuda_pool *p = cache->impl;
    /* from pageable memory: staged before the call returns, so the host
     * table may change again at once */
    CUDA_TRY(fn, cudaMemcpyAsync((int *)p->pool.table + at, cache->table + at, sizeof(int) * count,
                                                   cudaMemcpyHostToDevice, stream_of(cache)));
    return FORGE_OK;
}

forge_status cuda_cache_copy_page(forge_paged_cache *cache, int dst, int src, int tokens, const char *fn) {
    cuda_pool *p = cache->impl;
    const size_t rb = forge_paged_row_bytes(&cache->cfg), page = (size_t)cache->cfg.page_size * rb, n = (size_t)tokens * rb;
    char *k = p->pool.k, *v = p->pool.v;
    CUDA_TRY(fn, cudaMemcpyAsync(k + dst * page, k + src * page, n, cudaMemcpyDeviceToDevice, stream_of(cache)));
    CUDA_TRY(fn, cudaMemcpyAsync(v + dst * page, v + src * page, n, cudaMemcpyDeviceToDevice, stream_of(cache)));
    return FORGE_OK;
}

forge_status cuda_cache_append(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                               const int *row0, const void *k, const void *v, const char *fn) {
    cuda_pool *p = cache->impl;
    if ((uintptr_t)k % 16 || (uintptr_t)v % 16)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: k and v must be 16-byte aligned", fn);
    for (int first = 0; first < n; first += FCUDA_MAX_SEQS) {
        fcuda_paged_batch b = {.n = cuda_launch_seqs(n, first)};
        for (int i = 0; i < b.n; i++) {
            b.seq[i] = seqs[first + i], b.pos0[i] = pos0[first + i], b.count[i] = n_tokens[first + i];
            b.row0[i] = row0[first + i];
            if (b.count[i] > b.max_count) b.max_count = b.count[i];
        }
        CUDA_TRY(fn, fcuda_paged_write(&p->pool, &b, k, v, stream_of(cache)));
    }
    return FORGE_OK;
}

forge_status cuda_cache_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v, const char *fn) {
    const cuda_pool *p = cache->impl;
    const int P = cache->cfg.page_size;
    const size_t rb = forge_paged_row_bytes(&cache->cfg);
    const char *pk = p->pool.k, *pv = p->pool.v;
    for (int pos = 0; pos < len; pos += P) {
        const size_t page = (size_t)cache->table[(size_t)seq * cache->max_pages + pos / P];
        const size_t bytes = (size_t)(len - pos < P ? len - pos : P) * rb;
        if (k) CUDA_TRY(fn, cudaMemcpyAsync((char *)k + pos * rb, pk + page * P * rb, bytes, cudaMemcpyDeviceToHost, stream_of(cache)));
        if (v) CUDA_TRY(fn, cudaMemcpyAsync((char *)v + pos * rb, pv + page * P * rb, bytes, cudaMemcpyDeviceToHost, stream_of(cache)));
    }
    CUDA_TRY(fn, cudaStreamSynchronize(stream_of(cache)));
    return FORGE_OK;
}

/* Host rows to positions first .. first + count - 1 of seq, a copy per page. */
forge_status cuda_cache_upload(forge_paged_cache *cache, int seq, int first, int count, const void *k, const void *v,
                               const char *fn) {
    const cuda_pool *p = cache->impl;
    const int P = cache->cfg.page_size;
    const size_t rb = forge_paged_row_bytes(&cache->cfg);
    char *pk = p->pool.k, *pv = p->pool.v;
    for (int pos = first; pos < first + count;) {
        const int run = P - pos % P < first + count - pos ? P - pos % P : first + count - pos;
        const size_t row = (size_t)cache->table[(size_t)seq * cache->max_pages + pos / P] * P + pos % P;
        const size_t from = (size_t)(pos - first) * rb;
        CUDA_TRY(fn, cudaMemcpyAsync(pk + row * rb, (const char *)k + from, run * rb, cudaMemcpyHostToDevice, stream_of(cache)));
        CUDA_TRY(fn, cudaMemcpyAsync(pv + row * rb, (const char *)v + from, run * rb, cudaMemcpyHostToDevice, stream_of(cache)));
        pos += run;
    }
    CUDA_TRY(fn, cudaStreamSynchronize(stream_of(cache)));
    return FORGE_OK;
}

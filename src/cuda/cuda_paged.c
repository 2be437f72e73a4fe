/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_paged.c: the CUDA backend's paged KV cache (kernels in paged.cu).
 * The pools and a copy of the page tables live in device memory; each range
 * of a table that paged_cache.c changes is uploaded on the context's stream,
 * so that kernels queued after it see it. Appends and attention are kernel
 * launches on that stream, FCUDA_MAX_SEQS sequences a launch (their
 * metadata travels as a kernel parameter). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_backend.h"

typedef struct {
    fcuda_pool pool;   /* K, V and the tables, in device memory */
    float *part;       /* split attention's partial results, grown to the largest call */
    size_t part_bytes;
    unsigned part_gen; /* times part moved: graphs that captured it re-capture */
    int rows;          /* (query, head) rows a block of the attention kernel takes */
    int resident;      /* its blocks the GPU holds at once */
} cuda_paged;

/* A chosen split size is a whole number of the kernels' 64-token tiles,
 * and a sequence has at most MAX_SPLITS chosen splits. */
#define SPLIT_TILE 64
#define MAX_SPLITS 256

/* Splits of the longest sequence for a launch of `blocks` blocks a split
 * (sequences, KV heads and row tiles), `resident` of which the GPU holds at
 * once: the fewest whose last round of blocks is as full as the best
 * count's, within 5%. Measured on the H200 (decode, GQA 32/8, D = 128;
 * BENCHMARKS.md): one full round beats more rounds of shorter splits, whose
 * starts, ends and partial results cost more than the idle SMs of a last,
 * partly empty round that they avoid; a round half full costs a third. */
static int choose_splits(long blocks, int resident, int max_len) {
    int limit = (max_len + SPLIT_TILE - 1) / SPLIT_TILE;
    if (limit > MAX_SPLITS) limit = MAX_SPLITS;
    double fill[MAX_SPLITS + 1], best = 0.0;
    for (int s = 1; s <= limit; s++) {
        const double rounds = (double)blocks * s / resident;
        fill[s] = rounds / ceil(rounds);
        if (fill[s] > best) best = fill[s];
    }
    for (int s = 1; s <= limit; s++)
        if (fill[s] >= 0.95 * best) return s;
    return 1;
}

forge_status cuda_paged_init(forge_paged_cache *cache) {
    static const char fn[] = "forge_paged_cache_create";
    const forge_paged_config *c = &cache->cfg;
    char dims[64];
    if (!fcuda_paged_supported(c->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend's paged cache takes head dims %s, not %d", fn,
                          forge_support_dims(c->dtype == FORGE_F32 ? SUPPORT_PAGED_F32 : SUPPORT_PAGED_MMA, dims,
                                             sizeof dims), c->head_dim);
    int per_sm = 0; /* the attention kernel's blocks an SM holds */
    cudaError_t e = fcuda_paged_blocks_per_sm((int)c->dtype, c->head_dim, &per_sm);
    if (e) return cuda_err(fn, "fcuda_paged_blocks_per_sm", e);
    if (per_sm < 1) return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the paged attention kernel fits no SM", fn);
    const size_t bytes = (size_t)c->n_pages * c->page_size * forge_paged_row_bytes(c);
    const size_t table_bytes = sizeof(int) * (size_t)c->max_seqs * cache->max_pages;
    cuda_paged *p = calloc(1, sizeof *p);
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
    p->pool.max_pages = cache->max_pages, p->pool.dtype = (int)c->dtype;
    p->rows = fcuda_paged_rows(p->pool.dtype, c->head_dim);
    p->resident = per_sm * ((cuda_ctx *)cache->ctx->impl)->sms;
    cache->impl = p;
    return FORGE_OK;
}

void cuda_paged_free(forge_paged_cache *cache) {
    cuda_paged *p = cache->impl;
    if (!p) return;
    cudaFree(p->pool.k), cudaFree(p->pool.v), cudaFree((void *)p->pool.table), cudaFree(p->part);
    free(p);
}

static cudaStream_t stream_of(const forge_paged_cache *cache) { return ((cuda_ctx *)cache->ctx->impl)->stream; }

forge_status cuda_paged_set_table(forge_paged_cache *cache, int seq, int first, int count) {
    cuda_paged *p = cache->impl;
    const size_t at = (size_t)seq * cache->max_pages + first;
    /* from pageable memory: staged before the call returns, so the host
     * table may change again at once */
    CUDA_TRY("forge_paged_append", cudaMemcpyAsync((int *)p->pool.table + at, cache->table + at, sizeof(int) * count,
                                                   cudaMemcpyHostToDevice, stream_of(cache)));
    return FORGE_OK;
}

forge_status cuda_paged_copy_page(forge_paged_cache *cache, int dst, int src, int tokens) {
    cuda_paged *p = cache->impl;
    const size_t rb = forge_paged_row_bytes(&cache->cfg), page = (size_t)cache->cfg.page_size * rb, n = (size_t)tokens * rb;
    char *k = p->pool.k, *v = p->pool.v;
    CUDA_TRY("forge_paged_append", cudaMemcpyAsync(k + dst * page, k + src * page, n, cudaMemcpyDeviceToDevice, stream_of(cache)));
    CUDA_TRY("forge_paged_append", cudaMemcpyAsync(v + dst * page, v + src * page, n, cudaMemcpyDeviceToDevice, stream_of(cache)));
    return FORGE_OK;
}

forge_status cuda_paged_write(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                              const int *row0, const void *k, const void *v) {
    static const char fn[] = "forge_paged_append";
    cuda_paged *p = cache->impl;
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

forge_status cuda_paged_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v) {
    static const char fn[] = "forge_paged_read";
    const cuda_paged *p = cache->impl;
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

/* Row tiles of the attention kernel's grid for a sequence of max_rows
 * queries: its (query, head) rows of one KV head's group, p->rows a block. */
static int row_tiles(const forge_paged_cache *cache, int max_rows, int heads) {
    const cuda_paged *p = cache->impl;
    return (max_rows * (heads / cache->cfg.kv_heads) + p->rows - 1) / p->rows;
}

/* One launch's sequences [first, first + n), its split size (the caller's,
 * or from choose_splits) and the most splits of one sequence. */
static fcuda_paged_batch launch_batch(const forge_paged_cache *cache, const forge_paged_attention_args *a,
                                      const int *lens, int first, int n, int *split_size, int *splits) {
    const cuda_paged *p = cache->impl;
    fcuda_paged_batch b = {.n = n};
    int max_len = 0; /* of the sequences with queries */
    for (int i = 0; i < n; i++) {
        b.seq[i] = a->seqs[first + i], b.count[i] = lens[first + i];
        b.row0[i] = a->q_offsets[first + i];
        const int rows = a->q_offsets[first + i + 1] - b.row0[i];
        if (rows > b.max_rows) b.max_rows = rows;
        if (rows > 0 && b.count[i] > max_len) max_len = b.count[i];
    }
    b.row0[n] = a->q_offsets[first + n];
    *split_size = a->split_size;
    if (!*split_size) {
        const long blocks = (long)n * cache->cfg.kv_heads * row_tiles(cache, b.max_rows, a->heads);
        const int want = choose_splits(blocks, p->resident, max_len);
        *split_size = (int)(((max_len + want - 1) / want + SPLIT_TILE - 1) / SPLIT_TILE * SPLIT_TILE);
        if (*split_size < SPLIT_TILE) *split_size = SPLIT_TILE;
    }
    *splits = max_len > 0 ? (max_len + *split_size - 1) / *split_size : 1;
    return b;
}

/* What a call's launches choose, over all of them: the largest split size
 * and split count, the length every sequence may reach and still be read
 * whole by its launch's splits, and the most row tiles of one launch. */
typedef struct {
    int split_size, splits, reach;
    long row_blocks; /* KV heads * row tiles: the grid's y */
    int max_rows;    /* of that launch's sequences */
} paged_plan;

static paged_plan plan_call(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens) {
    paged_plan plan = {.reach = INT_MAX};
    for (int first = 0; first < a->batch; first += FCUDA_MAX_SEQS) {
        int split_size, splits;
        const fcuda_paged_batch b =
            launch_batch(cache, a, lens, first, cuda_launch_seqs(a->batch, first), &split_size, &splits);
        const long row_blocks = (long)cache->cfg.kv_heads * row_tiles(cache, b.max_rows, a->heads);
        if (split_size > plan.split_size) plan.split_size = split_size;
        if (splits > plan.splits) plan.splits = splits;
        if ((long)splits * split_size < plan.reach) plan.reach = splits * split_size;
        if (row_blocks > plan.row_blocks) plan.row_blocks = row_blocks, plan.max_rows = b.max_rows;
    }
    return plan;
}

int cuda_paged_split_size(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens) {
    return plan_call(cache, a, lens).split_size;
}

int cuda_paged_reach(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens) {
    return plan_call(cache, a, lens).reach;
}

const fcuda_pool *cuda_paged_pool(const forge_paged_cache *cache) { return &((const cuda_paged *)cache->impl)->pool; }

unsigned cuda_paged_generation(const forge_paged_cache *cache) { return ((const cuda_paged *)cache->impl)->part_gen; }

forge_status cuda_paged_reserve(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                int total_q) {
    static const char fn[] = "forge_paged_attention";
    cuda_paged *p = cache->impl;
    const paged_plan plan = plan_call(cache, a, lens);
    if (plan.row_blocks > 65535)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %d query rows of one sequence over %d KV heads are more than "
                          "one launch takes", fn, plan.max_rows, cache->cfg.kv_heads);
    /* the partial results of the call's largest split */
    const size_t part_bytes =
        plan.splits > 1 ? sizeof(float) * total_q * a->heads * plan.splits * (cache->cfg.head_dim + 1) : 0;
    if (part_bytes <= p->part_bytes) return FORGE_OK;
    enum cudaStreamCaptureStatus capturing;
    CUDA_TRY(fn, cudaStreamIsCapturing(stream_of(cache), &capturing));
    if (capturing != cudaStreamCaptureStatusNone)
        return forge_fail(FORGE_ERR_BACKEND, "%s: %zu bytes of split results were not reserved before the capture", fn,
                          part_bytes);
    cudaFree(p->part);
    p->part = NULL, p->part_bytes = 0, p->part_gen++;
    if (cudaMalloc((void **)&p->part, part_bytes) != cudaSuccess) {
        cudaGetLastError();
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: no device memory for %zu bytes of split results", fn, part_bytes);
    }
    p->part_bytes = part_bytes;
    return FORGE_OK;
}

forge_status cuda_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                  int total_q) {
    return cuda_paged_attend(cache, a, lens, NULL, total_q);
}

forge_status cuda_paged_attend(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                               const int *pos_dev, int total_q) {
    static const char fn[] = "forge_paged_attention";
    cuda_paged *p = cache->impl;
    if ((uintptr_t)a->q % 16 || (uintptr_t)a->out % 16 || (uintptr_t)a->lse % 4)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: q and out must be 16-byte aligned, lse 4-byte aligned", fn);
    forge_status st = cuda_paged_reserve(cache, a, lens, total_q);
    if (st != FORGE_OK) return st;
    for (int first = 0; first < a->batch; first += FCUDA_MAX_SEQS) {
        fcuda_paged_args m = {.q = a->q, .out = a->out, .lse = a->lse, .part = p->part, .total_q = total_q,
                              .heads = a->heads, .scale = a->scale};
        fcuda_paged_batch b =
            launch_batch(cache, a, lens, first, cuda_launch_seqs(a->batch, first), &m.split_size, &m.splits);
        b.pos = pos_dev ? pos_dev + first : NULL;
        m.part_lse = p->part + (size_t)total_q * a->heads * m.splits * cache->cfg.head_dim;
        CUDA_TRY(fn, fcuda_paged_attention(&p->pool, &m, &b, stream_of(cache)));
    }
    return FORGE_OK;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_paged.c: attention over the KV cache's pages (kernels in paged.cu,
 * paged_mma.cu, paged_f32.cu): each launch's split of the sequences'
 * tokens chosen from the shape, the split results' buffer, and the
 * launches, FCUDA_MAX_SEQS sequences each. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_backend.h"
#include "window.h"

static cudaStream_t stream_of(const forge_paged_cache *cache) { return ((cuda_ctx *)cache->ctx->impl)->stream; }

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

/* Row tiles of the attention kernel's grid for a sequence of max_rows
 * queries: its (query, head) rows of one KV head's group, p->rows a block. */
static int row_tiles(const forge_paged_cache *cache, int max_rows, int heads) {
    const cuda_pool *p = cache->impl;
    return (max_rows * (heads / cache->cfg.kv_heads) + p->rows - 1) / p->rows;
}

/* One launch's sequences [first, first + n), its split size (the caller's,
 * or from choose_splits) and the most splits of one sequence. A sequence's
 * splits cover its tokens from its window's start on. */
static fcuda_paged_batch launch_batch(const forge_paged_cache *cache, const forge_paged_attention_args *a,
                                      const int *lens, int first, int n, int *split_size, int *splits) {
    const cuda_pool *p = cache->impl;
    fcuda_paged_batch b = {.n = n};
    int max_len = 0; /* the tokens the splits of a sequence with queries cover, at most */
    for (int i = 0; i < n; i++) {
        b.seq[i] = a->seqs[first + i], b.count[i] = lens[first + i];
        b.row0[i] = a->q_offsets[first + i];
        const int rows = a->q_offsets[first + i + 1] - b.row0[i];
        const int span = b.count[i] - forge_window_start(b.count[i], rows, a->window);
        if (rows > b.max_rows) b.max_rows = rows;
        if (rows > 0 && span > max_len) max_len = span;
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
 * whole by its launch's splits (any, where they cover a whole window), and
 * the most row tiles of one launch. */
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
        const int cover = splits * split_size;
        const int windowed = a->window > 0 && (long)a->window + b.max_rows - 1 <= cover;
        if (!windowed && cover < plan.reach) plan.reach = cover;
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

forge_status cuda_paged_reserve(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                int total_q, const char *fn) {
    cuda_pool *p = cache->impl;
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
                                  int total_q, const int *pos_dev, const char *fn) {
    cuda_pool *p = cache->impl;
    forge_status st = forge_support_check_options(cache->cfg.dtype == FORGE_F32 ? SUPPORT_PAGED_F32 : SUPPORT_PAGED_MMA,
                                                  a->window, a->softcap, fn);
    if (st != FORGE_OK) return st;
    if ((uintptr_t)a->q % 16 || (uintptr_t)a->out % 16 || (uintptr_t)a->lse % 4)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: q and out must be 16-byte aligned, lse 4-byte aligned", fn);
    st = cuda_paged_reserve(cache, a, lens, total_q, fn);
    if (st != FORGE_OK) return st;
    for (int first = 0; first < a->batch; first += FCUDA_MAX_SEQS) {
        fcuda_paged_args m = {.q = a->q, .out = a->out, .lse = a->lse, .part = p->part, .total_q = total_q,
                              .heads = a->heads, .scale = a->scale, .window = a->window};
        fcuda_paged_batch b =
            launch_batch(cache, a, lens, first, cuda_launch_seqs(a->batch, first), &m.split_size, &m.splits);
        b.pos = pos_dev ? pos_dev + first : NULL;
        m.part_lse = p->part + (size_t)total_q * a->heads * m.splits * cache->cfg.head_dim;
        CUDA_TRY(fn, fcuda_paged_attention(&p->pool, &m, &b, stream_of(cache)));
    }
    return FORGE_OK;
}

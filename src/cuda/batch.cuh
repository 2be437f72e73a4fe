/* SPDX-License-Identifier: Apache-2.0 */
/* batch.cuh: device helpers for a launch's sequences and their K, V place. */
#ifndef FORGE_CUDA_BATCH_CUH
#define FORGE_CUDA_BATCH_CUH

#include "kernels.h"

/* The sequence that owns token t (tok0[s] <= t < tok0[s+1]). */
__device__ inline int batch_seq_of(const fcuda_batch &b, int t) {
    int lo = 0, hi = b.n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b.tok0[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* K and V of kv head g of sequence s: key j (position k_pos0 + j) is row j. */
struct kv_rows {
    const float *k, *v;
    int k_pos0;
};

__device__ inline kv_rows kv_place(const fcuda_kv &kv, const fcuda_batch &b, int s, int g,
                                   int kv_heads, int head_dim) {
    size_t off;
    int k_pos0;
    if (kv.use_cache) {
        off = ((size_t)b.slot[s] * kv_heads + g) * kv.max_seq * head_dim;
        k_pos0 = 0;
    } else {
        int n = b.tok0[s + 1] - b.tok0[s];
        off = ((size_t)b.tok0[s] * kv_heads + (size_t)g * n) * head_dim;
        k_pos0 = b.pos0[s];
    }
    return kv_rows{kv.k + off, kv.v + off, k_pos0};
}

#endif

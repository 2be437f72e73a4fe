/* SPDX-License-Identifier: Apache-2.0 */
/* split_rope.cu: one pass over the QKV projection's output (cuBLASLt's, for
 * calls too large for the fused kernel of linear_small.cu): split into Q, K,
 * V, rotate Q and K, write Q head-major per sequence and K, V into the KV
 * cache (or the call's scratch). One block a token, a column pair a thread. */
#include "qkv_store.cuh"

#define SPLIT_THREADS 128

__global__ void __launch_bounds__(SPLIT_THREADS) split_rope_kernel(fcuda_split_args a, fcuda_batch b) {
    const int t = b.tok0[0] + blockIdx.x;
    const int s = batch_seq_of(b, t);
    const int cols = (a.heads + 2 * a.kv_heads) * a.head_dim;
    const float *row = a.qkv + (size_t)t * cols;
    for (int col = 2 * threadIdx.x; col < cols; col += 2 * SPLIT_THREADS) {
        const float va = row[col], vb = col + 1 < cols ? row[col + 1] : 0.0f;
        qkv_store_pair(a, b, s, t, col, va, vb, qkv_inv_freq(a, col));
    }
}

extern "C" cudaError_t fcuda_split_rope(const fcuda_split_args *a, const fcuda_batch *b,
                                        cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0];
    split_rope_kernel<<<tokens, SPLIT_THREADS, 0, stream>>>(*a, *b);
    return cudaGetLastError();
}

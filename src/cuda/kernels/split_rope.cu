/* SPDX-License-Identifier: Apache-2.0 */
/* split_rope.cu: one pass over the QKV projection's output that splits it
 * into Q, K, V, rotates Q and K (in float32), and stores them as rows, the
 * layout every attention kernel reads (kernels.h, fcuda_split_args): Q
 * token-major, K and V into the KV cache's pages or the call's scratch.
 * A token's columns are spread over the grid's y blocks, so that the few
 * tokens of a decode step take one round of memory latency, not one per
 * run of columns. Where the head dim is a multiple of 8, a thread takes
 * 8 columns at a time, 4 RoPE pairs that never straddle two heads, and
 * stores them as one run of 8, or for the half rotation, whose pairs are
 * (p, p + head_dim/2), as two runs of 4. Other head dims (float32 layers
 * only) go a column pair at a time (qkv_store.cuh). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "qkv_store.cuh"

#define SPLIT_THREADS 128

/* Runs of 8 and 4 elements, each loaded or stored whole. */
template <typename T> struct alignas(8 * sizeof(T)) run8 { T e[8]; };
template <typename T> struct alignas(4 * sizeof(T)) run4 { T e[4]; };

template <typename T>
__global__ void __launch_bounds__(SPLIT_THREADS) split_rope_runs(fcuda_split_args a, fcuda_batch b) {
    const int t = b.tok0[0] + blockIdx.x, s = batch_seq_of(b, t);
    const int H = a.heads, Hk = a.kv_heads, D = a.head_dim, cols = (H + 2 * Hk) * D;
    const int pos = split_pos(a, b, s, t);
    const size_t kv_row = split_kv_row(a, b, s, t);
    const T *row = (const T *)a.qkv + (size_t)t * cols;
    for (int col = 8 * (blockIdx.y * SPLIT_THREADS + threadIdx.x); col < cols; col += 8 * SPLIT_THREADS * gridDim.y) {
        const run8<T> x = *(const run8<T> *)(row + col);
        const int head = col / D, c = col % D;
        T *dst = head < H        ? (T *)a.q + ((size_t)t * H + head) * D
                 : head < H + Hk ? (T *)a.k + (kv_row * Hk + head - H) * D
                                 : (T *)a.v + (kv_row * Hk + head - H - Hk) * D;
        if (head >= H + Hk || a.rope_style == FORGE_ROPE_NONE) { /* V, or no RoPE: elements as they are */
            *(run8<T> *)(dst + c) = x;
            continue;
        }
        /* pair k is columns (c + 2k, c + 2k + 1), elements ia, ib of the head */
        run8<T> out;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float xa = (float)x.e[2 * k], xb = (float)x.e[2 * k + 1];
            float cs, sn;
            rope_angle(pos, a.inv_freq[c / 2 + k], &cs, &sn);
            out.e[2 * k] = (T)(xa * cs - xb * sn);
            out.e[2 * k + 1] = (T)(xb * cs + xa * sn);
        }
        if (a.rope_style == FORGE_ROPE_INTERLEAVED) { /* interleaved: pairs are adjacent elements */
            *(run8<T> *)(dst + c) = out;
            continue;
        }
        run4<T> first, second; /* half rotation: the pairs' first elements, then their second */
#pragma unroll
        for (int k = 0; k < 4; k++) first.e[k] = out.e[2 * k], second.e[k] = out.e[2 * k + 1];
        *(run4<T> *)(dst + c / 2) = first;
        *(run4<T> *)(dst + c / 2 + D / 2) = second;
    }
}

__global__ void __launch_bounds__(SPLIT_THREADS) split_rope_pairs(fcuda_split_args a, fcuda_batch b) {
    const int t = b.tok0[0] + blockIdx.x, s = batch_seq_of(b, t);
    const int cols = (a.heads + 2 * a.kv_heads) * a.head_dim;
    const float *row = (const float *)a.qkv + (size_t)t * cols;
    for (int col = 2 * (blockIdx.y * SPLIT_THREADS + threadIdx.x); col < cols; col += 2 * SPLIT_THREADS * gridDim.y) {
        const float va = row[col], vb = col + 1 < cols ? row[col + 1] : 0.0f;
        qkv_store_pair(a, b, s, t, col, va, vb, qkv_inv_freq(a, col));
    }
}

extern "C" cudaError_t fcuda_split_rope(const fcuda_split_args *a, const fcuda_batch *b, cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0], cols = (a->heads + 2 * a->kv_heads) * a->head_dim;
    const int per_thread = a->head_dim % 8 != 0 ? 2 : 8; /* columns */
    const dim3 grid(tokens, (cols + per_thread * SPLIT_THREADS - 1) / (per_thread * SPLIT_THREADS));
    if (a->head_dim % 8 != 0) {
        if (a->dtype != FORGE_F32) return cudaErrorInvalidValue; /* 16-bit head dims are multiples of 8 */
        split_rope_pairs<<<grid, SPLIT_THREADS, 0, stream>>>(*a, *b);
        return cudaGetLastError();
    }
    switch (a->dtype) {
    case FORGE_F32: split_rope_runs<float><<<grid, SPLIT_THREADS, 0, stream>>>(*a, *b); break;
    case FORGE_F16: split_rope_runs<__half><<<grid, SPLIT_THREADS, 0, stream>>>(*a, *b); break;
    default: split_rope_runs<__nv_bfloat16><<<grid, SPLIT_THREADS, 0, stream>>>(*a, *b); break;
    }
    return cudaGetLastError();
}

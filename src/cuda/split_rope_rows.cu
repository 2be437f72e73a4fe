/* SPDX-License-Identifier: Apache-2.0 */
/* split_rope_rows.cu: a pass over the QKV projection's output that splits
 * it into Q, K, V, rotates Q and K (in float32), and stores them as rows,
 * the layout the tensor-core and paged attention kernels read (kernels.h,
 * fcuda_split_rows_args): Q token-major, K and V into the cache slot's rows,
 * a paged cache's pages or the call's scratch. It serves bf16 and fp16
 * layers, and layers of every dtype over a paged cache. One block a token; a thread takes 8 columns at a
 * time, 4 RoPE pairs: head dims are multiples of 8, so the 8 never
 * straddle two heads. It stores them as one run of 8, or for the half
 * rotation, whose pairs are (p, p + head_dim/2), as two runs of 4. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "batch.cuh"
#include "qkv_store.cuh"

#define SPLIT_ROWS_THREADS 128

/* Runs of 8 and 4 elements, each loaded or stored whole. */
template <typename T> struct alignas(8 * sizeof(T)) run8 { T e[8]; };
template <typename T> struct alignas(4 * sizeof(T)) run4 { T e[4]; };

template <typename T>
__global__ void __launch_bounds__(SPLIT_ROWS_THREADS) split_rope_rows_kernel(fcuda_split_rows_args a, fcuda_batch b) {
    const int t = b.tok0[0] + blockIdx.x, s = batch_seq_of(b, t);
    const int H = a.heads, Hk = a.kv_heads, D = a.head_dim, cols = (H + 2 * Hk) * D;
    const int pos = (a.pos ? a.pos[s] : b.pos0[s]) + t - b.tok0[s];
    const size_t kv_row = a.table     ? (size_t)a.table[(size_t)b.slot[s] * a.max_pages + pos / a.page_size] *
                                              a.page_size + pos % a.page_size
                          : a.use_cache ? (size_t)b.slot[s] * a.max_seq + pos
                                        : (size_t)t;
    const T *row = (const T *)a.qkv + (size_t)t * cols;
    for (int col = 8 * threadIdx.x; col < cols; col += 8 * SPLIT_ROWS_THREADS) {
        const run8<T> x = *(const run8<T> *)(row + col);
        const int head = col / D, c = col % D;
        T *dst = head < H        ? (T *)a.q + ((size_t)t * H + head) * D
                 : head < H + Hk ? (T *)a.k + (kv_row * Hk + head - H) * D
                                 : (T *)a.v + (kv_row * Hk + head - H - Hk) * D;
        if (head >= H + Hk || a.rope_style == 2) { /* V, or no RoPE: elements as they are */
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
        if (a.rope_style == 1) { /* interleaved: pairs are adjacent elements */
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

extern "C" cudaError_t fcuda_split_rope_rows(const fcuda_split_rows_args *a, const fcuda_batch *b,
                                             cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0];
    switch (a->dtype) {
    case 0: split_rope_rows_kernel<float><<<tokens, SPLIT_ROWS_THREADS, 0, stream>>>(*a, *b); break;
    case 1: split_rope_rows_kernel<__half><<<tokens, SPLIT_ROWS_THREADS, 0, stream>>>(*a, *b); break;
    default: split_rope_rows_kernel<__nv_bfloat16><<<tokens, SPLIT_ROWS_THREADS, 0, stream>>>(*a, *b); break;
    }
    return cudaGetLastError();
}

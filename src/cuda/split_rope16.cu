/* split_rope16.cu: a bf16 or fp16 layer's pass over the QKV projection's
 * output: split into Q, K, V, rotate Q and K (in float32), and store them in
 * the layout the tensor-core attention kernels read (kernels.h,
 * fcuda_split16_args): Q token-major, K and V into the cache slot's rows or
 * the call's scratch. One block a token; a thread takes 8 columns (16
 * bytes) at a time, 4 RoPE pairs: head dims are multiples of 8, so the 8
 * never straddle two heads. It stores them as 16 bytes, or for the half
 * rotation, whose pairs are (p, p + head_dim/2), as two runs of 8. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "batch.cuh"
#include "qkv_store.cuh"

#define SPLIT16_THREADS 128

/* Eight elements, as loaded and stored. */
template <typename T> union pack8 {
    uint4 u;
    T e[8];
};

template <typename T> __global__ void __launch_bounds__(SPLIT16_THREADS) split_rope16_kernel(fcuda_split16_args a, fcuda_batch b) {
    const int t = b.tok0[0] + blockIdx.x, s = batch_seq_of(b, t);
    const int H = a.heads, Hk = a.kv_heads, D = a.head_dim, cols = (H + 2 * Hk) * D;
    const int pos = b.pos0[s] + t - b.tok0[s];
    const size_t kv_row = a.use_cache ? (size_t)b.slot[s] * a.max_seq + pos : (size_t)t;
    const uint4 *row = (const uint4 *)((const T *)a.qkv + (size_t)t * cols);
    for (int col = 8 * threadIdx.x; col < cols; col += 8 * SPLIT16_THREADS) {
        pack8<T> x, out;
        x.u = row[col / 8];
        const int head = col / D, c = col % D;
        T *dst = head < H        ? (T *)a.q + ((size_t)t * H + head) * D
                 : head < H + Hk ? (T *)a.k + (kv_row * Hk + head - H) * D
                                 : (T *)a.v + (kv_row * Hk + head - H - Hk) * D;
        if (head >= H + Hk || a.rope_style == 2) { /* V, or no RoPE: elements as they are */
            *(uint4 *)(dst + c) = x.u;
            continue;
        }
        /* pair k is columns (c + 2k, c + 2k + 1), elements ia, ib of the head */
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float xa = (float)x.e[2 * k], xb = (float)x.e[2 * k + 1];
            float cs, sn;
            rope_angle(pos, a.inv_freq[c / 2 + k], &cs, &sn);
            out.e[2 * k] = (T)(xa * cs - xb * sn);
            out.e[2 * k + 1] = (T)(xb * cs + xa * sn);
        }
        if (a.rope_style == 1) { /* interleaved: pairs are adjacent elements */
            *(uint4 *)(dst + c) = out.u;
            continue;
        }
        pack8<T> half; /* half rotation: the 4 first elements, then the 4 second */
#pragma unroll
        for (int k = 0; k < 4; k++) half.e[k] = out.e[2 * k], half.e[4 + k] = out.e[2 * k + 1];
        *(uint2 *)(dst + c / 2) = make_uint2(half.u.x, half.u.y);
        *(uint2 *)(dst + c / 2 + D / 2) = make_uint2(half.u.z, half.u.w);
    }
}

extern "C" cudaError_t fcuda_split_rope16(const fcuda_split16_args *a, const fcuda_batch *b, cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0];
    if (a->bf16) split_rope16_kernel<__nv_bfloat16><<<tokens, SPLIT16_THREADS, 0, stream>>>(*a, *b);
    else split_rope16_kernel<__half><<<tokens, SPLIT16_THREADS, 0, stream>>>(*a, *b);
    return cudaGetLastError();
}

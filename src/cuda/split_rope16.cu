/* split_rope16.cu: a bf16 or fp16 layer's pass over the QKV projection's
 * output: split into Q, K, V, rotate Q and K (in float32), and store them in
 * the layout the tensor-core attention kernels read (kernels.h,
 * fcuda_split16_args): Q token-major, K and V into the cache slot's rows or
 * the call's scratch. One block a token, a column pair a thread; head dims
 * are even, so a pair never straddles two heads. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "batch.cuh"
#include "qkv_store.cuh"

#define SPLIT16_THREADS 128

/* T's two-element vector, and its widening to float2 */
template <typename T> struct pair_of;
template <> struct pair_of<__nv_bfloat16> {
    typedef __nv_bfloat162 type;
    static __device__ float2 load(const __nv_bfloat162 v) { return __bfloat1622float2(v); }
};
template <> struct pair_of<__half> {
    typedef __half2 type;
    static __device__ float2 load(const __half2 v) { return __half22float2(v); }
};

template <typename T> __global__ void __launch_bounds__(SPLIT16_THREADS) split_rope16_kernel(fcuda_split16_args a, fcuda_batch b) {
    typedef typename pair_of<T>::type T2;
    const int t = b.tok0[0] + blockIdx.x, s = batch_seq_of(b, t);
    const int H = a.heads, Hk = a.kv_heads, D = a.head_dim, cols = (H + 2 * Hk) * D;
    const int pos = b.pos0[s] + t - b.tok0[s];
    const size_t kv_row = a.use_cache ? (size_t)b.slot[s] * a.max_seq + pos : (size_t)t;
    const T2 *row = (const T2 *)a.qkv + (size_t)t * cols / 2;
    for (int col = 2 * threadIdx.x; col < cols; col += 2 * SPLIT16_THREADS) {
        const float2 x = pair_of<T>::load(row[col / 2]);
        const int head = col / D, c = col % D;
        T *dst = head < H        ? (T *)a.q + ((size_t)t * H + head) * D
                 : head < H + Hk ? (T *)a.k + (kv_row * Hk + head - H) * D
                                 : (T *)a.v + (kv_row * Hk + head - H - Hk) * D;
        if (head >= H + Hk || a.rope_style == 2) { /* V, or no RoPE: elements as they are */
            dst[c] = (T)x.x;
            dst[c + 1] = (T)x.y;
            continue;
        }
        int ia, ib;
        rope_pair(a.rope_style, c / 2, D, &ia, &ib);
        float cs, sn;
        rope_angle(pos, a.inv_freq[c / 2], &cs, &sn);
        dst[ia] = (T)(x.x * cs - x.y * sn);
        dst[ib] = (T)(x.y * cs + x.x * sn);
    }
}

extern "C" cudaError_t fcuda_split_rope16(const fcuda_split16_args *a, const fcuda_batch *b, cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0];
    if (a->bf16) split_rope16_kernel<__nv_bfloat16><<<tokens, SPLIT16_THREADS, 0, stream>>>(*a, *b);
    else split_rope16_kernel<__half><<<tokens, SPLIT16_THREADS, 0, stream>>>(*a, *b);
    return cudaGetLastError();
}

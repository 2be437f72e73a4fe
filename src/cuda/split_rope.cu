/* split_rope.cu: one fused pass over the QKV projection's output: split into
 * Q, K, V, rotate Q and K (RoPE at each token's position, angles in double as
 * on the CPU backend), write Q head-major per sequence and K, V into the KV
 * cache (or the call's scratch). One block a token. */
#include "batch.cuh"

#define SPLIT_THREADS 128

__global__ void __launch_bounds__(SPLIT_THREADS) split_rope_kernel(fcuda_split_args a, fcuda_batch b) {
    extern __shared__ float cs[]; /* [head_dim]: cos, then sin */
    const int t = b.tok0[0] + blockIdx.x;
    const int s = batch_seq_of(b, t);
    const int i = t - b.tok0[s], n = b.tok0[s + 1] - b.tok0[s], pos = b.pos0[s] + i;
    const int H = a.heads, Hk = a.kv_heads, D = a.head_dim, half = D / 2;
    const int rope = a.rope_style != 2; /* FORGE_ROPE_NONE */
    const int interleaved = a.rope_style == 1;
    if (rope)
        for (int k = threadIdx.x; k < half; k += SPLIT_THREADS) {
            double sn, cn;
            sincos((double)pos * a.inv_freq[k], &sn, &cn);
            cs[k] = (float)cn;
            cs[half + k] = (float)sn;
        }
    __syncthreads();
    const float *row = a.qkv + (size_t)t * (H + 2 * Hk) * D;
    /* head h < H + Hk of this token: Q heads, then K heads */
    auto dst_of = [&](int h) -> float * {
        if (h < H) return a.q + ((size_t)H * b.tok0[s] + (size_t)h * n + i) * D;
        kv_rows kv = kv_place(a.kv, b, s, h - H, Hk, D);
        return (float *)kv.k + (size_t)(pos - kv.k_pos0) * D;
    };
    if (rope) { /* a pair per thread and step */
        for (int e = threadIdx.x; e < (H + Hk) * half; e += SPLIT_THREADS) {
            const int h = e / half, p = e % half;
            const int ia = interleaved ? 2 * p : p, ib = interleaved ? 2 * p + 1 : p + half;
            const float xa = row[h * D + ia], xb = row[h * D + ib];
            const float c = cs[p], sn = cs[half + p];
            float *dst = dst_of(h);
            dst[ia] = xa * c - xb * sn;
            dst[ib] = xb * c + xa * sn;
        }
    } else {
        for (int e = threadIdx.x; e < (H + Hk) * D; e += SPLIT_THREADS)
            dst_of(e / D)[e % D] = row[e];
    }
    for (int e = threadIdx.x; e < Hk * D; e += SPLIT_THREADS) {
        const int g = e / D, d = e % D;
        kv_rows kv = kv_place(a.kv, b, s, g, Hk, D);
        ((float *)kv.v)[(size_t)(pos - kv.k_pos0) * D + d] = row[(H + Hk) * D + e];
    }
}

extern "C" cudaError_t fcuda_split_rope(const fcuda_split_args *a, const fcuda_batch *b,
                                        cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0];
    split_rope_kernel<<<tokens, SPLIT_THREADS, a->head_dim * sizeof(float), stream>>>(*a, *b);
    return cudaGetLastError();
}

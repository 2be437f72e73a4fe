/* SPDX-License-Identifier: Apache-2.0 */
/* unfused.cu: the seed's attention, stage by stage, around cuBLAS's two
 * GEMMs: the causal row softmax of the scaled scores, and the flatten of the
 * per-head outputs into [tokens, heads * head_dim]. */
#include <math.h>

#include "batch.cuh"

#define SOFTMAX_THREADS 256

/* The reduction of v over the block, by op. */
template <typename Op> __device__ float block_reduce(float v, Op op) {
    __shared__ float partial[SOFTMAX_THREADS / 32];
    for (int o = 16; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    v = partial[0];
    for (int w = 1; w < SOFTMAX_THREADS / 32; w++) v = op(v, partial[w]);
    __syncthreads(); /* partial is reused by the next reduction */
    return v;
}

__global__ void __launch_bounds__(SOFTMAX_THREADS)
softmax_causal_kernel(float *scores, int n_queries, int keys, int q_pos0, int k_pos0) {
    float *row = scores + (size_t)blockIdx.x * keys;
    const int visible = q_pos0 + (int)(blockIdx.x % n_queries) - k_pos0 + 1;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < visible; j += SOFTMAX_THREADS) m = fmaxf(m, row[j]);
    m = block_reduce(m, [](float x, float y) { return fmaxf(x, y); });
    float sum = 0.0f;
    for (int j = threadIdx.x; j < visible; j += SOFTMAX_THREADS) sum += expf(row[j] - m);
    sum = block_reduce(sum, [](float x, float y) { return x + y; });
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < keys; j += SOFTMAX_THREADS)
        row[j] = j < visible ? expf(row[j] - m) * inv : 0.0f;
}

extern "C" cudaError_t fcuda_softmax_causal(float *scores, int rows, int n_queries, int keys,
                                            int q_pos0, int k_pos0, cudaStream_t stream) {
    softmax_causal_kernel<<<rows, SOFTMAX_THREADS, 0, stream>>>(scores, n_queries, keys, q_pos0, k_pos0);
    return cudaGetLastError();
}

#define FLATTEN_THREADS 128

__global__ void __launch_bounds__(FLATTEN_THREADS)
flatten_kernel(const float *heads_out, float *out, int heads, int head_dim, fcuda_batch b) {
    const int t = b.tok0[0] + blockIdx.x;
    const int s = batch_seq_of(b, t);
    const int i = t - b.tok0[s], n = b.tok0[s + 1] - b.tok0[s];
    const float *src = heads_out + ((size_t)heads * b.tok0[s] + i) * head_dim;
    for (int e = threadIdx.x; e < heads * head_dim; e += FLATTEN_THREADS)
        out[(size_t)t * heads * head_dim + e] =
            src[((size_t)(e / head_dim) * n) * head_dim + e % head_dim];
}

extern "C" cudaError_t fcuda_flatten(const float *heads_out, float *out, int heads, int head_dim,
                                     const fcuda_batch *b, cudaStream_t stream) {
    const int tokens = b->tok0[b->n] - b->tok0[0];
    flatten_kernel<<<tokens, FLATTEN_THREADS, 0, stream>>>(heads_out, out, heads, head_dim, *b);
    return cudaGetLastError();
}

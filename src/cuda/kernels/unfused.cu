/* SPDX-License-Identifier: Apache-2.0 */
/* unfused.cu: the unfused path's one kernel of its own, between cuBLAS's
 * two GEMMs (QK^T, PV): the causal row softmax of the scaled scores, within
 * a sliding window where there is one. */
#include <math.h>

#include "kernels.h"

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
softmax_causal_kernel(float *scores, int n_queries, int keys, int q_pos0, int k_pos0, int window) {
    float *row = scores + (size_t)blockIdx.x * keys;
    const int visible = q_pos0 + (int)(blockIdx.x % n_queries) - k_pos0 + 1;
    const int low = window > 0 && visible - window > 0 ? visible - window : 0; /* a window's first key */
    float m = -INFINITY;
    for (int j = low + threadIdx.x; j < visible; j += SOFTMAX_THREADS) m = fmaxf(m, row[j]);
    m = block_reduce(m, [](float x, float y) { return fmaxf(x, y); });
    float sum = 0.0f;
    for (int j = low + threadIdx.x; j < visible; j += SOFTMAX_THREADS) sum += expf(row[j] - m);
    sum = block_reduce(sum, [](float x, float y) { return x + y; });
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < keys; j += SOFTMAX_THREADS)
        row[j] = j >= low && j < visible ? expf(row[j] - m) * inv : 0.0f;
}

extern "C" cudaError_t fcuda_softmax_causal(float *scores, int rows, int n_queries, int keys,
                                            int q_pos0, int k_pos0, int window, cudaStream_t stream) {
    softmax_causal_kernel<<<rows, SOFTMAX_THREADS, 0, stream>>>(scores, n_queries, keys, q_pos0, k_pos0, window);
    return cudaGetLastError();
}

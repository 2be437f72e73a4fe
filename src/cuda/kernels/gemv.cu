/* SPDX-License-Identifier: Apache-2.0 */
/* gemv.cu: y = x W^T + bias for the few rows of a decode step in 16-bit,
 * where the GEMM is a stream of the weights and nothing else: each warp
 * takes one output (a row of W), its lanes 16 bytes of it a load and
 * GEMV_UNROLL loads in flight, against each of x's rows (small, and read
 * from cache by every warp); float32 sums, meeting in a warp shuffle; the
 * bias added before the one rounding, as cuBLASLt's epilogue does. No
 * split of K and no second kernel: cuBLASLt's choices for one row split K
 * and reduce in another launch, reaching 52-83% of the bandwidth on the
 * Llama-3-8B shapes (docs/BENCHMARKS.md). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

#define GEMV_WARPS 8  /* outputs of a block */
#define GEMV_UNROLL 4 /* 16-byte loads of W a lane has in flight */

/* 8 elements of T, loaded as one 16-byte vector. */
template <typename T> struct alignas(16) vec8 { T e[8]; };

template <typename T>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(T *y, const T *x, const T *w, const T *bias, int m, int in, int out) {
    const int lane = threadIdx.x % 32, o = blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
    if (o >= out) return;
    const T *row = w + (size_t)o * in;
    float acc[FCUDA_GEMV_ROWS] = {};
    for (int c0 = 8 * lane; c0 < in; c0 += 8 * 32 * GEMV_UNROLL) {
        vec8<T> wv[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) { /* streamed: read once, kept out of the caches */
            const int c = c0 + 8 * 32 * u;
            if (c < in) {
                const uint4 raw = __ldcs((const uint4 *)(row + c));
                wv[u] = *(const vec8<T> *)&raw;
            }
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int c = c0 + 8 * 32 * u;
            if (c >= in) break;
#pragma unroll
            for (int r = 0; r < FCUDA_GEMV_ROWS; r++) {
                if (r >= m) break;
                const vec8<T> xv = *(const vec8<T> *)(x + (size_t)r * in + c);
#pragma unroll
                for (int e = 0; e < 8; e++) acc[r] += (float)wv[u].e[e] * (float)xv.e[e];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FCUDA_GEMV_ROWS; r++) {
        if (r >= m) break;
        float s = acc[r];
        for (int d = 16; d > 0; d >>= 1) s += __shfl_xor_sync(0xffffffffu, s, d);
        if (lane == 0) y[(size_t)r * out + o] = (T)(s + (bias ? (float)bias[o] : 0.0f));
    }
}

extern "C" int fcuda_gemv_fits(forge_dtype dtype, int rows, int in) {
    return dtype != FORGE_F32 && rows >= 1 && rows <= FCUDA_GEMV_ROWS && in % 8 == 0;
}

extern "C" cudaError_t fcuda_gemv(forge_dtype dtype, void *y, const void *x, const void *w, const void *bias, int rows,
                                  int in, int out, cudaStream_t stream) {
    if (!fcuda_gemv_fits(dtype, rows, in)) return cudaErrorInvalidValue;
    const int blocks = (out + GEMV_WARPS - 1) / GEMV_WARPS;
    if (dtype == FORGE_F16)
        gemv_kernel<__half><<<blocks, GEMV_WARPS * 32, 0, stream>>>((__half *)y, (const __half *)x, (const __half *)w,
                                                                    (const __half *)bias, rows, in, out);
    else
        gemv_kernel<__nv_bfloat16><<<blocks, GEMV_WARPS * 32, 0, stream>>>(
            (__nv_bfloat16 *)y, (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w, (const __nv_bfloat16 *)bias, rows,
            in, out);
    return cudaGetLastError();
}

/* SPDX-License-Identifier: Apache-2.0 */
/* model_ops.cu: the row operations of a transformer around its attention
 * layers, in the model's dtype with float32 arithmetic, rounding where
 * transformers rounds: the residual add (rounded) fused into the RMSNorm
 * that follows it (the normalised row rounded to the dtype, then times the
 * weight, as LlamaRMSNorm), SiLU(gate) * up (SiLU rounded, then the
 * product), the embedding's gather, and each row's argmax (greedy
 * decoding on the device). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

/* A norm's block takes a row, each thread NORM_REGS elements of it at a
 * time, all loaded before any is used: one round of memory latency for a
 * row of up to NORM_MAX_THREADS * NORM_REGS elements, where a loop of
 * dependent loads would pay one an element (a decode step's rows are few,
 * so their norms are all latency). */
#define NORM_MAX_THREADS 1024
#define NORM_REGS 8

/* Row r of a norm: rows of dim elements, `group` of them side by side
 * every `stride` elements (the heads of a QKV row), or one a row; with res,
 * x += res first, each thread reading back only what it wrote. */
template <typename T>
__global__ void __launch_bounds__(NORM_MAX_THREADS) rmsnorm_kernel(T *out, T *x, const T *res, const T *w, int dim,
                                                                   float eps, int group, long stride) {
    const long base = (long)(blockIdx.x / group) * stride + (long)(blockIdx.x % group) * dim;
    const int chunk = blockDim.x * NORM_REGS;
    float v[NORM_REGS];
    float ss = 0.0f;
    for (int c0 = 0; c0 < dim; c0 += chunk) {
        float r[NORM_REGS];
#pragma unroll
        for (int k = 0; k < NORM_REGS; k++) {
            const int i = c0 + threadIdx.x + k * blockDim.x;
            v[k] = i < dim ? (float)x[base + i] : 0.0f;
            r[k] = res && i < dim ? (float)res[base + i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < NORM_REGS; k++) {
            const int i = c0 + threadIdx.x + k * blockDim.x;
            if (res && i < dim) {
                const T sum = (T)(v[k] + r[k]);
                x[base + i] = sum;
                v[k] = (float)sum;
            }
            ss += v[k] * v[k];
        }
    }
    __shared__ float part[NORM_MAX_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < (int)blockDim.x / 32; i++) total += part[i];
    const float inv = rsqrtf(total / dim + eps);
    for (int c0 = 0; c0 < dim; c0 += chunk) {
#pragma unroll
        for (int k = 0; k < NORM_REGS; k++) { /* a row longer than one chunk is read again */
            const int i = c0 + threadIdx.x + k * blockDim.x;
            if (dim > chunk && i < dim) v[k] = (float)x[base + i];
        }
#pragma unroll
        for (int k = 0; k < NORM_REGS; k++) {
            const int i = c0 + threadIdx.x + k * blockDim.x;
            if (i < dim) out[base + i] = (T)((float)w[i] * (float)(T)(v[k] * inv));
        }
    }
}

template <typename T> __global__ void silu_mul_kernel(T *out, const T *gate_up, long rows, int inter) {
    const long n = rows * inter;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const long r = i / inter, c = i % inter;
        const float g = (float)gate_up[r * 2 * inter + c], u = (float)gate_up[r * 2 * inter + inter + c];
        out[i] = (T)((float)(T)(g / (1.0f + __expf(-g))) * u);
    }
}

__global__ void gather_kernel(char *out, const char *table, const int *ids, size_t row_bytes) {
    const char *src = table + (size_t)ids[blockIdx.x] * row_bytes;
    char *dst = out + (size_t)blockIdx.x * row_bytes;
    if (row_bytes % 16 == 0)
        for (size_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x) ((uint4 *)dst)[i] = ((const uint4 *)src)[i];
    else
        for (size_t i = threadIdx.x; i < row_bytes; i += blockDim.x) dst[i] = src[i];
}

#define ARGMAX_THREADS 1024

/* The larger of two (value, index) candidates, the first on a tie. */
__device__ static void better(float &v, int &i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

template <typename T> __global__ void __launch_bounds__(ARGMAX_THREADS) argmax_kernel(int *out, const T *x, int cols) {
    const T *row = x + (size_t)blockIdx.x * cols;
    float v = -INFINITY;
    int best = cols; /* no candidate yet: loses every tie */
    for (int i = threadIdx.x; i < cols; i += ARGMAX_THREADS) better(v, best, (float)row[i], i);
    for (int o = 16; o > 0; o >>= 1)
        better(v, best, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, best, o));
    __shared__ float vs[ARGMAX_THREADS / 32];
    __shared__ int is[ARGMAX_THREADS / 32];
    if (threadIdx.x % 32 == 0) vs[threadIdx.x / 32] = v, is[threadIdx.x / 32] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / 32; w++) better(v, best, vs[w], is[w]);
        out[blockIdx.x] = best < cols ? best : 0; /* every element NaN: the first */
    }
}

static int grid_of(long n) { return (int)(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536); }

extern "C" cudaError_t fcuda_rmsnorm(forge_dtype dtype, void *out, void *x, const void *res, const void *w, long rows,
                                     int dim, float eps, int group, long stride, cudaStream_t stream) {
    if (rows < 1) return cudaSuccess;
    /* warps enough for NORM_REGS elements a thread */
    const int per_warp = 32 * NORM_REGS, warps = (dim + per_warp - 1) / per_warp;
    const int threads = 32 * (warps < NORM_MAX_THREADS / 32 ? warps : NORM_MAX_THREADS / 32);
    switch (dtype) {
    case FORGE_F32: rmsnorm_kernel<float><<<rows, threads, 0, stream>>>((float *)out, (float *)x, (const float *)res, (const float *)w, dim, eps, group, stride); break;
    case FORGE_F16: rmsnorm_kernel<__half><<<rows, threads, 0, stream>>>((__half *)out, (__half *)x, (const __half *)res, (const __half *)w, dim, eps, group, stride); break;
    default: rmsnorm_kernel<__nv_bfloat16><<<rows, threads, 0, stream>>>((__nv_bfloat16 *)out, (__nv_bfloat16 *)x, (const __nv_bfloat16 *)res, (const __nv_bfloat16 *)w, dim, eps, group, stride); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t fcuda_silu_mul(forge_dtype dtype, void *out, const void *gate_up, long rows, int inter,
                                      cudaStream_t stream) {
    const int grid = grid_of(rows * inter);
    switch (dtype) {
    case FORGE_F32: silu_mul_kernel<float><<<grid, 256, 0, stream>>>((float *)out, (const float *)gate_up, rows, inter); break;
    case FORGE_F16: silu_mul_kernel<__half><<<grid, 256, 0, stream>>>((__half *)out, (const __half *)gate_up, rows, inter); break;
    default: silu_mul_kernel<__nv_bfloat16><<<grid, 256, 0, stream>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)gate_up, rows, inter); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t fcuda_gather_rows(void *out, const void *table, const int *ids, long rows, size_t row_bytes,
                                         cudaStream_t stream) {
    if (rows < 1) return cudaSuccess;
    gather_kernel<<<rows, 128, 0, stream>>>((char *)out, (const char *)table, ids, row_bytes);
    return cudaGetLastError();
}

extern "C" cudaError_t fcuda_argmax_rows(forge_dtype dtype, int *out, const void *x, long rows, int cols,
                                         cudaStream_t stream) {
    if (rows < 1) return cudaSuccess;
    switch (dtype) {
    case FORGE_F32: argmax_kernel<float><<<rows, ARGMAX_THREADS, 0, stream>>>(out, (const float *)x, cols); break;
    case FORGE_F16: argmax_kernel<__half><<<rows, ARGMAX_THREADS, 0, stream>>>(out, (const __half *)x, cols); break;
    default: argmax_kernel<__nv_bfloat16><<<rows, ARGMAX_THREADS, 0, stream>>>(out, (const __nv_bfloat16 *)x, cols); break;
    }
    return cudaGetLastError();
}

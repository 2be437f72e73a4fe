/* SPDX-License-Identifier: Apache-2.0 */
/* model_ops.cu: the row operations of a transformer around its attention
 * layers, in the model's dtype with float32 arithmetic, rounding where
 * transformers rounds: RMSNorm (the normalised row rounded to the dtype,
 * then times the weight, as LlamaRMSNorm), SiLU(gate) * up (SiLU rounded,
 * then the product), the residual add, and the embedding's gather. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

#define NORM_THREADS 256

/* Row r of a norm: rows of dim elements, `group` of them side by side
 * every `stride` elements (the heads of a QKV row), or one a row. */
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS) rmsnorm_kernel(T *out, const T *x, const T *w, int dim, float eps,
                                                               int group, long stride) {
    const long base = (long)(blockIdx.x / group) * stride + (long)(blockIdx.x % group) * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS) {
        const float v = (float)x[base + i];
        ss += v * v;
    }
    __shared__ float part[NORM_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < NORM_THREADS / 32; i++) total += part[i];
    const float inv = rsqrtf(total / dim + eps);
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS)
        out[base + i] = (T)((float)w[i] * (float)(T)((float)x[base + i] * inv));
}

template <typename T> __global__ void silu_mul_kernel(T *out, const T *gate_up, long rows, int inter) {
    const long n = rows * inter;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const long r = i / inter, c = i % inter;
        const float g = (float)gate_up[r * 2 * inter + c], u = (float)gate_up[r * 2 * inter + inter + c];
        out[i] = (T)((float)(T)(g / (1.0f + __expf(-g))) * u);
    }
}

template <typename T> __global__ void add_kernel(T *y, const T *x, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        y[i] = (T)((float)y[i] + (float)x[i]);
}

__global__ void gather_kernel(char *out, const char *table, const int *ids, size_t row_bytes) {
    const char *src = table + (size_t)ids[blockIdx.x] * row_bytes;
    char *dst = out + (size_t)blockIdx.x * row_bytes;
    if (row_bytes % 16 == 0)
        for (size_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x) ((uint4 *)dst)[i] = ((const uint4 *)src)[i];
    else
        for (size_t i = threadIdx.x; i < row_bytes; i += blockDim.x) dst[i] = src[i];
}

static int grid_of(long n) { return (int)(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536); }

extern "C" cudaError_t fcuda_rmsnorm(forge_dtype dtype, void *out, const void *x, const void *w, long rows, int dim,
                                     float eps, int group, long stride, cudaStream_t stream) {
    if (rows < 1) return cudaSuccess;
    switch (dtype) {
    case FORGE_F32: rmsnorm_kernel<float><<<rows, NORM_THREADS, 0, stream>>>((float *)out, (const float *)x, (const float *)w, dim, eps, group, stride); break;
    case FORGE_F16: rmsnorm_kernel<__half><<<rows, NORM_THREADS, 0, stream>>>((__half *)out, (const __half *)x, (const __half *)w, dim, eps, group, stride); break;
    default: rmsnorm_kernel<__nv_bfloat16><<<rows, NORM_THREADS, 0, stream>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w, dim, eps, group, stride); break;
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

extern "C" cudaError_t fcuda_add(forge_dtype dtype, void *y, const void *x, long n, cudaStream_t stream) {
    switch (dtype) {
    case FORGE_F32: add_kernel<float><<<grid_of(n), 256, 0, stream>>>((float *)y, (const float *)x, n); break;
    case FORGE_F16: add_kernel<__half><<<grid_of(n), 256, 0, stream>>>((__half *)y, (const __half *)x, n); break;
    default: add_kernel<__nv_bfloat16><<<grid_of(n), 256, 0, stream>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)x, n); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t fcuda_gather_rows(void *out, const void *table, const int *ids, long rows, size_t row_bytes,
                                         cudaStream_t stream) {
    if (rows < 1) return cudaSuccess;
    gather_kernel<<<rows, 128, 0, stream>>>((char *)out, (const char *)table, ids, row_bytes);
    return cudaGetLastError();
}

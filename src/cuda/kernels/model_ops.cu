/* SPDX-License-Identifier: Apache-2.0 */
/* model_ops.cu: the row operations of a transformer around its attention
 * layers, in the model's dtype with float32 arithmetic, rounding where
 * transformers rounds: the residual add (rounded) fused into the RMSNorm
 * that follows it (the normalised row rounded to the dtype, then times the
 * weight, as LlamaRMSNorm), SiLU(gate) * up (SiLU rounded, then the
 * product), the embedding's gather, and each row's argmax (greedy
 * decoding on the device). */
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"
#include "sample_front.h"

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

/* A draw's front (backend.h's sample_front): a block a row, three passes
 * over it. The score buckets are model_sample.c's (any start of the order
 * would do: the host draws from whatever front it is given). */
#define FRONT_THREADS 512 /* 128 registers a thread: the double exp spills at 64 */
#define FRONT_PER_THREAD 2
#define FRONT_BUCKETS (FRONT_THREADS * FRONT_PER_THREAD)
#define FRONT_RANGE 40.0

/* A (value, index) pair and the first largest of two (argmax's rule). */
struct front_best {
    float v;
    int i;
};
struct front_first_largest {
    __device__ front_best operator()(front_best a, front_best b) const {
        better(a.v, a.i, b.v, b.i);
        return a;
    }
};

/* Logit i of a row after the repetition penalty (bits: the sequence's seen
 * ids, or NULL), as model_sample computes it. */
template <typename T>
__device__ static float penalised(const T *row, const uint32_t *bits, float penalty, int i) {
    const float x = (float)row[i];
    if (!bits || !(bits[i >> 5] >> (i & 31) & 1u)) return x;
    return x > 0.0f ? x / penalty : x * penalty;
}

__device__ static int front_bucket(float score, double top) {
    const double b = (top - score) * (FRONT_BUCKETS / FRONT_RANGE);
    return b < FRONT_BUCKETS - 1 ? (int)b : FRONT_BUCKETS - 1;
}

template <typename T>
__global__ void __launch_bounds__(FRONT_THREADS) sample_front_kernel(char *out, const T *logits,
                                                                     const forge_sample_row *settings,
                                                                     const uint32_t *seen, int vocab, int cap) {
    __shared__ union {
        typename cub::BlockReduce<front_best, FRONT_THREADS>::TempStorage best;
        typename cub::BlockReduce<double, FRONT_THREADS>::TempStorage sum;
        typename cub::BlockScan<int, FRONT_THREADS>::TempStorage count;
        typename cub::BlockScan<double, FRONT_THREADS>::TempStorage mass;
    } tmp;
    __shared__ int counts[FRONT_BUCKETS];
    __shared__ front_best top_best;
    __shared__ double total_mass;
    __shared__ int last, kept, found, n;
    const forge_sample_row s = settings[blockIdx.x];
    const T *row = logits + (size_t)blockIdx.x * vocab;
    const uint32_t *bits = seen && s.repeat_penalty != 1.0f ? seen + (size_t)blockIdx.x * ((vocab + 31) / 32) : NULL;
    forge_sample_head *head = (forge_sample_head *)(out + (size_t)blockIdx.x * FORGE_SAMPLE_ROW_BYTES(cap));
    forge_scored *cand = (forge_scored *)(head + 1);

    /* the first largest penalised logit: greedy's token, and the top score */
    front_best b = {-INFINITY, vocab};
    for (int i = threadIdx.x; i < vocab; i += FRONT_THREADS) better(b.v, b.i, penalised(row, bits, s.repeat_penalty, i), i);
    b = cub::BlockReduce<front_best, FRONT_THREADS>(tmp.best).Reduce(b, front_first_largest());
    if (threadIdx.x == 0) top_best = b;
    __syncthreads();
    b = top_best;
    if (s.temperature <= 0.0f) {
        if (threadIdx.x == 0) {
            *head = forge_sample_head{0.0, 1, 1};
            cand[0] = forge_scored{b.v, b.i < vocab ? b.i : 0}; /* every logit NaN: the first */
        }
        return;
    }
    const float t = s.temperature;
    const double top = (double)(b.v / t);
    const bool top_k = s.top_k > 0 && s.top_k < vocab;

    /* each bucket's tokens (without top-k, those min-p keeps), and the mass */
    for (int k = threadIdx.x; k < FRONT_BUCKETS; k += FRONT_THREADS) counts[k] = 0;
    __syncthreads();
    double mass = 0.0;
    for (int i = threadIdx.x; i < vocab; i += FRONT_THREADS) {
        const float x = penalised(row, bits, s.repeat_penalty, i) / t;
        if (!top_k) {
            const double w = exp((double)x - top);
            mass += w;
            if (s.min_p > 0.0f && !(w >= (double)s.min_p)) continue;
        }
        atomicAdd(&counts[front_bucket(x, top)], 1);
    }
    mass = cub::BlockReduce<double, FRONT_THREADS>(tmp.sum).Sum(mass);
    if (threadIdx.x == 0) total_mass = mass, last = FRONT_BUCKETS - 1;
    __syncthreads();
    mass = total_mass;

    /* the last bucket of the front: the first whose running count reaches
     * top-k's k and whose running mass (each bucket's at its lowest score)
     * reaches top-p's share; without top-k or top-p, all of them */
    const int k0 = threadIdx.x * FRONT_PER_THREAD; /* this thread's buckets, consecutive */
    int c[FRONT_PER_THREAD], cum_c[FRONT_PER_THREAD];
    double w[FRONT_PER_THREAD], cum_w[FRONT_PER_THREAD];
    for (int j = 0; j < FRONT_PER_THREAD; j++)
        c[j] = counts[k0 + j], w[j] = c[j] * exp(-(k0 + j + 1) * (FRONT_RANGE / FRONT_BUCKETS));
    cub::BlockScan<int, FRONT_THREADS>(tmp.count).InclusiveSum(c, cum_c);
    __syncthreads();
    cub::BlockScan<double, FRONT_THREADS>(tmp.mass).InclusiveSum(w, cum_w);
    const int need = top_k ? s.top_k : 1;
    const double share = !top_k && s.top_p < 1.0f ? (double)s.top_p * mass : 0.0;
    for (int j = 0; j < FRONT_PER_THREAD; j++) {
        if ((top_k || s.top_p < 1.0f) && cum_c[j] >= need && cum_w[j] >= share) atomicMin(&last, k0 + j);
        if (k0 + j == FRONT_BUCKETS - 1) kept = cum_c[j];
    }
    if (threadIdx.x == 0) n = 0;
    __syncthreads();
    for (int j = 0; j < FRONT_PER_THREAD; j++)
        if (k0 + j == last) found = cum_c[j];

    /* the candidates: every token of the buckets up to the last (that min-p keeps) */
    for (int i = threadIdx.x; i < vocab; i += FRONT_THREADS) {
        const float x = penalised(row, bits, s.repeat_penalty, i) / t;
        if (front_bucket(x, top) > last) continue;
        if (!top_k && s.min_p > 0.0f && !(exp((double)x - top) >= (double)s.min_p)) continue;
        const int at = atomicAdd(&n, 1);
        if (at < cap) cand[at] = forge_scored{x, i};
    }
    __syncthreads();
    if (threadIdx.x == 0) *head = forge_sample_head{mass, n, found == kept};
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

extern "C" cudaError_t fcuda_sample_front(forge_dtype dtype, void *out, const void *logits, const void *settings_v,
                                          const uint32_t *seen, long rows, int vocab, int cap, cudaStream_t stream) {
    if (rows < 1) return cudaSuccess;
    char *o = (char *)out;
    const forge_sample_row *settings = (const forge_sample_row *)settings_v;
    switch (dtype) {
    case FORGE_F32: sample_front_kernel<float><<<rows, FRONT_THREADS, 0, stream>>>(o, (const float *)logits, settings, seen, vocab, cap); break;
    case FORGE_F16: sample_front_kernel<__half><<<rows, FRONT_THREADS, 0, stream>>>(o, (const __half *)logits, settings, seen, vocab, cap); break;
    default: sample_front_kernel<__nv_bfloat16><<<rows, FRONT_THREADS, 0, stream>>>(o, (const __nv_bfloat16 *)logits, settings, seen, vocab, cap); break;
    }
    return cudaGetLastError();
}

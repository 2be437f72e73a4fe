/* SPDX-License-Identifier: Apache-2.0 */
/* flash_attention.cu: causal attention in one kernel, float32 (FlashAttention's
 * online softmax on CUDA cores), over the varlen rows of kernels.h: Q
 * [total_q, heads, head_dim], K and V [total_k, kv_heads, head_dim]. A block
 * takes BQ query rows of one head of one sequence and walks the keys those
 * rows can see in tiles of BK, held in shared memory; scores never reach
 * global memory. TPR threads share a
 * query row: each scores every TPR-th key of a tile and owns every TPR-th
 * output column. Built for head dims 32, 64, 80, 96, 128 and 256; launched
 * to overlap the kernel before it (pdl.cuh). */
#include <math.h>

#include "kernels.h"
#include "pdl.cuh"

/* Query rows of a block, BQ, come in three sizes, each with 128 threads:
 * 32 (4 threads a row) for long calls, where it halves the K/V traffic; 16
 * (8 threads a row) for mid-sized ones, which spreads them over twice the
 * blocks with half the serial work a thread; and 8 (16 threads a row) for
 * small calls (at most FCUDA_SMALL_TOKENS rows), which are all latency. */
#define BK 32 /* keys of a tile */
#define FLASH_THREADS 128
#define FLASH_LONG_ROWS 256 /* calls with sequences this long take BQ = 32 */

template <int D, int BQ> struct flash_cfg {
    static constexpr int TPR = FLASH_THREADS / BQ; /* threads per query row */
    static constexpr int DP = D + 1; /* padded rows: row-strided reads hit distinct banks */
    static constexpr int floats = BQ * DP + BK * DP + BK * D + BQ * (BK + 1);
    static constexpr size_t bytes = floats * sizeof(float);
};

/* Copies rows [0, ROWS) of D floats from each of the N sources (row i at
 * src[m] + i * stride; rows at or past `valid` read as 0), times scale, to
 * dst[m] with row pitch pitch[m]. Global -> registers -> shared in groups of 4
 * float4s a thread and source, all sources' loads of a group in flight
 * together: the sources are generic pointers that might alias shared
 * memory, so a load after a shared store would wait for it. */
template <int ROWS, int D, int N>
__device__ inline void load_rows(float *const (&dst)[N], const int (&pitch)[N],
                                 const float *const (&src)[N], size_t stride, int valid, float scale) {
    constexpr int V4 = ROWS * D / 4, PER_THREAD = (V4 + FLASH_THREADS - 1) / FLASH_THREADS;
    constexpr int STAGE = PER_THREAD < 4 ? PER_THREAD : 4;
    const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int g0 = 0; g0 < PER_THREAD; g0 += STAGE) {
        float4 r4[N][STAGE];
#pragma unroll
        for (int m = 0; m < N; m++)
#pragma unroll
            for (int j = 0; j < STAGE; j++) {
                const int e = threadIdx.x + FLASH_THREADS * (g0 + j), row = e / (D / 4), d = (e % (D / 4)) * 4;
                r4[m][j] = e < V4 && row < valid ? *(const float4 *)(src[m] + row * stride + d) : zero4;
            }
#pragma unroll
        for (int m = 0; m < N; m++)
#pragma unroll
            for (int j = 0; j < STAGE; j++) {
                const int e = threadIdx.x + FLASH_THREADS * (g0 + j), row = e / (D / 4), d = (e % (D / 4)) * 4;
                if (e >= V4) break;
                float *out = dst[m] + row * pitch[m] + d;
                out[0] = r4[m][j].x * scale, out[1] = r4[m][j].y * scale;
                out[2] = r4[m][j].z * scale, out[3] = r4[m][j].w * scale;
            }
    }
}

template <int D, int BQ>
__global__ void __launch_bounds__(FLASH_THREADS) flash_kernel(fcuda_attn_args a, fcuda_varlen b) {
    constexpr int TPR = flash_cfg<D, BQ>::TPR, DP = flash_cfg<D, BQ>::DP, NJ = D / TPR, KJ = BK / TPR;
    extern __shared__ float smem[];
    float *Qs = smem;          /* [BQ][DP], scaled by scale * log2(e) */
    float *Ks = Qs + BQ * DP;  /* [BK][DP] */
    float *Vs = Ks + BK * DP;  /* [BK][D]  */
    float *Ps = Vs + BK * D;   /* [BQ][BK + 1] probabilities of the tile */

    pdl_trigger();
    const int s = blockIdx.z, h = blockIdx.y;
    const int t0 = b.q0[s], n = b.q0[s + 1] - t0, i0 = blockIdx.x * BQ;
    if (i0 >= n) return;
    const int H = a.heads, Hk = a.kv_heads, g = h / (H / Hk);
    /* query i sees keys 0 .. prefix + i: the queries are the last n of the keys */
    const int prefix = b.nk[s] - n;
    const float *Kg = (const float *)a.k + ((size_t)b.k0[s] * Hk + g) * D;
    const float *Vg = (const float *)a.v + ((size_t)b.k0[s] * Hk + g) * D;
    const int rows = min(BQ, n - i0);
    const int tid = threadIdx.x, r = tid / TPR, c = tid % TPR;
    /* keys low .. visible-1 are seen by row r (low > 0 with a window); the
     * block needs those from its first row's low to its last row's end */
    const int visible = prefix + i0 + r + 1;
    const int low = a.window > 0 ? visible - a.window : 0;
    const int block_keys = prefix + i0 + rows;
    const int block_low = a.window > 0 ? max(0, prefix + i0 + 1 - a.window) / BK * BK : 0;
    float m = -INFINITY, l = 0.0f, acc[NJ];
#pragma unroll
    for (int j = 0; j < NJ; j++) acc[j] = 0.0f;

    pdl_wait(); /* Q, K, V come from the kernel before */
    /* Q: held in registers until the first K/V tile's loads are issued too,
     * so that both take one memory latency; too large a Q goes straight to
     * shared memory. */
    constexpr int QV4 = BQ * D / 4, Q_PER_THREAD = (QV4 + FLASH_THREADS - 1) / FLASH_THREADS;
    constexpr bool Q_IN_REGS = Q_PER_THREAD <= 4;
    const float *Qg = (const float *)a.q + ((size_t)(t0 + i0) * H + h) * D;
    const float qscale = a.scale * 1.4426950408889634f;
    float4 q4[Q_IN_REGS ? Q_PER_THREAD : 1];
    if constexpr (Q_IN_REGS) {
#pragma unroll
        for (int j = 0; j < Q_PER_THREAD; j++) {
            const int e = tid + FLASH_THREADS * j, row = e / (D / 4), d = (e % (D / 4)) * 4;
            q4[j] = e < QV4 && row < rows ? *(const float4 *)(Qg + (size_t)row * H * D + d)
                                          : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    } else {
        float *const dst[1] = {Qs};
        const int pitch[1] = {DP};
        const float *const src[1] = {Qg};
        load_rows<BQ, D>(dst, pitch, src, (size_t)H * D, rows, qscale);
    }
    for (int k0 = block_low; k0 < block_keys; k0 += BK) {
        const int kn = min(BK, block_keys - k0);
        if (k0 > block_low) __syncthreads(); /* the previous tile is no longer read */
        float *const dst[2] = {Ks, Vs};
        const int pitch[2] = {DP, D};
        const float *const src[2] = {Kg + (size_t)k0 * Hk * D, Vg + (size_t)k0 * Hk * D};
        load_rows<BK, D>(dst, pitch, src, (size_t)Hk * D, kn, 1.0f);
        if constexpr (Q_IN_REGS)
            if (k0 == block_low)
#pragma unroll
                for (int j = 0; j < Q_PER_THREAD; j++) {
                    const int e = tid + FLASH_THREADS * j, row = e / (D / 4), d = (e % (D / 4)) * 4;
                    if (e >= QV4) break;
                    float *out = Qs + row * DP + d;
                    out[0] = q4[j].x * qscale, out[1] = q4[j].y * qscale;
                    out[2] = q4[j].z * qscale, out[3] = q4[j].w * qscale;
                }
        __syncthreads();

        float sc[KJ];
#pragma unroll
        for (int j = 0; j < KJ; j++) sc[j] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float q = Qs[r * DP + d];
#pragma unroll
            for (int j = 0; j < KJ; j++) sc[j] += q * Ks[(c + TPR * j) * DP + d];
        }
        float tile_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            const int key = k0 + c + TPR * j;
            sc[j] = key < visible && key >= low && key < k0 + kn ? sc[j] : -INFINITY; /* causal mask, window */
            tile_max = fmaxf(tile_max, sc[j]);
        }
#pragma unroll
        for (int o = 1; o < TPR; o *= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
        /* a row that has seen no key yet (its window starts in a later
         * tile) keeps m = -inf, and its p and correction are 0 */
        const float m_new = fmaxf(m, tile_max), base = m_new == -INFINITY ? 0.0f : m_new;
        const float correction = exp2f(m - base);
        float psum = 0.0f;
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            const float p = exp2f(sc[j] - base);
            Ps[r * (BK + 1) + c + TPR * j] = p;
            psum += p;
        }
#pragma unroll
        for (int o = 1; o < TPR; o *= 2) psum += __shfl_xor_sync(0xffffffffu, psum, o);
        l = l * correction + psum;
        m = m_new;
#pragma unroll
        for (int j = 0; j < NJ; j++) acc[j] *= correction;
        __syncwarp(); /* a row's probabilities come from its own warp */
        for (int kk = 0; kk < kn; kk++) {
            const float p = Ps[r * (BK + 1) + kk];
#pragma unroll
            for (int j = 0; j < NJ; j++) acc[j] += p * Vs[kk * D + c + TPR * j];
        }
    }
    if (r < rows) {
        const float inv = 1.0f / l;
        float *out = (float *)a.out + ((size_t)(t0 + i0 + r) * H + h) * D;
#pragma unroll
        for (int j = 0; j < NJ; j++) out[c + TPR * j] = acc[j] * inv;
    }
}

#define FLASH_HEAD_DIMS(X) X(32) X(64) X(80) X(96) X(128) X(256)

extern "C" int fcuda_flash_f32_supported(int head_dim) {
#define SUPPORTED(d) if (head_dim == d) return 1;
    FLASH_HEAD_DIMS(SUPPORTED)
#undef SUPPORTED
    return 0;
}

template <int D, int BQ> static cudaError_t opt_in(void) {
    return cudaFuncSetAttribute(flash_kernel<D, BQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)flash_cfg<D, BQ>::bytes);
}

extern "C" cudaError_t fcuda_flash_f32_init(void) {
    cudaError_t e = cudaSuccess;
#define OPT_IN(d)                                   \
    if (e == cudaSuccess) e = opt_in<d, 8>();       \
    if (e == cudaSuccess) e = opt_in<d, 16>();      \
    if (e == cudaSuccess) e = opt_in<d, 32>();
    FLASH_HEAD_DIMS(OPT_IN)
#undef OPT_IN
    return e;
}

template <int D, int BQ>
static cudaError_t launch_rows(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    const dim3 grid((b->max_q + BQ - 1) / BQ, a->heads, b->n);
    return pdl_launch(flash_kernel<D, BQ>, grid, dim3(FLASH_THREADS), flash_cfg<D, BQ>::bytes, stream, *a, *b);
}

template <int D>
static cudaError_t launch(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    if (b->max_q >= FLASH_LONG_ROWS) return launch_rows<D, 32>(a, b, stream);
    if (b->max_q > FCUDA_SMALL_TOKENS) return launch_rows<D, 16>(a, b, stream);
    return launch_rows<D, 8>(a, b, stream);
}

extern "C" cudaError_t fcuda_flash_f32(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    switch (a->head_dim) {
#define LAUNCH(d)                                                                                \
    case d: return launch<d>(a, b, stream);
        FLASH_HEAD_DIMS(LAUNCH)
#undef LAUNCH
    default: return cudaErrorInvalidValue;
    }
}

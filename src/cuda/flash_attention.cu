/* flash_attention.cu: causal attention in one kernel, float32 (FlashAttention's
 * online softmax on CUDA cores). A block takes BQ query rows of one head of
 * one sequence and walks the keys those rows can see in tiles of BK, held in
 * shared memory; scores never reach global memory. Four threads share a
 * query row: each scores every fourth key of a tile and owns every fourth
 * output column. Built for head dims 32, 64, 80, 96, 128 and 256. */
#include <math.h>

#include "batch.cuh"

#define BQ 32
#define BK 32
#define TPR 4 /* threads per query row */
#define FLASH_THREADS (BQ * TPR)
static_assert(BQ == BK, "Q and K/V tiles are loaded by the same loop shape");

template <int D> struct flash_smem {
    static constexpr int DP = D + 1; /* padded rows: row-strided reads hit distinct banks */
    static constexpr int floats = BQ * DP + BK * DP + BK * D + BQ * (BK + 1);
    static constexpr size_t bytes = floats * sizeof(float);
};

template <int D>
__global__ void __launch_bounds__(FLASH_THREADS) flash_kernel(fcuda_attn_args a, fcuda_batch b) {
    constexpr int DP = flash_smem<D>::DP, NJ = D / TPR, KJ = BK / TPR;
    extern __shared__ float smem[];
    float *Qs = smem;          /* [BQ][DP], scaled by scale * log2(e) */
    float *Ks = Qs + BQ * DP;  /* [BK][DP] */
    float *Vs = Ks + BK * DP;  /* [BK][D]  */
    float *Ps = Vs + BK * D;   /* [BQ][BK + 1] probabilities of the tile */

    const int s = blockIdx.z, h = blockIdx.y;
    const int t0 = b.tok0[s], n = b.tok0[s + 1] - t0, i0 = blockIdx.x * BQ;
    if (i0 >= n) return;
    const int H = a.heads, g = h / (H / a.kv_heads), pos0 = b.pos0[s];
    const kv_rows kv = kv_place(a.kv, b, s, g, a.kv_heads, D);
    const int rows = min(BQ, n - i0);
    const int tid = threadIdx.x, r = tid / TPR, c = tid % TPR;

    const float qscale = a.scale * 1.4426950408889634f;
    const float *Qg = a.q + ((size_t)H * t0 + (size_t)h * n + i0) * D;
    /* Tiles go global -> registers -> shared in groups of STAGE float4s a
     * thread: the sources are generic pointers that might alias shared
     * memory, so a load after a shared store would wait for it. */
    constexpr int V4 = BQ * D / 4, V4_PER_THREAD = (V4 + FLASH_THREADS - 1) / FLASH_THREADS;
    constexpr int STAGE = V4_PER_THREAD < 4 ? V4_PER_THREAD : 4;
    const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int g0 = 0; g0 < V4_PER_THREAD; g0 += STAGE) {
        float4 q4[STAGE];
#pragma unroll
        for (int j = 0; j < STAGE; j++) {
            const int e = tid + FLASH_THREADS * (g0 + j), rr = e / (D / 4), d = (e % (D / 4)) * 4;
            q4[j] = e < V4 && rr < rows ? *(const float4 *)(Qg + (size_t)rr * D + d) : zero4;
        }
#pragma unroll
        for (int j = 0; j < STAGE; j++) {
            const int e = tid + FLASH_THREADS * (g0 + j), rr = e / (D / 4), d = (e % (D / 4)) * 4;
            if (e >= V4) break;
            float *dst = Qs + rr * DP + d;
            dst[0] = q4[j].x * qscale, dst[1] = q4[j].y * qscale, dst[2] = q4[j].z * qscale, dst[3] = q4[j].w * qscale;
        }
    }
    /* keys 0 .. visible-1 are seen by row r; the block needs those of its last row */
    const int visible = pos0 + i0 + r - kv.k_pos0 + 1;
    const int block_keys = pos0 + i0 + rows - kv.k_pos0;
    float m = -INFINITY, l = 0.0f, acc[NJ];
#pragma unroll
    for (int j = 0; j < NJ; j++) acc[j] = 0.0f;

    for (int k0 = 0; k0 < block_keys; k0 += BK) {
        const int kn = min(BK, block_keys - k0);
        __syncthreads(); /* the previous tile is no longer read */
#pragma unroll
        for (int g0 = 0; g0 < V4_PER_THREAD; g0 += STAGE) { /* BK == BQ: the same shape as Q's */
            float4 k4[STAGE], v4[STAGE];
#pragma unroll
            for (int j = 0; j < STAGE; j++) {
                const int e = tid + FLASH_THREADS * (g0 + j), kk = e / (D / 4), d = (e % (D / 4)) * 4;
                const size_t at = (size_t)(k0 + kk) * D + d;
                k4[j] = e < V4 && kk < kn ? *(const float4 *)(kv.k + at) : zero4;
                v4[j] = e < V4 && kk < kn ? *(const float4 *)(kv.v + at) : zero4;
            }
#pragma unroll
            for (int j = 0; j < STAGE; j++) {
                const int e = tid + FLASH_THREADS * (g0 + j), kk = e / (D / 4), d = (e % (D / 4)) * 4;
                if (e >= V4) break;
                float *kd = Ks + kk * DP + d;
                kd[0] = k4[j].x, kd[1] = k4[j].y, kd[2] = k4[j].z, kd[3] = k4[j].w;
                *(float4 *)(Vs + kk * D + d) = v4[j];
            }
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
            sc[j] = key < visible && key < k0 + kn ? sc[j] : -INFINITY; /* causal mask */
            tile_max = fmaxf(tile_max, sc[j]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        /* key 0 is visible to every row, so m is finite from the first tile on */
        const float m_new = fmaxf(m, tile_max);
        const float correction = exp2f(m - m_new);
        float psum = 0.0f;
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            const float p = exp2f(sc[j] - m_new);
            Ps[r * (BK + 1) + c + TPR * j] = p;
            psum += p;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        psum += __shfl_xor_sync(0xffffffffu, psum, 2);
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
        float *out = a.out + ((size_t)(t0 + i0 + r) * H + h) * D;
#pragma unroll
        for (int j = 0; j < NJ; j++) out[c + TPR * j] = acc[j] * inv;
    }
}

#define FLASH_HEAD_DIMS(X) X(32) X(64) X(80) X(96) X(128) X(256)

extern "C" int fcuda_flash_supported(int head_dim) {
#define SUPPORTED(d) if (head_dim == d) return 1;
    FLASH_HEAD_DIMS(SUPPORTED)
#undef SUPPORTED
    return 0;
}

extern "C" cudaError_t fcuda_flash_init(void) {
    cudaError_t e = cudaSuccess;
#define OPT_IN(d)                                                                                \
    if (e == cudaSuccess)                                                                        \
        e = cudaFuncSetAttribute(flash_kernel<d>, cudaFuncAttributeMaxDynamicSharedMemorySize,   \
                                 (int)flash_smem<d>::bytes);
    FLASH_HEAD_DIMS(OPT_IN)
#undef OPT_IN
    return e;
}

extern "C" cudaError_t fcuda_flash_attention(const fcuda_attn_args *a, const fcuda_batch *b,
                                             cudaStream_t stream) {
    const dim3 grid((b->max_tokens + BQ - 1) / BQ, a->heads, b->n);
    switch (a->head_dim) {
#define LAUNCH(d)                                                                                \
    case d:                                                                                      \
        flash_kernel<d><<<grid, FLASH_THREADS, flash_smem<d>::bytes, stream>>>(*a, *b);          \
        break;
        FLASH_HEAD_DIMS(LAUNCH)
#undef LAUNCH
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

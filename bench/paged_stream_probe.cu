/* SPDX-License-Identifier: Apache-2.0 */
/* paged_stream_probe.cu: how fast can the decode kernel's blocks stream
 * their pages into shared memory, and what slows them? Each variant reads
 * the whole K and V of a paged pool laid out as forge's (token-major rows:
 * a token's KV heads side by side), B = 16 sequences of L = 32k tokens, 8
 * KV heads, D = 128, bf16, pages of 16 appended 1,024 tokens a sequence in
 * turn (as forge bench decode does): the point of issue 6's sweep where the
 * stream matters most. A block is paged_mma.cu's: 4 warps, a 3-stage ring
 * of 64 (token, head) rows, 2 blocks an SM, and with "+mma" its tensor-core
 * work on each tile (scores and P V, without the softmax). Prints TB/s of K
 * and V read, the best of 5 runs of 10 launches.
 *   paged_stream_probe        (on a Hopper GPU; built by CMake with CUDA)
 *
 * Variants: a plain read of both pools (the ceiling); the kernel's copies
 * (cp.async, a 16-byte chunk a thread) into rows padded by 16 bytes or
 * into dense rows with the 16-byte chunks XOR-swizzled; blocks taking 4 KV
 * heads of 16 tokens a tile instead of 1 head of 64 (longer runs of bytes
 * in a token's row); and the copy engine (TMA, a box of 16 tokens by 64
 * columns a page) in place of cp.async. */
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.cuh"
#include "mma.cuh"
#include "wgmma.cuh"

typedef __nv_bfloat16 T;
constexpr int D = 128, HK = 8, P = 16, B = 16, L = 32768, PAGES_SEQ = L / P;
constexpr int ROWS = 64, STAGES = 3, THREADS = 128, CH = D / 8; /* (token, head) rows a stage */


/* Element offset of 16-byte chunk j of shared row r: padded rows, or dense
 * rows with the chunks swizzled by r % 8; either keeps ldmatrix's 8 rows
 * on distinct banks. */
template <bool SWZ> __device__ inline int at(int r, int j) { return SWZ ? r * D + (j ^ (r % 8)) * 8 : r * (D + 8) + j * 8; }

/* A warp's work on its 16 rows of a stage (the same KV head): S = Q K^T,
 * then O += P V with P = S rounded (the decode kernel's products). */
template <bool SWZ>
__device__ inline void work(const T *ks, const T *vs, int r0, const uint32_t (&qa)[D / 16][4], float (&o)[D / 8][4]) {
    const int lane = threadIdx.x % 32;
    float sc[2][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t kb[4];
        ldmatrix_x4(kb, ks + at<SWZ>(r0 + lane % 8 + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
        mma_16816<T>(sc[0], qa[kk], kb[0], kb[1], kk == 0);
        mma_16816<T>(sc[1], qa[kk], kb[2], kb[3], kk == 0);
    }
    const uint32_t pa[4] = {pack2<T>(sc[0][0], sc[0][1]), pack2<T>(sc[0][2], sc[0][3]), pack2<T>(sc[1][0], sc[1][1]),
                            pack2<T>(sc[1][2], sc[1][3])};
#pragma unroll
    for (int d = 0; d < D / 16; d++) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, vs + at<SWZ>(r0 + lane % 8 + ((lane / 8) % 2) * 8, d * 2 + lane / 16));
        mma_16816<T>(o[2 * d], pa, vb[0], vb[1]);
        mma_16816<T>(o[2 * d + 1], pa, vb[2], vb[3]);
    }
}

/* Keeps the work: a store no run takes. */
__device__ inline void keep(float acc, const float (&o)[D / 8][4], float *out) {
    for (int d = 0; d < D / 8; d++) acc += o[d][0] + o[d][1] + o[d][2] + o[d][3];
    if (acc == 12345.0f) out[threadIdx.x] = acc;
}

/* The ceiling: the grid strides through K and V, 16 bytes a thread. */
__global__ void plain_read(const uint4 *K, const uint4 *V, size_t n, float *out) {
    uint32_t x = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 a = __ldcs(K + i), b = __ldcs(V + i);
        x ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w;
    }
    if (x == 12345u) out[threadIdx.x] = (float)x;
}

/* cp.async copies: block (split, head group, sequence) takes HB KV heads;
 * a stage is ROWS / HB tokens of them, stored head-major ([h][tok]); warp
 * w takes rows 16w .. 16w + 15. */
template <int HB, bool SWZ, bool COMPUTE>
__global__ void __launch_bounds__(THREADS) copies(const T *K, const T *V, const int *table, float *out, int splits) {
    constexpr int TOK = ROWS / HB, STAGE = ROWS * (SWZ ? D : D + 8);
    extern __shared__ __align__(16) unsigned char smem[];
    T *Ks = (T *)smem, *Vs = Ks + STAGES * STAGE;
    const int g0 = blockIdx.y * HB, per = L / splits, begin = blockIdx.x * per, n_tiles = per / TOK;
    const int *tab = table + blockIdx.z * PAGES_SEQ;
    uint32_t qa[D / 16][4];
    for (int kk = 0; kk < D / 16; kk++) qa[kk][0] = qa[kk][1] = qa[kk][2] = qa[kk][3] = 0x3c003c00u + threadIdx.x;
    float o[D / 8][4] = {}, acc = 0.0f;
    auto load = [&](int t, int s) {
        for (int c = threadIdx.x; c < ROWS * CH; c += THREADS) {
            const int tok = c / (HB * CH), h = (c / CH) % HB, j = c % CH, pos = begin + t * TOK + tok;
            const size_t off = ((size_t)(tab[pos / P] * P + pos % P) * HK + g0 + h) * D + j * 8;
            cp_async_16(smem_addr(Ks + s * STAGE + at<SWZ>(h * TOK + tok, j)), K + off);
            cp_async_16(smem_addr(Vs + s * STAGE + at<SWZ>(h * TOK + tok, j)), V + off);
        }
    };
    for (int s = 0; s < STAGES - 1; s++) load(s, s), cp_async_commit();
    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        if (t + STAGES - 1 < n_tiles) load(t + STAGES - 1, (t + STAGES - 1) % STAGES);
        cp_async_commit();
        const T *ks = Ks + (t % STAGES) * STAGE, *vs = Vs + (t % STAGES) * STAGE;
        if (COMPUTE)
            work<SWZ>(ks, vs, 16 * (threadIdx.x / 32), qa, o);
        else
            acc += __bfloat162float(ks[threadIdx.x]) + __bfloat162float(vs[threadIdx.x]);
    }
    keep(acc, o, out);
}

/* The copy engine: block (split, head, sequence); thread 0 loads each page
 * of a stage as two boxes (64 columns by 16 tokens, 128-byte swizzled) of K
 * and two of V, completing on the stage's mbarrier. */
struct maps {
    CUtensorMap k, v;
};
__device__ inline const T *tma_row(const T *base, int r, int j) { /* chunk j of row r of a swizzled stage */
    return (const T *)((const char *)base + (j / 8) * ROWS * 128 + r * 128 + ((j % 8) ^ (r % 8)) * 16);
}
template <bool COMPUTE>
__global__ void __launch_bounds__(THREADS) tma(const __grid_constant__ maps m, const int *table, float *out) {
    constexpr int STAGE_B = ROWS * D * 2, SPLIT = L / 2;
    extern __shared__ __align__(16) unsigned char raw[];
    unsigned char *smem = (unsigned char *)(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = (uint64_t *)(smem + 2 * STAGES * STAGE_B);
    const int g = blockIdx.y, begin = blockIdx.x * SPLIT, n_tiles = SPLIT / ROWS, lane = threadIdx.x % 32;
    const int *tab = table + blockIdx.z * PAGES_SEQ;
    auto Ks = [&](int s) { return (T *)(smem + s * STAGE_B); };
    auto Vs = [&](int s) { return (T *)(smem + (STAGES + s) * STAGE_B); };
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(smem_addr(&full[s]), 1);
        mbar_init_fence();
    }
    __syncthreads();
    auto issue = [&](int t, int s) {
        mbar_arrive_expect(smem_addr(&full[s]), 2 * STAGE_B);
        for (int p = 0; p < ROWS / P; p++) {
            const int row = tab[(begin + t * ROWS) / P + p] * P;
            for (int h = 0; h < 2; h++) {
                tma_load_3d(smem_addr((char *)Ks(s) + h * ROWS * 128 + p * P * 128), &m.k, h * 64, g, row, smem_addr(&full[s]));
                tma_load_3d(smem_addr((char *)Vs(s) + h * ROWS * 128 + p * P * 128), &m.v, h * 64, g, row, smem_addr(&full[s]));
            }
        }
    };
    uint32_t qa[D / 16][4];
    for (int kk = 0; kk < D / 16; kk++) qa[kk][0] = qa[kk][1] = qa[kk][2] = qa[kk][3] = 0x3c003c00u + threadIdx.x;
    float o[D / 8][4] = {}, acc = 0.0f;
    if (threadIdx.x == 0)
        for (int s = 0; s < STAGES - 1; s++) issue(s, s);
    for (int t = 0; t < n_tiles; t++) {
        __syncthreads(); /* tile t - 1's stage is free */
        if (threadIdx.x == 0 && t + STAGES - 1 < n_tiles) issue(t + STAGES - 1, (t + STAGES - 1) % STAGES);
        mbar_wait(smem_addr(&full[t % STAGES]), (t / STAGES) & 1);
        const T *ks = Ks(t % STAGES), *vs = Vs(t % STAGES);
        if (!COMPUTE) {
            acc += __bfloat162float(ks[threadIdx.x]) + __bfloat162float(vs[threadIdx.x]);
            continue;
        }
        const int r0 = 16 * (threadIdx.x / 32);
        float sc[2][4];
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t kb[4];
            ldmatrix_x4(kb, tma_row(ks, r0 + lane % 8 + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
            mma_16816<T>(sc[0], qa[kk], kb[0], kb[1], kk == 0);
            mma_16816<T>(sc[1], qa[kk], kb[2], kb[3], kk == 0);
        }
        const uint32_t pa[4] = {pack2<T>(sc[0][0], sc[0][1]), pack2<T>(sc[0][2], sc[0][3]),
                                pack2<T>(sc[1][0], sc[1][1]), pack2<T>(sc[1][2], sc[1][3])};
        for (int d = 0; d < D / 16; d++) {
            uint32_t vb[4];
            ldmatrix_x4_trans(vb, tma_row(vs, r0 + lane % 8 + ((lane / 8) % 2) * 8, d * 2 + lane / 16));
            mma_16816<T>(o[2 * d], pa, vb[0], vb[1]);
            mma_16816<T>(o[2 * d + 1], pa, vb[2], vb[3]);
        }
    }
    keep(acc, o, out);
}

/* Times launch() (best of 5 runs of 10) and prints its TB/s. */
template <typename F> static void time_it(const char *name, const void *kernel, int smem, F launch) {
    int per_sm = 0;
    if (kernel) {
        CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, smem));
    }
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) launch();
    CK(cudaGetLastError());
    float best = 1e9f;
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(a));
        for (int i = 0; i < 10; i++) launch();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (ms / 10 < best) best = ms / 10;
    }
    const double bytes = 2.0 * B * L * HK * D * sizeof(T);
    printf("%-44s %d/SM  %7.1f us  %.3f TB/s\n", name, per_sm, best * 1e3, bytes / (best * 1e-3) / 1e12);
    cudaEventDestroy(a), cudaEventDestroy(b);
}

template <int HB, bool SWZ, bool COMPUTE>
static void run_copies(const char *name, const T *K, const T *V, const int *table, float *out) {
    const int smem = 2 * STAGES * ROWS * (SWZ ? D : D + 8) * (int)sizeof(T), splits = 2 * HB; /* 256 blocks */
    time_it(name, (const void *)copies<HB, SWZ, COMPUTE>, smem,
            [&] { copies<HB, SWZ, COMPUTE><<<dim3(splits, HK / HB, B), THREADS, smem>>>(K, V, table, out, splits); });
}

template <bool COMPUTE> static void run_tma(const char *name, const maps &m, const int *table, float *out) {
    const int smem = 2 * STAGES * ROWS * D * (int)sizeof(T) + 8 * STAGES + 1024;
    time_it(name, (const void *)tma<COMPUTE>, smem, [&] { tma<COMPUTE><<<dim3(2, HK, B), THREADS, smem>>>(m, table, out); });
}

typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                              const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

int main(void) {
    const size_t elems = (size_t)B * L * HK * D;
    T *K, *V;
    int *table;
    float *out;
    CK(cudaMalloc(&K, elems * sizeof(T)));
    CK(cudaMalloc(&V, elems * sizeof(T)));
    CK(cudaMemset(K, 0, elems * sizeof(T)));
    CK(cudaMemset(V, 0, elems * sizeof(T)));
    CK(cudaMalloc(&out, THREADS * sizeof(float)));
    int *h = (int *)malloc(sizeof(int) * B * PAGES_SEQ);
    for (int s = 0; s < B; s++)
        for (int j = 0; j < PAGES_SEQ; j++) h[s * PAGES_SEQ + j] = (j / 64) * B * 64 + s * 64 + j % 64;
    CK(cudaMalloc(&table, sizeof(int) * B * PAGES_SEQ));
    CK(cudaMemcpy(table, h, sizeof(int) * B * PAGES_SEQ, cudaMemcpyHostToDevice));
    free(h);

    encode_fn encode;
    cudaDriverEntryPointQueryResult found;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&encode, 12000, cudaEnableDefault, &found));
    maps m;
    const cuuint64_t dims[3] = {D, HK, (cuuint64_t)B * L}, strides[2] = {D * 2, HK * D * 2};
    const cuuint32_t box[3] = {64, 1, P}, unit[3] = {1, 1, 1};
    for (int i = 0; i < 2; i++)
        if (found != cudaDriverEntryPointSuccess ||
            encode(i ? &m.v : &m.k, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, i ? (void *)V : (void *)K, dims, strides, box,
                   unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
            printf("cuTensorMapEncodeTiled failed\n");
            return 1;
        }

    time_it("plain read, 1056 blocks of 1024", NULL, 0,
            [&] { plain_read<<<1056, 1024>>>((const uint4 *)K, (const uint4 *)V, elems / 8, out); });
    run_copies<1, false, false>("1 head, padded rows", K, V, table, out);
    run_copies<1, false, true>("1 head, padded rows +mma", K, V, table, out);
    run_copies<1, true, false>("1 head, swizzled rows", K, V, table, out);
    run_copies<1, true, true>("1 head, swizzled rows +mma", K, V, table, out);
    run_copies<4, true, true>("4 heads, swizzled rows +mma", K, V, table, out);
    run_tma<false>("TMA, 1 head, swizzled", m, table, out);
    run_tma<true>("TMA, 1 head, swizzled +mma", m, table, out);
    return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* flash_mma.cu: flash attention forward on tensor cores with mma.sync
 * (bf16 or fp16 in, float accumulation; sm_80 and later, Hopper included).
 *
 * A block takes BM query rows of one head of one sequence; each warp owns
 * 16 * MT of them (MT m-tiles, which share every K and V fragment it loads)
 * and keeps their scores, softmax state and output in registers. The block walks the keys in tiles of BN held in
 * shared memory, the next tile's K and V loading (cp.async) while the
 * current one is used: S = Q K^T and O += P V are mma.m16n8k16, and P goes
 * from S's accumulators to PV's operand without leaving registers (the
 * accumulator layout of two n-blocks is the operand layout of one k-block).
 * Causal blocks stop at the last key their last row sees (and with a
 * sliding window start at the first tile their first row sees), and only
 * tiles that cross the diagonal, a window's edge or the sequence's end are
 * masked. GQA reads a
 * KV head once per query head, never copied. */
#include <math.h>

#include "flash_common.cuh"


/* Tile shapes by head dim, tunable for experiments (-DMMA_WARPS=, -DMMA_MT=,
 * -DMMA_BN=; docs/BENCHMARKS.md logs the measured choices). */
#ifndef MMA_WARPS
#define MMA_WARPS(D) ((D) <= 128 ? 4 : 8)
#endif
#ifndef MMA_BN
#define MMA_BN(D) ((D) <= 64 ? 128 : 64)
#endif
#ifndef MMA_MT
#define MMA_MT(D) ((D) <= 128 ? 2 : 1)
#endif

template <int D> struct mma_cfg {
    static constexpr int WARPS = MMA_WARPS(D);
    static constexpr int MT = MMA_MT(D); /* 16-row m-tiles a warp: K and V fragments serve MT mmas */
    static constexpr int BM = 16 * MT * WARPS;
    static constexpr int BN = MMA_BN(D); /* keys of a tile */
    static constexpr int THREADS = 32 * WARPS;
    /* Where the next tile's V copies issue: between the scores and the
     * softmax, or after the softmax. At D = 128 the first keeps their
     * addresses live beside 64 score registers and ptxas spills 60 bytes,
     * reloaded inside the P V loop; after the softmax, P is 32 registers
     * and nothing spills (+2-6%, BENCHMARKS.md). At D = 64 the P V product
     * is too short to cover the copy from there (-4-7%). */
    static constexpr bool V_AFTER_SOFTMAX = D == 128;
    /* Rows padded by 16 bytes: the 8 rows an ldmatrix reads start in 8
     * different 16-byte bank groups for every D here. */
    static constexpr int LD = D + 8;
    static constexpr size_t bytes = (size_t)(BM + 4 * BN) * LD * 2; /* Q, K[2], V[2] */
};

/* rows [0, ROWS) of D elements from src (row pitch `pitch` elements) into
 * dst (pitch LD); rows at or past `valid` are zeros. `base` is any valid
 * address, read by nothing, standing in for rows past the end. Where the
 * threads divide into whole rows, each copies SPLIT 16-byte chunks of
 * every STEP-th row, 64 elements (128 bytes) apart: one address serves
 * them all (immediate offsets), a warp's lanes still cover whole 128-byte
 * spans of a row, and a whole tile goes without per-row tests. The loads
 * are most of the loop's integer work otherwise. */
template <int ROWS, int D, int THREADS, typename T>
__device__ inline void load_tile(T *dst, const T *src, size_t pitch, int valid, const T *base) {
    constexpr int CHUNKS = D / 8, LD = mma_cfg<D>::LD; /* 16 bytes each */
    constexpr int SPLIT = D % 128 == 0 ? D / 64 : 1, PER_ROW = CHUNKS / SPLIT; /* threads a row */
    if constexpr (THREADS % PER_ROW == 0 && ROWS % (THREADS / PER_ROW) == 0) {
        constexpr int STEP = THREADS / PER_ROW;
        const int r0 = threadIdx.x / PER_ROW, col = (threadIdx.x % PER_ROW) * 8;
        const uint32_t d = smem_addr(dst + r0 * LD + col);
        const T *s = src + (size_t)r0 * pitch + col;
        if (valid >= ROWS) {
#pragma unroll
            for (int i = 0; i < ROWS / STEP; i++) {
                const T *row = s + i * STEP * pitch;
#pragma unroll
                for (int h = 0; h < SPLIT; h++) cp_async_16(d + i * STEP * LD * 2 + h * 128, row + h * 64);
            }
        } else {
#pragma unroll
            for (int i = 0; i < ROWS / STEP; i++) {
                const bool ok = r0 + i * STEP < valid;
                const T *row = ok ? s + i * STEP * pitch : base;
#pragma unroll
                for (int h = 0; h < SPLIT; h++) cp_async_16(d + i * STEP * LD * 2 + h * 128, row + h * 64, ok ? 16 : 0);
            }
        }
    } else {
#pragma unroll
        for (int c = threadIdx.x; c < ROWS * CHUNKS; c += THREADS) {
            const int r = c / CHUNKS, col = (c % CHUNKS) * 8;
            const bool ok = r < valid;
            cp_async_16(smem_addr(dst + r * LD + col), ok ? src + (size_t)r * pitch + col : base, ok ? 16 : 0);
        }
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(mma_cfg<D>::THREADS) flash_mma_kernel(fcuda_attn_args a, fcuda_varlen b) {
    using C = mma_cfg<D>;
    constexpr int BN = C::BN, LD = C::LD, NT = BN / 8, DT = D / 8, MT = C::MT;
    extern __shared__ __align__(16) unsigned char smem[];
    T *Qs = (T *)smem;        /* [BM][LD]    */
    T *Ks = Qs + C::BM * LD;  /* [2][BN][LD] */
    T *Vs = Ks + 2 * BN * LD; /* [2][BN][LD] */

    flash_block f;
    if (!flash_block_init(f, a, b, C::BM, BN)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t q_pitch = (size_t)a.heads * D, kv_pitch = (size_t)a.kv_heads * D;
    const T *Qg = (const T *)a.q + (size_t)(f.q0 + f.m0) * q_pitch + (size_t)f.h * D;
    const size_t kv_off = (size_t)f.k0 * kv_pitch + (size_t)f.g * D;
    const T *Kg = (const T *)a.k + kv_off, *Vg = (const T *)a.v + kv_off;

    /* Q with the first tile's K and V; in the loop, tile j + 1's K and V
     * load while tile j is used, a whole iteration ahead. A window skips the
     * tiles before tile0. */
    load_tile<C::BM, D, C::THREADS>(Qs, Qg, q_pitch, f.nq - f.m0, (const T *)a.q);
    const int n00 = f.tile0 * BN; /* tile0 is even: its buffer is 0 */
    if (f.tiles > f.tile0) {
        load_tile<BN, D, C::THREADS>(Ks, Kg + n00 * kv_pitch, kv_pitch, f.nk - n00, (const T *)a.k);
        load_tile<BN, D, C::THREADS>(Vs, Vg + n00 * kv_pitch, kv_pitch, f.nk - n00, (const T *)a.v);
    }
    cp_async_commit();

    /* the warp's rows: m-tile t holds rows wr + 16t + lane/4 and that + 8 */
    const int wr = f.m0 + warp * 16 * MT + lane / 4;
    const float sl = a.scale * 1.4426950408889634f; /* scores to log2 units */
    float o[MT][DT][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        m[t][0] = m[t][1] = -INFINITY;
        l[t][0] = l[t][1] = 0.0f;
#pragma unroll
        for (int d = 0; d < DT; d++) o[t][d][0] = o[t][d][1] = o[t][d][2] = o[t][d][3] = 0.0f;
    }

    for (int j = f.tile0; j < f.tiles; j++) {
        cp_async_wait<0>();
        __syncthreads(); /* tile j is in for every thread; tile j - 1's buffers are free */
        const T *Kt = Ks + (j % 2) * BN * LD, *Vt = Vs + (j % 2) * BN * LD;
        /* tile j + 1's K now and its V after the scores or the softmax
         * (V_AFTER_SOFTMAX): the copies' issue (and their wait for address
         * registers) split in two */
        const int n1 = (j + 1) * BN, next = (j + 1) % 2;
        if (j + 1 < f.tiles)
            load_tile<BN, D, C::THREADS>(Ks + next * BN * LD, Kg + n1 * kv_pitch, kv_pitch, f.nk - n1, (const T *)a.k);

        /* S = Q K^T for the warp's rows and the tile's BN keys */
        float sc[MT][NT][4];
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int t = 0; t < MT; t++)
                ldmatrix_x4(qa[t], Qs + (warp * 16 * MT + 16 * t + lane % 16) * LD + kk * 16 + (lane / 16) * 8);
#pragma unroll
            for (int n = 0; n < NT / 2; n++) {
                uint32_t kb[4];
                ldmatrix_x4(kb, Kt + (n * 16 + lane % 8 + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
                for (int t = 0; t < MT; t++) {
                    mma_16816<T>(sc[t][2 * n], qa[t], kb[0], kb[1], kk == 0);
                    mma_16816<T>(sc[t][2 * n + 1], qa[t], kb[2], kb[3], kk == 0);
                }
            }
        }

        auto load_next_v = [&] {
            if (j + 1 < f.tiles)
                load_tile<BN, D, C::THREADS>(Vs + next * BN * LD, Vg + n1 * kv_pitch, kv_pitch, f.nk - n1, (const T *)a.v);
            cp_async_commit();
        };
        if constexpr (!C::V_AFTER_SOFTMAX) load_next_v();
        /* one test for the m-tiles: the code between the products and
         * both softmaxes stays free of branches */
        if (flash_tile_masked(f, a.causal, j * BN, BN, C::BM))
#pragma unroll
            for (int t = 0; t < MT; t++) flash_mask(sc[t], f, a.causal, j * BN, wr + 16 * t);
        uint32_t p[MT][BN / 16][4];
#pragma unroll
        for (int t = 0; t < MT; t++) {
            float corr[2];
            flash_softmax(sc[t], m[t], l[t], sl, corr);
            flash_pack<T>(sc[t], p[t]);
            flash_rescale(o[t], corr);
        }
        if constexpr (C::V_AFTER_SOFTMAX) load_next_v();

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
            for (int d = 0; d < D / 16; d++) {
                uint32_t vb[4];
                ldmatrix_x4_trans(vb, Vt + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * LD + d * 16 + (lane / 16) * 8);
#pragma unroll
                for (int t = 0; t < MT; t++) {
                    mma_16816<T>(o[t][2 * d], p[t][kk], vb[0], vb[1]);
                    mma_16816<T>(o[t][2 * d + 1], p[t][kk], vb[2], vb[3]);
                }
            }
    }
#pragma unroll
    for (int t = 0; t < MT; t++) flash_store<T>(a, f, wr + 16 * t, o[t], m[t], l[t], sl);
}

#define MMA_HEAD_DIMS(X) X(32) X(64) X(96) X(128) X(256)

extern "C" int fcuda_flash_mma_supported(int head_dim) {
#define SUPPORTED(d) if (head_dim == d) return 1;
    MMA_HEAD_DIMS(SUPPORTED)
#undef SUPPORTED
    return 0;
}

template <typename T, int D> static cudaError_t opt_in(void) {
    return cudaFuncSetAttribute(flash_mma_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)mma_cfg<D>::bytes);
}

extern "C" cudaError_t fcuda_flash_mma_init(void) {
    cudaError_t e = cudaSuccess;
#define OPT_IN(d)                                            \
    if (e == cudaSuccess) e = opt_in<__nv_bfloat16, d>();    \
    if (e == cudaSuccess) e = opt_in<__half, d>();
    MMA_HEAD_DIMS(OPT_IN)
#undef OPT_IN
    return e;
}

template <typename T, int D>
static cudaError_t launch(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    const dim3 grid((b->max_q + mma_cfg<D>::BM - 1) / mma_cfg<D>::BM, a->heads, b->n);
    flash_mma_kernel<T, D><<<grid, mma_cfg<D>::THREADS, mma_cfg<D>::bytes, stream>>>(*a, *b);
    return cudaGetLastError();
}

extern "C" cudaError_t fcuda_flash_mma(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    switch (a->head_dim) {
#define LAUNCH(d)                                                                                  \
    case d: return a->dtype == FORGE_BF16 ? launch<__nv_bfloat16, d>(a, b, stream) : launch<__half, d>(a, b, stream);
        MMA_HEAD_DIMS(LAUNCH)
#undef LAUNCH
    default: return cudaErrorInvalidValue;
    }
}

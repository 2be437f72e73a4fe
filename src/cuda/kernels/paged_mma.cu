/* SPDX-License-Identifier: Apache-2.0 */
/* paged_mma.cu: attention over a 16-bit paged KV cache on tensor cores
 * (mma.sync m16n8k16), for decode and chunked prefill.
 *
 * Decode reads each token's K and V once and does little with them, so the
 * kernel must keep memory busy with few instructions a byte. A block takes
 * one KV head of one sequence, 16 (query, head) rows of that head's group
 * (decode with GQA: the group's heads; rows past the group are zeros,
 * computed and dropped: tensor cores have throughput to spare) and one
 * split of the sequence's tokens. The split streams through a ring of
 * STAGES tiles in shared memory (cp.async; a thread copies a run of
 * consecutive tokens, on one page, so one table lookup a tile serves it);
 * each warp takes its own NW tokens of a tile, with its own
 * online softmax of the 16 rows (flash_common.cuh), so a tile costs a warp
 * D/16 * NW/8 mmas for the scores and as many for P V. The warps' states
 * meet at the end (paged_finish).
 *
 * Shared rows are dense and XOR-swizzled (16-byte chunk j of row r stored
 * at chunk j ^ (r % 8)), which keeps ldmatrix free of bank conflicts as
 * padding rows by 16 bytes also does, but streams faster: on the H200 at
 * B = 16, L = 32k a probe of this kernel's copies and products reached
 * 4.57 TB/s with swizzled rows against 4.20 with padded ones
 * (bench/paged_stream_probe.cu). Head dim 32 and 96 rows are not whole
 * 128-byte lines and stay padded. In the kernel itself swizzling paid only
 * once the copies were lean: the loop's instruction issue, not the memory,
 * had bounded it (BENCHMARKS.md, the decode kernel's history). */
#include "flash_common.cuh"
#include "paged.cuh"

template <typename T, int D> struct paged_mma_cfg {
    static constexpr int NW = D <= 32 ? 32 : 16;        /* tokens a warp takes of a tile */
    static constexpr int TILE = NW * PAGED_WARPS;       /* tokens a stage */
    /* tiles of the ring: 3 (2 blocks an SM at D = 128); 2 at D = 256 to fit.
     * 2 at D = 128 (3 blocks an SM) measured the same at B = 16, L = 32k
     * (with padded rows and simpler copies than these). */
    static constexpr int STAGES = D >= 256 ? 2 : 3;
    static constexpr int CH = D / 8;                    /* 16-byte chunks a row */
    /* rows a thread copies a tile: the tile's chunks over the threads, to a power of two */
    static constexpr int RUN = TILE * CH <= 4 * PAGED_THREADS ? 4 : TILE * CH <= 8 * PAGED_THREADS ? 8 : 16;
    static_assert(TILE * CH <= 16 * PAGED_THREADS && TILE % RUN == 0, "a thread's rows fit the smallest page");
    static constexpr bool SWIZZLE = CH % 8 == 0;
    static constexpr int LD = SWIZZLE ? D : D + 8;      /* elements a shared row */
    static constexpr size_t ring_bytes = (size_t)(16 + 2 * STAGES * TILE) * LD * sizeof(T); /* Q, K and V */
    /* where chunk j of row r starts in a region of rows, in elements */
    static __device__ int at(int r, int j) { return r * LD + (SWIZZLE ? j ^ (r & 7) : j) * 8; }
    static constexpr size_t finish_bytes = paged_finish_bytes<D, 16>;
    static constexpr size_t bytes = ring_bytes > finish_bytes ? ring_bytes : finish_bytes;
};

template <typename T, int D>
__global__ void __launch_bounds__(PAGED_THREADS) paged_mma_kernel(fcuda_pool p, fcuda_paged_args a, fcuda_paged_batch b) {
    using C = paged_mma_cfg<T, D>;
    constexpr int NW = C::NW, TILE = C::TILE, STAGES = C::STAGES, LD = C::LD, CH = C::CH, NT = NW / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    T *Qs = (T *)smem;               /* [16][LD]             */
    T *Ks = Qs + 16 * LD;            /* [STAGES][TILE][LD]   */
    T *Vs = Ks + STAGES * TILE * LD; /* [STAGES][TILE][LD]   */

    paged_block pb;
    if (!paged_block_init(pb, p, a, b, 16)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    /* Q's rows, zeros past the block's */
    for (int c = threadIdx.x; c < 16 * CH; c += PAGED_THREADS) {
        const int r = c / CH, j = c % CH;
        const bool ok = r < pb.nrows;
        const T *src = ok ? (const T *)a.q + paged_row_at(pb, a, b, r) * D + j * 8 : (const T *)a.q;
        cp_async_16(smem_addr(Qs + C::at(r, j)), src, ok ? 16 : 0);
    }
    cp_async_commit();

    const size_t kv_pitch = (size_t)p.kv_heads * D; /* elements between a page's tokens */
    const int *table = p.table + (size_t)b.seq[pb.i] * p.max_pages;
    const int page_shift = __ffs(p.page_size) - 1, page_mask = p.page_size - 1;
    const int n_tiles = (pb.end - pb.begin + TILE - 1) / TILE;
    /* The copies: thread run * CH + j copies chunk j of a tile's rows
     * run * RUN .. run * RUN + RUN - 1, consecutive tokens and so on one page
     * (RUN divides the smallest page), found by one table lookup a tile,
     * made a tile ahead of its copies so that their issue never waits on
     * the table; a warp's copies still cover whole rows. Few instructions a
     * copy matter: the loop's issue is what bounds the stream (ncu). */
    constexpr int RUN = C::RUN, RUNS = TILE / RUN;
    const bool copier = RUNS * CH == PAGED_THREADS || threadIdx.x < RUNS * CH; /* D = 96: 96 threads copy */
    const int run = threadIdx.x / CH, chunk = threadIdx.x % CH;
    const T *kc = (const T *)p.k + (size_t)pb.g * D + chunk * 8, *vc = (const T *)p.v + (size_t)pb.g * D + chunk * 8;
    /* tile t's run: its first row of the pool; 0 where it starts past the split */
    auto lookup = [&](int t) {
        const int pos = pb.begin + t * TILE + run * RUN;
        return copier && pos < pb.end ? table[pos >> page_shift] * p.page_size + (pos & page_mask) : 0;
    };
    /* tile t's K and V rows into stage s from the run at pool row `row`,
     * rows past the split as zeros */
    auto load = [&](int t, int row, int s) {
        if (!copier) return;
        const int left = pb.end - (pb.begin + t * TILE + run * RUN); /* the run's rows in the split */
        T *ks = Ks + s * TILE * LD, *vs = Vs + s * TILE * LD;
        size_t off = (size_t)row * kv_pitch;
#pragma unroll
        for (int k = 0; k < RUN; k++, off += kv_pitch) {
            const int n = k < left ? 16 : 0;
            cp_async_16(smem_addr(ks + C::at(run * RUN + k, chunk)), kc + off, n);
            cp_async_16(smem_addr(vs + C::at(run * RUN + k, chunk)), vc + off, n);
        }
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < n_tiles) load(s, lookup(s), s);
        cp_async_commit();
    }
    int next_row = lookup(STAGES - 1); /* the loop's first copies */

    cp_async_wait<STAGES - 1>(); /* Q's group */
    __syncthreads();
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) ldmatrix_x4(qa[kk], Qs + C::at(lane % 16, kk * 2 + lane / 16));

    /* This lane's ldmatrix rows of a warp's K (scores) and V (P V) tokens,
     * in bytes, by the 16 columns' step modulo 4: the swizzle repeats every
     * 64 columns, so the other steps add constants. */
    int k_at[4], v_at[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        k_at[q] = C::at(lane % 8 + (lane / 16) * 8, q * 2 + (lane / 8) % 2) * sizeof(T);
        v_at[q] = C::at(lane % 8 + ((lane / 8) % 2) * 8, q * 2 + lane / 16) * sizeof(T);
    }

    /* this lane's rows lane/4 and lane/4 + 8: the first and last positions
     * they see (rows past the block's see all; their results are dropped) */
    int first[2], limit[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const bool row = lane / 4 + 8 * i < pb.nrows;
        first[i] = row ? paged_first(pb, lane / 4 + 8 * i, a.window) : 0;
        limit[i] = row ? paged_limit(pb, lane / 4 + 8 * i) : INT_MAX;
    }
    const int first_limit = paged_limit(pb, 0);                           /* the block's smallest */
    const int last_first = paged_first(pb, pb.nrows - 1, a.window);      /* and largest window start */
    const float sl = a.scale * 1.4426950408889634f; /* scores to log2 units */
    float o[D / 8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {};

    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* tile t is in for every thread; tile t - 1's stage is free */
        if (t + STAGES - 1 < n_tiles) {
            load(t + STAGES - 1, next_row, (t + STAGES - 1) % STAGES);
            next_row = lookup(t + STAGES); /* used at the next iteration */
        }
        cp_async_commit();
        const T *Kt = Ks + ((t % STAGES) * TILE + warp * NW) * LD, *Vt = Vs + ((t % STAGES) * TILE + warp * NW) * LD;
        const int w0 = pb.begin + t * TILE + warp * NW; /* the warp's first token */

        /* S = Q K^T over the warp's NW tokens */
        float sc[NT][4];
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int n = 0; n < NT / 2; n++) {
                uint32_t kb[4];
                ldmatrix_x4(kb, (const char *)Kt + k_at[kk % 4] + (n * 16 * LD + kk / 4 * 64) * sizeof(T));
                mma_16816<T>(sc[2 * n], qa[kk], kb[0], kb[1], kk == 0);
                mma_16816<T>(sc[2 * n + 1], qa[kk], kb[2], kb[3], kk == 0);
            }
        /* tokens past the split, past a row's position (chunked prefill), or
         * before its window */
        if (w0 + NW > pb.end || w0 + NW - 1 > first_limit || w0 < last_first)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int pos = w0 + n * 8 + 2 * (lane % 4) + (e & 1);
                    if (pos >= pb.end || pos > limit[e >> 1] || pos < first[e >> 1]) sc[n][e] = -INFINITY;
                }
        float corr[2];
        flash_softmax(sc, m, l, sl, corr);
        uint32_t pa[NT / 2][4];
        flash_pack<T>(sc, pa);
        flash_rescale(o, corr);

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < NW / 16; kk++)
#pragma unroll
            for (int d = 0; d < D / 16; d++) {
                uint32_t vb[4];
                ldmatrix_x4_trans(vb, (const char *)Vt + v_at[d % 4] + (kk * 16 * LD + d / 4 * 64) * sizeof(T));
                mma_16816<T>(o[2 * d], pa[kk], vb[0], vb[1]);
                mma_16816<T>(o[2 * d + 1], pa[kk], vb[2], vb[3]);
            }
    }

    /* the warp's state to smem, in paged_finish's layout: m in log2 units,
     * l summed over the row's quad */
    cp_async_wait<0>();
    __syncthreads(); /* the ring is free */
    float *wo = (float *)smem, *wm = wo + PAGED_WARPS * 16 * D, *wl = wm + PAGED_WARPS * 16;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = lane / 4 + 8 * i;
        float sum = l[i];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
#pragma unroll
        for (int d = 0; d < D / 8; d++)
            *(float2 *)&wo[(warp * 16 + r) * D + d * 8 + 2 * (lane % 4)] = make_float2(o[d][2 * i], o[d][2 * i + 1]);
        if (lane % 4 == 0) wm[warp * 16 + r] = m[i] * sl, wl[warp * 16 + r] = sum;
    }
    __syncthreads();
    paged_finish<T, D, 16>((const float *)smem, pb, a, b);
}

template <typename T, int D> paged_kernel paged_mma_kernel_of(void) {
    return {(const void *)paged_mma_kernel<T, D>, paged_mma_cfg<T, D>::bytes, 16};
}

#define INSTANTIATE(d)                                                  \
    template paged_kernel paged_mma_kernel_of<__nv_bfloat16, d>(void); \
    template paged_kernel paged_mma_kernel_of<__half, d>(void);
PAGED_HEAD_DIMS(INSTANTIATE)
#undef INSTANTIATE

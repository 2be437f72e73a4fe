/* SPDX-License-Identifier: Apache-2.0 */
/* flash_wgmma.cu: flash attention forward on Hopper (sm_90a; built with
 * -gencode arch=compute_90a,code=sm_90a), for head dims 64 and 128, bf16 or
 * fp16: TMA loads, wgmma products, warp specialisation.
 *
 * The grid is persistent, a block an SM, taking work items (64 query rows
 * per consumer warpgroup, of one head of one sequence) from a counter, so
 * that SMs that finish early take more; neighbouring items share K and V,
 * which then come from L2. The producer warpgroup (one thread of it) loads
 * each item's Q and its K and V tiles of BN keys with TMA
 * (cp.async.bulk.tensor) into a ring of STAGES slots, each K and each V
 * slot guarded by two mbarriers: full (the bytes have landed) and empty
 * (every consumer is done with it); the next item's tiles load while an
 * item ends. Each consumer
 * warpgroup owns 64 of the rows: S = Q K^T is a wgmma with both operands in
 * shared memory, P stays in registers as the A operand of O += P V, and V
 * is read MN-major (transposed by the instruction, not copied). A consumer
 * issues tile j's scores and tile j-1's product together and runs tile j's
 * softmax while the tensor cores compute that product, the consumers taking
 * turns to issue; an item's last product goes behind the next item's first
 * scores. The producer hands most of its registers to the consumers
 * (setmaxnreg). Tiles sit in 128-byte-swizzled form (wgmma.cuh), which is
 * what TMA's 128-byte swizzle writes: one box per 64 columns. The softmax,
 * mask and store are flash_mma.cu's (flash_common.cuh). */
#include <cuda.h>

#include <type_traits>

#include "flash_common.cuh"
#include "wgmma.cuh"

#ifndef WG_PINGPONG /* experiments */
#define WG_PINGPONG 1
#endif

/* What holds a step's wait for its product (the P V in flight) behind the
 * softmax: ptxas otherwise places the wait at the softmax's start, where
 * the product has only begun, and the softmax no longer overlaps it. Which
 * placement is fastest depends on the configuration (measured): */
enum wg_anchor {
    ANCHOR_NONE, /* none: ptxas's placement */
    ANCHOR_V,    /* the wait for the next step's V, after the softmax */
    ANCHOR_Q,    /* Q's release, tested on every step after the softmax */
};

/* A configuration: head dim D, WGS consumer warpgroups of 64 rows each
 * (two, or three at D = 64, where the softmax's share of the work is twice
 * D = 128's and a third warpgroup's softmax runs beside the others'
 * products), tiles of BN keys, STAGES of them in flight, and where the
 * product's wait is anchored; wg_dispatch chooses among those listed below
 * the kernel. */
template <int D_, int WGS_, int BN_, int STAGES_, wg_anchor ANCHOR_> struct wg_cfg {
    static constexpr int D = D_;
    static constexpr int WGS = WGS_;
    static constexpr int BN = BN_;                           /* keys of a tile */
    static constexpr int STAGES = STAGES_;                   /* K and V tiles in flight */
    static constexpr wg_anchor ANCHOR = ANCHOR_;
    static constexpr int BM = 64 * WGS;                      /* query rows of an item */
    static constexpr int THREADS = 128 * (WGS + 1);          /* the producer warpgroup, then the consumers */
    /* setmaxnreg moves registers between the warpgroups: the consumers'
     * increase blocks until the producer's decrease has freed enough of
     * what the launch gave each thread (65536 / THREADS, in 8s) */
    static constexpr int LAUNCH_REGS = 65536 / THREADS / 8 * 8, PRODUCER_REGS = 24;
    static constexpr int CONSUMER_REGS = WGS == 3 ? 160 : 240;
    static_assert((LAUNCH_REGS - PRODUCER_REGS) >= (CONSUMER_REGS - LAUNCH_REGS) * WGS, "register budget");
    static constexpr int Q_BYTES = BM * D * 2;
    static constexpr int KV_BYTES = BN * D * 2;              /* a K or a V tile */
    /* Q, the ring of K and V, mbarriers, and room to align to 1024 bytes */
    static constexpr size_t bytes = Q_BYTES + 2 * STAGES * (size_t)KV_BYTES + 256 + 1024;
};

/* The three tensors as TMA sees them, [rows, heads, D] with D innermost;
 * boxes of 64 columns, one head, and a tile of rows. */
struct wg_maps {
    CUtensorMap q, k, v;
};

/* Named barriers 1 .. WGS pass the turn to issue matrix products from one
 * consumer warpgroup to the next (128 threads wait, 128 arrive), so that
 * each one's softmax runs while the tensor cores work for the others. */
__device__ inline void turn_wait(int wg) { asm volatile("bar.sync %0, 256;\n" ::"r"(1 + wg) : "memory"); }
__device__ inline void turn_pass(int next) { asm volatile("bar.arrive %0, 256;\n" ::"r"(1 + next) : "memory"); }

template <typename T, typename C>
__global__ void __launch_bounds__(C::THREADS, 1)
flash_wgmma_kernel(const __grid_constant__ wg_maps maps, fcuda_attn_args a, fcuda_varlen b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int D = C::D, WGS = C::WGS, BM = C::BM, BN = C::BN, STAGES = C::STAGES;
    constexpr int NT = BN / 8, DT = D / 8, REGIONS = D / 64;
    constexpr int WARPS = 4 * WGS; /* consumer warps, each arriving once on the barriers they release */
    extern __shared__ unsigned char smem_raw[];
    /* swizzled tiles must start 1024-byte aligned */
    unsigned char *Qs = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
    unsigned char *Ks = Qs + C::Q_BYTES, *Vs = Ks + STAGES * C::KV_BYTES;
    /* mbarriers: Q (full, empty); K and V of each stage, apart (full, empty:
     * a K slot frees once its scores are done, before its V's product); and
     * the two slots by which the producer hands work items to the consumers */
    const uint32_t bars = smem_addr(Vs + STAGES * C::KV_BYTES);
    const uint32_t q_full = bars, q_empty = bars + 8;
    auto full_k = [&](int s) { return bars + 8 * (2 + s); };
    auto full_v = [&](int s) { return bars + 8 * (2 + STAGES + s); };
    auto empty_k = [&](int s) { return bars + 8 * (2 + 2 * STAGES + s); };
    auto empty_v = [&](int s) { return bars + 8 * (2 + 3 * STAGES + s); };
    auto item_full = [&](int k) { return bars + 8 * (2 + 4 * STAGES + k); };
    auto item_empty = [&](int k) { return bars + 8 * (4 + 4 * STAGES + k); };
    volatile int *item_slot = (volatile int *)(Vs + STAGES * C::KV_BYTES + 8 * (6 + 4 * STAGES));
    static_assert(8 * (8 + 4 * STAGES) <= 256, "mbarriers and item slots fit their 256 bytes");

    /* Work item i: the row blocks of one head of one sequence are
     * neighbours (the blocks running at once share K and V in L2), the
     * heaviest first (under a causal mask the last rows see the most keys);
     * heads of a sequence, which share KV heads in groups, are neighbours
     * too. */
    const int row_blocks = (b.max_q + BM - 1) / BM, items = row_blocks * a.heads * b.n;
    auto item_at = [&](flash_block &f, int i) {
        const int pair = i / row_blocks;
        return flash_block_at(f, a, b, BM, BN, row_blocks - 1 - i % row_blocks, pair % a.heads, pair / a.heads);
    };

    const int group = threadIdx.x / 128; /* 0: producer; 1 .. WGS: consumers */
    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
        mbar_init(q_empty, WARPS);
        for (int s = 0; s < STAGES; s++) {
            mbar_init(full_k(s), 1);
            mbar_init(full_v(s), 1);
            mbar_init(empty_k(s), WARPS);
            mbar_init(empty_v(s), WARPS);
        }
        for (int k = 0; k < 2; k++) {
            mbar_init(item_full(k), 1);
            mbar_init(item_empty(k), WARPS);
        }
        mbar_init_fence();
    }
    __syncthreads();

    /* The block is persistent: its first item is blockIdx.x, the next ones
     * come from the work counter, so that an SM that finishes early takes
     * more. Both sides count the items (n), Q loads (qn) and tiles (tn)
     * they have seen, for the barriers' phases. */
    if (group == 0) {
        regs_dec<C::PRODUCER_REGS>();
        if (threadIdx.x != 0) return;
        int n = 0, qn = 0, tn = 0;
        for (int i = blockIdx.x;; i = gridDim.x + atomicAdd(&a.work[0], 1), n++) {
            mbar_wait(item_empty(n % 2), ((n / 2) & 1) ^ 1);
            item_slot[n % 2] = i;
            mbar_arrive(item_full(n % 2));
            if (i >= items) break;
            flash_block f;
            if (!item_at(f, i) || f.tiles == 0) continue;
            /* No other item reads this Q, so it comes from DRAM: start it
             * towards L2 now, while the last item's tiles are consumed. */
            for (int r = 0; r < REGIONS; r++) tma_prefetch_3d(&maps.q, r * 64, f.h, f.q0 + f.m0);
            /* one tile of K or V into stage slot s of Ks or Vs */
            auto load_kv = [&](unsigned char *dst, const CUtensorMap *map, uint32_t full, uint32_t empty, int s, int j) {
                mbar_wait(empty, ((tn / STAGES) & 1) ^ 1); /* the first round finds them free */
                mbar_arrive_expect(full, C::KV_BYTES);
                for (int r = 0; r < REGIONS; r++)
                    tma_load_3d(smem_addr(dst + s * C::KV_BYTES + r * BN * 128), map, r * 64, f.g, f.k0 + j * BN, full);
            };
            for (int j = 0; j < f.tiles; j++, tn++) {
                const int s = tn % STAGES;
                load_kv(Ks, &maps.k, full_k(s), empty_k(s), s, j);
                if (j == 0) { /* Q after the first K: that one may load while the last item ends */
                    mbar_wait(q_empty, (qn & 1) ^ 1);
                    mbar_arrive_expect(q_full, C::Q_BYTES);
                    for (int r = 0; r < REGIONS; r++)
                        tma_load_3d(smem_addr(Qs + r * BM * 128), &maps.q, r * 64, f.h, f.q0 + f.m0, q_full);
                    qn++;
                }
                load_kv(Vs, &maps.v, full_v(s), empty_v(s), s, j);
            }
        }
        /* The last producer to run out of items zeroes the counters for
         * the next launch (which a stream starts only after this one ends):
         * every other producer's last take from work[0] is behind it by
         * then, so no memset is needed between launches. */
        __threadfence();
        if (atomicAdd(&a.work[1], 1) == (int)gridDim.x - 1) {
            __threadfence();
            a.work[0] = a.work[1] = 0;
        }
        return;
    }

    regs_inc<C::CONSUMER_REGS>();
    const int wg = group - 1, warp = threadIdx.x / 32 - 4, lane = threadIdx.x % 32; /* warp: 0 .. WARPS-1 */
    const unsigned char *Qw = Qs + wg * 64 * 128; /* this warpgroup's 64 rows of each region */
    const float sl = a.scale * 1.4426950408889634f;
    float o[DT][4], m[2], l[2];
    float(&o_flat)[4 * DT] = reinterpret_cast<float(&)[4 * DT]>(o);
    float sc[NT][4];
    float(&s_flat)[4 * NT] = reinterpret_cast<float(&)[4 * NT]>(sc);
    uint32_t p[NT / 2][4]; /* P of the tile whose product is in flight */

    /* Tiles are numbered across items (t), as the producer loads them. */
    auto wait_k = [&](int t) { mbar_wait(full_k(t % STAGES), (t / STAGES) & 1); };
    auto wait_v = [&](int t) { mbar_wait(full_v(t % STAGES), (t / STAGES) & 1); };
    /* this warp is done with tile t's K (its scores are in), or its V */
    auto release_k = [&](int t) {
        if (lane == 0) mbar_arrive(empty_k(t % STAGES));
    };
    auto release_v = [&](int t) {
        if (lane == 0) mbar_arrive(empty_v(t % STAGES));
    };
    /* S = Q K^T of tile t: k-step kk reads 16 columns of the 64-column
     * region kk / 4 */
    auto issue_scores = [&](int t) {
        const unsigned char *Kt = Ks + (t % STAGES) * C::KV_BYTES;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const int col = (kk % 4) * 32;
            wgmma_ss<T, BN>(s_flat, wgmma_desc(Qw + (kk / 4) * BM * 128 + col, 16, 1024),
                            wgmma_desc(Kt + (kk / 4) * BN * 128 + col, 16, 1024), kk > 0);
        }
        wgmma_commit();
    };
    /* O += P V of tile t: k-step kk reads keys 16kk .. 16kk+15, all D
     * columns (64-column regions BN * 128 bytes apart) */
    auto issue_pv = [&](int t) {
        const unsigned char *Vt = Vs + (t % STAGES) * C::KV_BYTES;
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
            wgmma_rs<T, D>(o_flat, p[kk], wgmma_desc(Vt + kk * 16 * 128, BN * 128, 1024));
        wgmma_commit();
    };
    auto my_turn = [&] { if (WG_PINGPONG) turn_wait(wg); };
    auto next_turn = [&] { if (WG_PINGPONG) turn_pass((wg + 1) % WGS); };
    /* The last product of an item is issued behind the first scores of the
     * next one, which then run their softmax while it completes; prev is
     * that item, its m and l are pm and pl, its last tile prev_t. */
    flash_block prev;
    float pm[2], pl[2];
    int prev_t = -1;
    auto clear_o = [&] {
#pragma unroll
        for (int d = 0; d < DT; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    };
    auto store = [&](const flash_block &f, const float (&mx)[2], const float (&sum)[2]) {
        flash_store<T>(a, f, f.m0 + warp * 16 + lane / 4, o, mx, sum, sl);
    };
    auto finish_prev = [&] {
        wait_v(prev_t);
        my_turn();
        wgmma_fence();
        issue_pv(prev_t);
        next_turn();
        wgmma_wait<0>();
        wgmma_hold(o_flat);
        release_v(prev_t);
        store(prev, m, l);
        prev_t = -1;
    };
    if (WG_PINGPONG && wg == WGS - 1) turn_pass(0); /* the first turn is the first warpgroup's */

    int qn = 0, tn = 0; /* Q loads and tiles seen: the barriers' phases */
    for (int n = 0;; n++) {
        mbar_wait(item_full(n % 2), (n / 2) & 1);
        const int i = item_slot[n % 2];
        __syncwarp();
        if (lane == 0) mbar_arrive(item_empty(n % 2));
        if (i >= items) break;
        flash_block f;
        if (!item_at(f, i)) continue;
        if (f.tiles == 0) { /* no key: zeros, after the product in flight */
            if (prev_t >= 0) finish_prev();
            clear_o();
            m[0] = m[1] = -INFINITY;
            l[0] = l[1] = 0.0f;
            store(f, m, l);
            continue;
        }
        const int row0 = f.m0 + warp * 16 + lane / 4; /* this lane's rows: row0, row0 + 8 */
        auto softmax = [&](int j, float (&corr)[2]) {
            wgmma_hold(s_flat);
            if (flash_tile_masked(f, a.causal, j * BN, BN, BM)) flash_mask(sc, f, a.causal, j * BN, row0);
            flash_softmax(sc, m, l, sl, corr);
        };
        auto q_done = [&] { /* every S of the item is done: Q may be replaced */
            if (lane == 0) mbar_arrive(q_empty);
        };
        /* Tile 0, with the previous item's last product behind it when
         * there is one. Two copies of the code, each starting and ending
         * with no product in flight: ptxas serialises every wgmma of a
         * kernel where it cannot tell whether one is in flight. */
        auto first_tile = [&](auto with_prev) {
            constexpr bool PREV = decltype(with_prev)::value;
            mbar_wait(q_full, qn & 1);
            wait_k(tn);
            if constexpr (PREV) wait_v(prev_t);
            my_turn();
            wgmma_fence();
            issue_scores(tn);
            if constexpr (PREV) issue_pv(prev_t);
            next_turn();
            wgmma_wait<PREV ? 1 : 0>();
            release_k(tn);
            pm[0] = m[0], pm[1] = m[1], pl[0] = l[0], pl[1] = l[1];
            m[0] = m[1] = -INFINITY;
            l[0] = l[1] = 0.0f;
            float corr[2]; /* o starts at zero: nothing to rescale */
            softmax(0, corr);
            if (f.tiles == 1)
                q_done(); /* here, not between the wait and the softmax */
            else if constexpr (C::ANCHOR == ANCHOR_V)
                wait_v(tn);
            if constexpr (PREV) {
                wgmma_wait<0>();
                wgmma_hold(o_flat);
                release_v(prev_t);
                store(prev, pm, pl);
            }
            clear_o();
            flash_pack<T>(sc, p);
        };
        if (prev_t >= 0)
            first_tile(std::true_type{});
        else
            first_tile(std::false_type{});
        /* Step j: S_j is issued, then P_{j-1} V_{j-1} behind it; the tensor
         * cores run that product while this warpgroup runs S_j's softmax
         * in float registers. P_j is packed once the product is done with
         * P_{j-1}: a register operand must stay unchanged until its wgmma
         * completes. Q is freed once the item's last scores are in: early
         * in the last step, a compile-time copy (ANCHOR_Q configurations
         * test for it after every softmax instead, see wg_anchor). */
        auto step = [&](int j, auto is_last) {
            wait_k(tn + j);
            wait_v(tn + j - 1);
            my_turn();
            wgmma_fence();
            issue_scores(tn + j);
            issue_pv(tn + j - 1);
            next_turn();
            wgmma_wait<1>(); /* the scores */
            release_k(tn + j);
            if constexpr (decltype(is_last)::value) q_done();
            float corr[2];
            softmax(j, corr);
            if constexpr (C::ANCHOR == ANCHOR_V && !decltype(is_last)::value) wait_v(tn + j);
            if constexpr (C::ANCHOR == ANCHOR_Q)
                if (j == f.tiles - 1) q_done();
            wgmma_wait<0>(); /* the product */
            wgmma_hold(o_flat);
            release_v(tn + j - 1);
            flash_pack<T>(sc, p);
            flash_rescale(o, corr);
        };
        if constexpr (C::ANCHOR == ANCHOR_Q) {
            for (int j = 1; j < f.tiles; j++) step(j, std::false_type{});
        } else {
            for (int j = 1; j < f.tiles - 1; j++) step(j, std::false_type{});
            if (f.tiles > 1) step(f.tiles - 1, std::true_type{});
        }
        prev = f;
        prev_t = tn + f.tiles - 1;
        tn += f.tiles;
        qn++;
    }
    if (prev_t >= 0) finish_prev();
#endif
}

/* cuTensorMapEncodeTiled, from the driver through the runtime (no libcuda link). */
typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                    const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static encode_tiled_fn encode_tiled;
static int sm_count; /* the device's SMs: the persistent grid */

/* A map of the [rows, heads, D] tensor at p with boxes of 64 x 1 x box_rows. */
static cudaError_t make_map(CUtensorMap *map, const void *p, int rows, int heads, int D, int box_rows, int bf16) {
    const cuuint64_t dims[3] = {(cuuint64_t)D, (cuuint64_t)heads, (cuuint64_t)(rows > 0 ? rows : 1)};
    const cuuint64_t strides[2] = {(cuuint64_t)D * 2, (cuuint64_t)heads * D * 2}; /* bytes, dims 1 and 2 */
    const cuuint32_t box[3] = {64, 1, (cuuint32_t)box_rows}, unit[3] = {1, 1, 1};
    const CUresult r = encode_tiled(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
                                    (void *)p, dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                    CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

/* The configurations launched: head dim, consumer warpgroups, keys of a
 * tile, stages. Long non-causal rows at D = 128 take tiles of 176 keys in
 * two stages (about the shared memory of three stages of 128): a quarter
 * fewer row-wise steps (maxima, sums, barriers) for the same products. */
using wg_d64 = wg_cfg<64, 2, 128, 3, ANCHOR_NONE>;
using wg_d64_wide = wg_cfg<64, 3, 128, 3, ANCHOR_NONE>;
using wg_d128 = wg_cfg<128, 2, 128, 3, ANCHOR_V>;
#ifndef WG_LONG_BN /* experiments */
#define WG_LONG_BN 176
#define WG_LONG_STAGES 2
#endif
using wg_d128_long = wg_cfg<128, 2, WG_LONG_BN, WG_LONG_STAGES, ANCHOR_Q>;

template <typename T, typename C> static cudaError_t wg_opt_in(void) {
    return cudaFuncSetAttribute(flash_wgmma_kernel<T, C>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::bytes);
}

extern "C" int fcuda_flash_wgmma_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

extern "C" cudaError_t fcuda_flash_wgmma_init(void) {
    cudaDriverEntryPointQueryResult found;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&encode_tiled, 12000,
                                                     cudaEnableDefault, &found);
    if (e == cudaSuccess && found != cudaDriverEntryPointSuccess) e = cudaErrorSymbolNotFound;
    int device = 0;
    if (e == cudaSuccess) e = cudaGetDevice(&device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
#define OPT_IN(C)                                              \
    if (e == cudaSuccess) e = wg_opt_in<__nv_bfloat16, C>();   \
    if (e == cudaSuccess) e = wg_opt_in<__half, C>();
    OPT_IN(wg_d64) OPT_IN(wg_d64_wide) OPT_IN(wg_d128) OPT_IN(wg_d128_long)
#undef OPT_IN
    return e;
}

template <typename T, typename C>
static cudaError_t wg_launch(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    constexpr int D = C::D;
    wg_maps maps;
    /* without keys no tile is loaded; the Q map stands in for K and V */
    const int has_kv = a->total_k > 0;
    cudaError_t e = make_map(&maps.q, a->q, a->total_q, a->heads, D, C::BM, a->dtype == FORGE_BF16);
    if (e == cudaSuccess) e = make_map(&maps.k, has_kv ? a->k : a->q, has_kv ? a->total_k : a->total_q,
                                       has_kv ? a->kv_heads : a->heads, D, C::BN, a->dtype == FORGE_BF16);
    if (e == cudaSuccess) e = make_map(&maps.v, has_kv ? a->v : a->q, has_kv ? a->total_k : a->total_q,
                                       has_kv ? a->kv_heads : a->heads, D, C::BN, a->dtype == FORGE_BF16);
    if (e != cudaSuccess) return e;
    const int items = (b->max_q + C::BM - 1) / C::BM * a->heads * b->n;
    const int grid = items < sm_count ? items : sm_count; /* one persistent block an SM */
    flash_wgmma_kernel<T, C><<<grid, C::THREADS, C::bytes, stream>>>(maps, *a, *b);
    return cudaGetLastError();
}

/* Three warpgroups at D = 64, except for short causal sequences: rows of
 * 192 against tiles of 128 keys do a third more work on the diagonal's
 * tiles there than rows of 128 (at 1k tokens), more than the third
 * warpgroup gains. At D = 128, tiles of 176 keys where rows see many keys
 * and no diagonal (at 512 queries the two stages fall 2% short). */
template <typename T> static cudaError_t wg_dispatch(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    if (a->head_dim == 128)
        return !a->causal && b->max_q > 1024 ? wg_launch<T, wg_d128_long>(a, b, stream) : wg_launch<T, wg_d128>(a, b, stream);
    if (a->causal && b->max_q <= 1024) return wg_launch<T, wg_d64>(a, b, stream);
    return wg_launch<T, wg_d64_wide>(a, b, stream);
}

extern "C" cudaError_t fcuda_flash_wgmma(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    if (!fcuda_flash_wgmma_supported(a->head_dim)) return cudaErrorInvalidValue;
    return a->dtype == FORGE_BF16 ? wg_dispatch<__nv_bfloat16>(a, b, stream) : wg_dispatch<__half>(a, b, stream);
}

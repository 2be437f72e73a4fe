/* flash_wgmma.cu: flash attention forward on Hopper's warpgroup tensor-core
 * instructions (wgmma, sm_90a; built with -gencode arch=compute_90a,
 * code=sm_90a), for head dims 64 and 128, bf16 or fp16.
 *
 * A block is two warpgroups of 4 warps, 64 query rows each (wgmma's m64),
 * of one head of one sequence; they share each K and V tile. Q, K and V tiles sit in shared memory in wgmma's
 * 128-byte-swizzled layout (wgmma.cuh), loaded with cp.async a tile ahead.
 * S = Q K^T is one wgmma chain with both operands in shared memory; P stays
 * in registers as the A operand of O += P V, whose B operand is V read
 * MN-major (transposed by the instruction, not copied). The softmax, mask
 * and store are flash_mma.cu's (flash_common.cuh). Several blocks share an
 * SM, so one block's softmax overlaps another's matrix products. */
#include "flash_common.cuh"
#include "wgmma.cuh"

#define WG_GROUPS 2             /* warpgroups of a block */
#define WG_BM (64 * WG_GROUPS)  /* query rows of a block */
#define WG_BN 64                /* keys of a tile */
#define WG_THREADS (128 * WG_GROUPS)

template <int D> struct wg_cfg {
    static constexpr int TILE = WG_BN * D * 2; /* bytes of a K or V tile */
    /* Q, K[2], V[2], and room to align the start to 1024 bytes */
    static constexpr size_t bytes = (size_t)WG_BM * D * 2 + 4 * (size_t)TILE + 1024;
};

/* rows [0, ROWS) of D elements from src (row pitch `pitch` elements) into
 * the swizzled tile at dst; rows at or past `valid` are zeros. A thread
 * always copies the same 16-byte column chunk, of rows STEP apart: STEP is
 * a multiple of 8, so the chunk's swizzled place moves by whole rows and
 * the addresses are one add a copy. */
template <int ROWS, int D, typename T>
__device__ inline void load_swizzled(unsigned char *dst, const T *src, size_t pitch, int valid, const T *base) {
    constexpr int CHUNKS = D / 8, STEP = WG_THREADS / CHUNKS; /* chunks of 16 bytes a row */
    static_assert(STEP % 8 == 0 && ROWS % STEP == 0, "a thread's rows keep one swizzle phase");
    const int r0 = threadIdx.x / CHUNKS, col = (threadIdx.x % CHUNKS) * 8;
    unsigned char *d = dst + swizzled_offset(ROWS, r0, col);
    const T *s = src + (size_t)r0 * pitch + col;
#pragma unroll
    for (int i = 0; i < ROWS / STEP; i++) {
        const bool ok = r0 + i * STEP < valid;
        cp_async_16(d + i * STEP * 128, ok ? s + (size_t)i * STEP * pitch : base, ok ? 16 : 0);
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(WG_THREADS) flash_wgmma_kernel(fcuda_mma_args a, fcuda_varlen b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int TILE = wg_cfg<D>::TILE, NT = WG_BN / 8, DT = D / 8;
    extern __shared__ unsigned char smem_raw[];
    /* swizzled regions must start 1024-byte aligned */
    unsigned char *Qs = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
    unsigned char *Ks = Qs + WG_BM * D * 2, *Vs = Ks + 2 * TILE;

    flash_block f;
    if (!flash_block_init(f, a, b, WG_BM, WG_BN)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t q_pitch = (size_t)a.heads * D, kv_pitch = (size_t)a.kv_heads * D;
    const T *Qg = (const T *)a.q + (size_t)(f.q0 + f.m0) * q_pitch + (size_t)f.h * D;
    const size_t kv_off = (size_t)f.k0 * kv_pitch + (size_t)f.g * D;
    const T *Kg = (const T *)a.k + kv_off, *Vg = (const T *)a.v + kv_off;

    load_swizzled<WG_BM, D>(Qs, Qg, q_pitch, f.nq - f.m0, (const T *)a.q);
    if (f.tiles > 0) {
        load_swizzled<WG_BN, D>(Ks, Kg, kv_pitch, f.nk, (const T *)a.k);
        load_swizzled<WG_BN, D>(Vs, Vg, kv_pitch, f.nk, (const T *)a.v);
    }
    cp_async_commit();

    const int group = warp / 4;                   /* this warp's warpgroup: rows 64 group .. */
    const int row0 = f.m0 + warp * 16 + lane / 4; /* this lane's rows: row0, row0 + 8 */
    const float sl = a.scale * 1.4426950408889634f;
    float o[DT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int d = 0; d < DT; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;

    for (int j = 0; j < f.tiles; j++) {
        cp_async_wait<0>();
        fence_proxy_async(); /* this thread's copies, visible to wgmma */
        __syncthreads();     /* ... every thread's; tile j - 1's buffers are free */
        unsigned char *Kt = Ks + (j % 2) * TILE, *Vt = Vs + (j % 2) * TILE;
        if (j + 1 < f.tiles) {
            const int n1 = (j + 1) * WG_BN, next = (j + 1) % 2;
            load_swizzled<WG_BN, D>(Ks + next * TILE, Kg + n1 * kv_pitch, kv_pitch, f.nk - n1, (const T *)a.k);
            load_swizzled<WG_BN, D>(Vs + next * TILE, Vg + n1 * kv_pitch, kv_pitch, f.nk - n1, (const T *)a.v);
        }
        cp_async_commit();

        /* S = Q K^T: k-step kk reads 16 columns of the 64-column region kk / 4 */
        float sc[NT][4];
        float(&s_flat)[4 * NT] = reinterpret_cast<float(&)[4 * NT]>(sc);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const int region = (kk / 4) * WG_BM * 128, col = (kk % 4) * 32;
            wgmma_64x64_ss<T>(s_flat, wgmma_desc(Qs + region + group * 64 * 128 + col, 16, 1024),
                              wgmma_desc(Kt + (kk / 4) * WG_BN * 128 + col, 16, 1024), kk > 0);
        }
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_hold(s_flat);

        uint32_t p[NT / 2][4];
        float corr[2];
        flash_mask(sc, f, a.causal, j * WG_BN, row0);
        flash_softmax<T>(sc, m, l, sl, p, corr);
        flash_rescale(o, corr);

        /* O += P V: k-step kk reads keys 16kk .. 16kk+15, all D columns
         * (64-column regions WG_BN * 128 bytes apart) */
        float(&o_flat)[4 * DT] = reinterpret_cast<float(&)[4 * DT]>(o);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < WG_BN / 16; kk++)
            wgmma_rs<T, D>(o_flat, p[kk], wgmma_desc(Vt + kk * 16 * 128, WG_BN * 128, 1024));
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_hold(o_flat);
    }
    flash_store<T>(a, f, row0, o, m, l, sl);
#endif
}

template <typename T, int D> static cudaError_t wg_opt_in(void) {
    return cudaFuncSetAttribute(flash_wgmma_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)wg_cfg<D>::bytes);
}

extern "C" int fcuda_flash_wgmma_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

extern "C" cudaError_t fcuda_flash_wgmma_init(void) {
    cudaError_t e = wg_opt_in<__nv_bfloat16, 64>();
    if (e == cudaSuccess) e = wg_opt_in<__half, 64>();
    if (e == cudaSuccess) e = wg_opt_in<__nv_bfloat16, 128>();
    if (e == cudaSuccess) e = wg_opt_in<__half, 128>();
    return e;
}

template <typename T, int D>
static cudaError_t wg_launch(const fcuda_mma_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    const dim3 grid((b->max_q + WG_BM - 1) / WG_BM, a->heads, b->n);
    flash_wgmma_kernel<T, D><<<grid, WG_THREADS, wg_cfg<D>::bytes, stream>>>(*a, *b);
    return cudaGetLastError();
}

extern "C" cudaError_t fcuda_flash_wgmma(const fcuda_mma_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    if (a->head_dim == 64) return a->bf16 ? wg_launch<__nv_bfloat16, 64>(a, b, stream) : wg_launch<__half, 64>(a, b, stream);
    if (a->head_dim == 128)
        return a->bf16 ? wg_launch<__nv_bfloat16, 128>(a, b, stream) : wg_launch<__half, 128>(a, b, stream);
    return cudaErrorInvalidValue;
}

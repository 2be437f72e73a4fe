/* SPDX-License-Identifier: Apache-2.0 */
/* wgmma.cuh: Hopper's warpgroup matrix multiply (wgmma.mma_async, sm_90a)
 * and the shared-memory layout it reads, for flash_wgmma.cu. Operand tiles
 * live in shared memory in 128-byte-swizzled form: rows of 64 16-bit
 * elements (128 bytes), the 16-byte chunk c of row r stored at chunk
 * c ^ (r % 8), regions 1024-byte aligned; a tile wider than 64 elements is
 * several such regions, one per 64 columns (TMA's 128-byte swizzle writes
 * exactly this). Accumulators and the register
 * A operand have mma.m16n8k16's layout per warp (mma.cuh), warp w of the
 * warpgroup holding rows 16w .. 16w+15. */
#ifndef FORGE_CUDA_WGMMA_CUH
#define FORGE_CUDA_WGMMA_CUH

#include "mma.cuh"

/* A shared-memory matrix descriptor: 128-byte swizzle, byte offsets
 * `lead` (between 64-element blocks of a matrix stored MN-major) and
 * `stride` (between groups of 8 rows). */
__device__ inline uint64_t wgmma_desc(const void *p, uint32_t lead, uint32_t stride) {
    return (uint64_t)((smem_addr(p) & 0x3ffff) >> 4) | (uint64_t)(lead >> 4) << 16 |
           (uint64_t)(stride >> 4) << 32 | (uint64_t)1 << 62;
}

__device__ inline void wgmma_fence(void) { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ inline void wgmma_commit(void) { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ inline void wgmma_wait(void) {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* mbarriers in shared memory (addresses from smem_addr). */
__device__ inline void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* Makes initialised mbarriers visible to the async proxy (TMA). */
__device__ inline void mbar_init_fence(void) { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ inline void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* Arrives, and makes the barrier's phase also wait for `bytes` of TMA writes. */
__device__ inline void mbar_arrive_expect(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
/* Waits until the phase of parity `parity` has completed. */
__device__ inline void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{\n.reg .pred done;\nWAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}
/* TMA: the box at coordinates (c0, c1, c2) of the 3-d tensor map to shared
 * memory at dst, completing `bytes` on the mbarrier. */
__device__ inline void tma_load_3d(uint32_t dst, const void *map, int c0, int c1, int c2, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                 : "memory");
}
/* TMA: starts bringing that box into L2, for a load of it soon after. */
__device__ inline void tma_prefetch_3d(const void *map, int c0, int c1, int c2) {
    asm volatile("cp.async.bulk.prefetch.tensor.3d.L2.global.tile [%0, {%1, %2, %3}];\n" ::"l"((uint64_t)map), "r"(c0),
                 "r"(c1), "r"(c2)
                 : "memory");
}
/* Moves the warp's register budget: producers give registers back,
 * consumers take them. */
template <int N> __device__ inline void regs_dec(void) { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N> __device__ inline void regs_inc(void) { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }

/* Keeps the compiler from moving accesses of accumulator registers across
 * the wgmma that owns them. */
template <int N> __device__ inline void wgmma_hold(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

#define WG_ACC8(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), \
                      "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define WG_ACC32(d) WG_ACC8(d, 0), WG_ACC8(d, 8), WG_ACC8(d, 16), WG_ACC8(d, 24)
#define WG_ACC64(d) WG_ACC32(d), WG_ACC8(d, 32), WG_ACC8(d, 40), WG_ACC8(d, 48), WG_ACC8(d, 56)
#define WG_ACC88(d) WG_ACC64(d), WG_ACC8(d, 64), WG_ACC8(d, 72), WG_ACC8(d, 80)

#define WG_REGS32 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_REGS88 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87"
#define WG_REGS64 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

/* d (64xN) = A (64x16, K-major, desc a) * B (16xN, K-major, desc b)
 * + (accumulate ? d : 0), N = 64, 128 or 176. */
template <typename T, int N> __device__ inline void wgmma_ss(float (&d)[N / 2], uint64_t a, uint64_t b, int accumulate);
/* d (64xN) += A (64x16, registers) * B (16xN, MN-major, desc b), N = 64 or 128. */
template <typename T, int N> __device__ inline void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b);
/* One form of each for element type T (TY in PTX) and width N, whose
 * accumulators are operands 0 .. N/2-1 (ACC, REGS); the numbers after
 * them are those of the inputs in order. */
#define WG_SS(T, TY, N, ACC, REGS, A, B, P)                                                                   \
    template <> __device__ inline void wgmma_ss<T, N>(float (&d)[N / 2], uint64_t a, uint64_t b, int accumulate) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #P ", 0;\n"                                         \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " {" REGS "}, %" #A ", %" #B  \
                     ", p, 1, 1, 0, 0;\n}\n"                                                                   \
                     : ACC(d)                                                                                 \
                     : "l"(a), "l"(b), "r"(accumulate));                                                      \
    }
#define WG_RS(T, TY, N, ACC, REGS, A0, A1, A2, A3, B, P)                                                      \
    template <> __device__ inline void wgmma_rs<T, N>(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #P ", 0;\n"                                         \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " {" REGS "}, "              \
                     "{%" #A0 ", %" #A1 ", %" #A2 ", %" #A3 "}, %" #B ", p, 1, 1, 1;\n}\n"                       \
                     : ACC(d)                                                                                 \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                           \
    }
#define WG_FORMS(T, TY)                                                 \
    WG_SS(T, TY, 64, WG_ACC32, WG_REGS32, 32, 33, 34)                  \
    WG_SS(T, TY, 128, WG_ACC64, WG_REGS64, 64, 65, 66)                 \
    WG_SS(T, TY, 176, WG_ACC88, WG_REGS88, 88, 89, 90)                 \
    WG_RS(T, TY, 64, WG_ACC32, WG_REGS32, 32, 33, 34, 35, 36, 37)      \
    WG_RS(T, TY, 128, WG_ACC64, WG_REGS64, 64, 65, 66, 67, 68, 69)
WG_FORMS(__nv_bfloat16, "bf16")
WG_FORMS(__half, "f16")
#undef WG_FORMS
#undef WG_SS
#undef WG_RS

#undef WG_ACC8
#undef WG_ACC32
#undef WG_ACC64
#undef WG_ACC88
#undef WG_REGS32
#undef WG_REGS64
#undef WG_REGS88

#endif

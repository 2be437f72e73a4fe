/* SPDX-License-Identifier: Apache-2.0 */
/* mma.cuh: the warp-level tensor-core and async-copy instructions the
 * mma.sync kernels use (sm_80 and later), one inline function each, so that
 * kernels read as tile algebra. Fragment layouts are PTX's for
 * mma.m16n8k16: lane l holds rows l/4 and l/4 + 8, columns 2(l%4) and
 * 2(l%4) + 1 of each 8-column block. */
#ifndef FORGE_CUDA_MMA_CUH
#define FORGE_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ inline uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared (address smem), bypassing L1; the bytes past
 * src_bytes (0 or 16) are zero-filled, so rows past the end load as zeros. */
__device__ inline void cp_async_16(uint32_t smem, const void *gmem, int src_bytes = 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(src_bytes));
}
__device__ inline void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
/* Waits until at most n committed groups of this thread are in flight. */
template <int N> __device__ inline void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Four 8x8 b16 matrices from shared memory; lanes 8i .. 8i+7 give the row
 * addresses of matrix i, and r[i] is this lane's part of matrix i. */
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
/* The same, each matrix transposed. */
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

/* c = a (16x16, row-major) * b (16x8, column-major) + (first ? 0 : c), float
 * accumulators; `first` is a compile-time constant where it is used, so
 * one form is emitted (a zero accumulator costs no register moves). */
#define FORGE_MMA_16816(T, TYPE)                                                                      \
    template <> __device__ inline void mma_16816<T>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, \
                                                    uint32_t b1, bool first) {                          \
        if (first)                                                                                      \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 {%0, %1, %2, %3}, " \
                         "{%4, %5, %6, %7}, {%8, %9}, {%10, %10, %10, %10};\n"                          \
                         : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])                               \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));    \
        else                                                                                            \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 {%0, %1, %2, %3}, " \
                         "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"                              \
                         : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                               \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                \
    }
template <typename T> __device__ inline void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                       uint32_t b1, bool first = false);
FORGE_MMA_16816(__nv_bfloat16, "bf16")
FORGE_MMA_16816(__half, "f16")
#undef FORGE_MMA_16816

/* 2^x, flushing subnormal results to 0 (the softmax's exponentials: the
 * non-flushing form costs extra instructions on every element). */
__device__ inline float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Two floats rounded to T and packed into one register, x in the low half. */
template <typename T> __device__ inline uint32_t pack2(float x, float y);
template <> __device__ inline uint32_t pack2<__nv_bfloat16>(float x, float y) {
    __nv_bfloat162 v = __floats2bfloat162_rn(x, y);
    return *(uint32_t *)&v;
}
template <> __device__ inline uint32_t pack2<__half>(float x, float y) {
    __half2 v = __floats2half2_rn(x, y);
    return *(uint32_t *)&v;
}

#endif

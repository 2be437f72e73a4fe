/* SPDX-License-Identifier: Apache-2.0 */
/* paged.cuh: what the paged cache's attention kernels share (paged_mma.cu
 * for 16-bit pools, on tensor cores; paged_f32.cu for float pools, on CUDA
 * cores): which sequence, KV head, query rows and split of tokens a block
 * owns, 8-element loads and stores, and the block's last step, which
 * combines its warps' online-softmax states and writes the rows: the
 * output itself, or one split's partial result for paged.cu's merge. */
#ifndef FORGE_CUDA_PAGED_CUH
#define FORGE_CUDA_PAGED_CUH

#include <math.h>

#include "forge.h"
#include "kernels.h"
#include "mma.cuh"
#include "pdl.cuh"
#include "window.h"

constexpr int PAGED_WARPS = 4, PAGED_THREADS = 32 * PAGED_WARPS;

/* Block (split, kv head + KV heads * row tile, sequence) of a launch: rows
 * r0 .. r0 + nrows - 1 of the sequence's nq * group (query, head) rows, row
 * r being query r / group, head g * group + r % group, over the sequence's
 * tokens begin .. end - 1. The splits cover the tokens from start on: pages
 * before a window's start are not read. */
struct paged_block {
    int i, g, group;   /* the launch's sequence, KV head, query heads a KV head */
    int r0, nrows;     /* the block's rows                                      */
    int len, nq;       /* the sequence's tokens and queries                     */
    int start;         /* the first token its first query sees                  */
    int begin, end;    /* the split's tokens                                    */
};

/* The tokens sequence i holds with its new ones: from b.pos where a graph
 * passes the positions at run time, else the launch's. */
__device__ inline int paged_len(const fcuda_paged_batch &b, int i) {
    return b.pos ? b.pos[i] + b.row0[i + 1] - b.row0[i] : b.count[i];
}

/* Fills pb for this block, ROWS rows a block; false when it has no work.
 * The kernels are launched to overlap the kernel before them (pdl.cuh),
 * which may have written q or the pool, or (a merge) still read the split
 * results: this waits for it, and lets the merge after start. */
__device__ inline bool paged_block_init(paged_block &pb, const fcuda_pool &p, const fcuda_paged_args &a,
                                        const fcuda_paged_batch &b, int ROWS) {
    pdl_wait();
    pdl_trigger();
    pb.i = blockIdx.z, pb.group = a.heads / p.kv_heads;
    pb.g = blockIdx.y % p.kv_heads, pb.r0 = (blockIdx.y / p.kv_heads) * ROWS;
    pb.len = paged_len(b, pb.i), pb.nq = b.row0[pb.i + 1] - b.row0[pb.i];
    pb.start = forge_window_start(pb.len, pb.nq, a.window);
    pb.begin = pb.start + blockIdx.x * a.split_size, pb.end = min(pb.len, pb.begin + a.split_size);
    pb.nrows = min(ROWS, pb.nq * pb.group - pb.r0);
    return pb.nrows > 0 && pb.begin < pb.len;
}

/* The last position row r of the block sees: queries are the sequence's
 * last nq positions, each causal. */
__device__ inline int paged_limit(const paged_block &pb, int r) { return pb.len - pb.nq + (pb.r0 + r) / pb.group; }

/* The first position row r of the block sees: its window's start, or 0. */
__device__ inline int paged_first(const paged_block &pb, int r, int window) {
    return window > 0 ? paged_limit(pb, r) - window + 1 : 0;
}

/* Row r's place in q and out: (query row of the call) * heads + head. */
__device__ inline size_t paged_row_at(const paged_block &pb, const fcuda_paged_args &a, const fcuda_paged_batch &b,
                                      int r) {
    const int qi = (pb.r0 + r) / pb.group, h = pb.g * pb.group + (pb.r0 + r) % pb.group;
    return (size_t)(b.row0[pb.i] + qi) * a.heads + h;
}

/* 8 consecutive elements as floats (16 bytes of a 16-bit type, 32 of float). */
__device__ inline void load8(const __nv_bfloat16 *p, float (&x)[8]) {
    const uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __bfloat1622float2(h[j]);
        x[2 * j] = f.x, x[2 * j + 1] = f.y;
    }
}
__device__ inline void load8(const __half *p, float (&x)[8]) {
    const uint4 u = *(const uint4 *)p;
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __half22float2(h[j]);
        x[2 * j] = f.x, x[2 * j + 1] = f.y;
    }
}
__device__ inline void load8(const float *p, float (&x)[8]) {
    const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
}

/* x * s, rounded to T, to 8 consecutive elements. */
template <typename T> __device__ inline void store8(T *p, const float (&x)[8], float s) {
    uint4 u;
    u.x = pack2<T>(x[0] * s, x[1] * s), u.y = pack2<T>(x[2] * s, x[3] * s);
    u.z = pack2<T>(x[4] * s, x[5] * s), u.w = pack2<T>(x[6] * s, x[7] * s);
    *(uint4 *)p = u;
}
template <> __device__ inline void store8<float>(float *p, const float (&x)[8], float s) {
    ((float4 *)p)[0] = make_float4(x[0] * s, x[1] * s, x[2] * s, x[3] * s);
    ((float4 *)p)[1] = make_float4(x[4] * s, x[5] * s, x[6] * s, x[7] * s);
}

/* Shared memory of paged_finish: the warps' states of R rows. */
template <int D, int R> constexpr size_t paged_finish_bytes = (size_t)PAGED_WARPS * R * (D + 2) * sizeof(float);

/* The block's last step. Each warp has left, in smem, its online-softmax
 * state of rows 0 .. nrows - 1: o [WARPS][R][D] (unnormalised), m [WARPS][R]
 * (row maxima in log2 units) and l [WARPS][R] (sums); the block's threads
 * combine them in warp order and write each row: normalised to out, and
 * its log-sum-exp to lse, when the launch has one split; else to the
 * split's partial result, which paged_merge_kernel reads. */
template <typename T, int D, int R>
__device__ inline void paged_finish(const float *smem, const paged_block &pb, const fcuda_paged_args &a,
                                    const fcuda_paged_batch &b) {
    const float *wo = smem, *wm = wo + PAGED_WARPS * R * D, *wl = wm + PAGED_WARPS * R;
    for (int c = threadIdx.x; c < pb.nrows * (D / 8); c += PAGED_THREADS) {
        const int r = c / (D / 8), e = (c % (D / 8)) * 8;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < PAGED_WARPS; w++) mx = fmaxf(mx, wm[w * R + r]);
        const float base = mx == -INFINITY ? 0.0f : mx; /* a row that saw no key: all weights 0 */
        float sum = 0.0f, o8[8] = {};
#pragma unroll
        for (int w = 0; w < PAGED_WARPS; w++) {
            const float c = fast_exp2(wm[w * R + r] - base);
            sum += wl[w * R + r] * c;
#pragma unroll
            for (int j = 0; j < 8; j++) o8[j] += wo[(w * R + r) * D + e + j] * c;
        }
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const float lse = sum > 0.0f ? (mx + log2f(sum)) * 0.6931471805599453f : -INFINITY;
        const size_t at = paged_row_at(pb, a, b, r);
        if (a.splits == 1) {
            store8((T *)a.out + at * D + e, o8, inv);
            if (a.lse && e == 0) a.lse[(size_t)(at % a.heads) * a.total_q + at / a.heads] = lse;
        } else {
            const size_t part = at * a.splits + blockIdx.x;
            store8(a.part + part * D + e, o8, inv);
            if (e == 0) a.part_lse[part] = lse;
        }
    }
}

/* An attention kernel as paged.cu launches it (cudaLaunchKernel, with
 * the parameters (fcuda_pool, fcuda_paged_args, fcuda_paged_batch)): a grid
 * of (splits, kv heads * row tiles, sequences) blocks of PAGED_THREADS. */
struct paged_kernel {
    const void *fn;
    size_t smem; /* dynamic shared memory a block */
    int rows;    /* (query, head) rows a block */
};
#define PAGED_HEAD_DIMS(X) X(32) X(64) X(96) X(128) X(256)
template <typename T, int D> paged_kernel paged_mma_kernel_of(void); /* T 16-bit: paged_mma.cu */
template <int D> paged_kernel paged_f32_kernel_of(void);             /* paged_f32.cu */

#endif

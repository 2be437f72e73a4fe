/* SPDX-License-Identifier: Apache-2.0 */
/* flash_common.cuh: what the tensor-core flash kernels (flash_mma.cu,
 * flash_wgmma.cu) share: which rows and keys a block owns, and the work on
 * one warp's 16 rows of scores, which both hold in mma.m16n8's accumulator
 * layout (this lane: rows lane/4 and lane/4 + 8 of the 16, columns
 * 8n + 2(lane%4) and the one after of each 8-column block n): the mask, the
 * online softmax that turns scores into P, P's packing, and the final store. */
#ifndef FORGE_CUDA_FLASH_COMMON_CUH
#define FORGE_CUDA_FLASH_COMMON_CUH

#include <math.h>

#include "kernels.h"
#include "mma.cuh"

/* A block's query rows m0 .. m0+BM-1 of sequence blockIdx.z, head blockIdx.y. */
struct flash_block {
    int q0, nq;    /* the sequence's first query row and query count  */
    int k0, nk;    /* its first key row and key count                */
    int m0;        /* the block's first row within the sequence       */
    int shift;     /* causal: row i sees keys <= i + shift            */
    int low_shift; /* row i sees keys >= i + low_shift: shift - window
                      + 1 with a window, else far below any key       */
    int tile0;     /* the first key tile of BN the block visits, even */
    int tiles;     /* and the tile past its last                      */
    int h, g;      /* query head, its KV head                         */
};

/* Fills f for row block mb (rows mb * BM ..) of head h of sequence s of
 * the launch; false when the sequence has no such rows. */
__device__ inline bool flash_block_at(flash_block &f, const fcuda_attn_args &a, const fcuda_varlen &b, int BM, int BN,
                                      int mb, int h, int s) {
    f.h = h;
    f.g = f.h / (a.heads / a.kv_heads);
    f.q0 = b.q0[s], f.nq = b.q0[s + 1] - f.q0, f.k0 = b.k0[s], f.nk = b.nk[s];
    f.m0 = mb * BM;
    f.shift = f.nk - f.nq;
    f.low_shift = a.window > 0 ? f.shift - a.window + 1 : -(1 << 30);
    const int n_end = a.causal ? min(f.nk, f.m0 + BM + f.shift) : f.nk;
    f.tiles = n_end > 0 ? (n_end + BN - 1) / BN : 0;
    /* a window: the tiles before the first row's first key are skipped, but
     * for one at most, so that tile j keeps buffer j % 2 of a double buffer */
    f.tile0 = a.window > 0 ? min(max(0, f.m0 + f.low_shift) / BN / 2 * 2, f.tiles) : 0;
    return f.m0 < f.nq;
}

/* The same for this block of a grid (row blocks, heads, sequences). Row
 * blocks are taken in reverse: under a causal mask the last ones see the
 * most keys, and start first. */
__device__ inline bool flash_block_init(flash_block &f, const fcuda_attn_args &a, const fcuda_varlen &b, int BM,
                                        int BN) {
    return flash_block_at(f, a, b, BM, BN, gridDim.x - 1 - blockIdx.x, blockIdx.y, blockIdx.z);
}

/* Whether the tile of keys n0 .. n0 + BN - 1 has any key that some row of
 * the block (BM rows) must not see: past the sequence, causally past a
 * row's diagonal, or before a row's window. Only those tiles take
 * flash_mask. */
__device__ inline bool flash_tile_masked(const flash_block &f, int causal, int n0, int BN, int BM) {
    return n0 + BN > f.nk || (causal && n0 + BN - 1 > f.m0 + f.shift) || n0 < f.m0 + BM - 1 + f.low_shift;
}

/* Sets to -inf the scores of the tile of keys from n0 that this lane's rows
 * (row0 and row0 + 8, within the sequence) must not see: past the sequence,
 * past the row's diagonal (causal), before its window. */
template <int NT>
__device__ inline void flash_mask(float (&sc)[NT][4], const flash_block &f, int causal, int n0, int row0) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = n0 + n * 8 + 2 * (lane % 4) + (e & 1);
            const int row = row0 + (e >> 1) * 8;
            const int limit = causal ? min(f.nk, row + f.shift + 1) : f.nk;
            if (key >= limit || key < row + f.low_shift) sc[n][e] = -INFINITY;
        }
}

/* The online softmax step of one tile: scores sc (scaled by sl into log2
 * units) become the unnormalised probabilities P, in place; m and l (this
 * lane's part of the row sums) move to the new row maxima, and corr is
 * what the output must be multiplied by to follow them (flash_rescale). A
 * row's 4 lanes (a quad) share its maximum. */
template <int NT>
__device__ inline void flash_softmax(float (&sc)[NT][4], float (&m)[2], float (&l)[2], float sl, float (&corr)[2]) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float mx = m[i];
#pragma unroll
        for (int n = 0; n < NT; n++) mx = fmaxf(mx, fmaxf(sc[n][2 * i], sc[n][2 * i + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        /* a row with no key seen yet keeps m = -inf; its p are all 0 */
        const float base = mx == -INFINITY ? 0.0f : mx * sl;
        corr[i] = m[i] == -INFINITY ? 0.0f : fast_exp2(m[i] * sl - base);
        m[i] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            sc[n][2 * i] = fast_exp2(fmaf(sc[n][2 * i], sl, -base));
            sc[n][2 * i + 1] = fast_exp2(fmaf(sc[n][2 * i + 1], sl, -base));
            sum += sc[n][2 * i] + sc[n][2 * i + 1];
        }
        l[i] = l[i] * corr[i] + sum; /* this lane's part; the quad's parts meet at the end */
    }
}

/* P rounded to T in the A-operand layout of P V: keys 16k .. 16k+15 in p[k]. */
template <typename T, int NT> __device__ inline void flash_pack(const float (&sc)[NT][4], uint32_t (&p)[NT / 2][4]) {
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int i = 0; i < 2; i++) p[n / 2][(n % 2) * 2 + i] = pack2<T>(sc[n][2 * i], sc[n][2 * i + 1]);
}

/* o *= corr, row by row. Always: a test that skips it when no row's
 * maximum moved (most tiles, once the maxima settle) is a branch, and a
 * branch ends the stretch of code within which ptxas interleaves the
 * softmax's arithmetic with the products (measured: 3-9% slower). */
template <int DT> __device__ inline void flash_rescale(float (&o)[DT][4], const float (&corr)[2]) {
#pragma unroll
    for (int d = 0; d < DT; d++) o[d][0] *= corr[0], o[d][1] *= corr[0], o[d][2] *= corr[1], o[d][3] *= corr[1];
}

/* Normalises and stores this lane's two rows (row0 and row0 + 8 within the
 * sequence) of the output, and their log-sum-exp. A row that saw no key
 * (causal, more queries than keys) gets zeros and a log-sum-exp of -inf. */
template <typename T, int DT>
__device__ inline void flash_store(const fcuda_attn_args &a, const flash_block &f, int row0, const float (&o)[DT][4],
                                   const float (&m)[2], const float (&l)[2], float sl) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float sum = l[i];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = row0 + 8 * i;
        if (row >= f.nq) continue;
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        T *out = (T *)a.out + ((size_t)(f.q0 + row) * a.heads + f.h) * (DT * 8) + 2 * (lane % 4);
#pragma unroll
        for (int d = 0; d < DT; d++) *(uint32_t *)(out + d * 8) = pack2<T>(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
        if (a.lse && lane % 4 == 0)
            a.lse[(size_t)f.h * a.total_q + f.q0 + row] =
                sum > 0.0f ? (m[i] * sl + log2f(sum)) * 0.6931471805599453f : -INFINITY;
    }
}

#endif

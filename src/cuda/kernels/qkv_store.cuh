/* SPDX-License-Identifier: Apache-2.0 */
/* qkv_store.cuh: where one element pair of a token's QKV projection goes.
 *
 * The CUDA backend stores q_proj and k_proj with the rows of each head
 * reordered so that RoPE's pairs are adjacent: output column 2p of a head is
 * element ia(p) of the head vector and column 2p + 1 is element ib(p)
 * (half rotation: p and p + head_dim/2; interleaved: 2p and 2p + 1, so no
 * reordering). Whoever holds columns (2p, 2p + 1) of a token can then rotate
 * them and store them to their rows (kernels.h, fcuda_split_args). */
#ifndef FORGE_CUDA_QKV_STORE_CUH
#define FORGE_CUDA_QKV_STORE_CUH

#include "batch.cuh"

/* Element indices of pair p in a head vector. */
__device__ inline void rope_pair(forge_rope_style rope_style, int p, int head_dim, int *ia, int *ib) {
    const int interleaved = rope_style == FORGE_ROPE_INTERLEAVED;
    *ia = interleaved ? 2 * p : p;
    *ib = interleaved ? 2 * p + 1 : p + head_dim / 2;
}

/* cos and sin of pos * inv_freq: the angle and its reduction to [-pi, pi] in
 * double (large positions keep float32 accuracy), the rest in float. */
__device__ inline void rope_angle(int pos, double inv_freq, float *c, float *s) {
    const double two_pi = 6.283185307179586, inv_two_pi = 0.15915494309189535;
    double a = (double)pos * inv_freq;
    a -= two_pi * rint(a * inv_two_pi);
    sincosf((float)a, s, c);
}

/* The RoPE frequency of column col's pair (0 outside Q and K). Loaded before
 * any store of the caller: a load after a store through a generic pointer
 * waits for it. */
__device__ inline double qkv_inv_freq(const fcuda_split_args &a, int col) {
    if (a.rope_style == FORGE_ROPE_NONE || col >= (a.heads + a.kv_heads) * a.head_dim) return 0.0;
    return a.inv_freq[(col % a.head_dim) / 2];
}

/* The position of token t, of sequence s of the launch. */
__device__ inline int split_pos(const fcuda_split_args &a, const fcuda_batch &b, int s, int t) {
    return (a.pos ? a.pos[s] : b.pos0[s]) + t - b.tok0[s];
}

/* Token t's row of k and v (kernels.h, fcuda_split_args). */
__device__ inline size_t split_kv_row(const fcuda_split_args &a, const fcuda_batch &b, int s, int t) {
    if (!a.table) return (size_t)t;
    const int pos = split_pos(a, b, s, t);
    return (size_t)a.table[(size_t)b.seq[s] * a.max_pages + pos / a.page_size] * a.page_size + pos % a.page_size;
}

/* The float32 head vector that column col of token t's projection belongs
 * to, and the column's index c in it. Columns run over Q heads, K heads, V
 * heads. */
__device__ inline float *qkv_head(const fcuda_split_args &a, const fcuda_batch &b, int s, int t, int col, int *c) {
    const int H = a.heads, Hk = a.kv_heads, D = a.head_dim, h = col / D;
    *c = col % D;
    if (h < H) return (float *)a.q + ((size_t)t * H + h) * D;
    const size_t row = split_kv_row(a, b, s, t);
    return (float *)(h < H + Hk ? a.k : a.v) + (row * Hk + (h - H) % Hk) * D;
}

/* Stores columns (col, col + 1) of token t's projection (float32), col
 * even, values (va, vb); col + 1 may be past the last column (odd head dims
 * without RoPE). inv_freq = qkv_inv_freq(a, col). */
__device__ inline void qkv_store_pair(const fcuda_split_args &a, const fcuda_batch &b, int s, int t,
                                      int col, float va, float vb, double inv_freq) {
    const int cols = (a.heads + 2 * a.kv_heads) * a.head_dim;
    int c;
    float *dst = qkv_head(a, b, s, t, col, &c);
    if (a.rope_style != FORGE_ROPE_NONE && col < (a.heads + a.kv_heads) * a.head_dim) {
        /* a RoPE pair of a Q or K head (head_dim is even) */
        int ia, ib;
        rope_pair(a.rope_style, c / 2, a.head_dim, &ia, &ib);
        float cs, sn;
        rope_angle(split_pos(a, b, s, t), inv_freq, &cs, &sn);
        dst[ia] = va * cs - vb * sn;
        dst[ib] = vb * cs + va * sn;
        return;
    }
    dst[c] = va; /* columns are elements; the pair may straddle two heads */
    if (col + 1 < cols) {
        dst = qkv_head(a, b, s, t, col + 1, &c);
        dst[c] = vb;
    }
}

#endif

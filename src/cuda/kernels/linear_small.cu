/* SPDX-License-Identifier: Apache-2.0 */
/* linear_small.cu: y = x W^T + bias for calls of few tokens, where a GEMM is
 * all latency: one tiled kernel, no split-K, no separate epilogue. Its QKV
 * form also does the split, RoPE and K/V cache write in the epilogue
 * (qkv_store.cuh), so a small call's projection is one launch.
 *
 * A block computes 16 tokens x 16 outputs (small tiles: many blocks, short
 * dependency chains; these calls are all latency). Its 256 threads are 4
 * k-groups of 64, each thread 2 x 2 outputs over a quarter of every k-major
 * tile of 64 in shared memory (read as float2); the groups' partial sums
 * meet in shared memory at the end. A tile is
 * loaded into registers first and stored after: the sources are generic
 * pointers, which might alias shared memory, so loads interleaved with the
 * stores would each wait for the store before (one latency an element). */
#include "pdl.cuh"
#include "qkv_store.cuh"

#define LS_T 16       /* tokens of a block            */
#define LS_O 16       /* outputs of a block           */
#define LS_K 64       /* k of a shared-memory tile    */
#define LS_GROUP 64   /* 8 x 8 threads of 2 x 2 each: one k-group */
#define LS_KG 4       /* k-groups                     */
#define LS_THREADS (LS_GROUP * LS_KG)
#define LS_PAD 2      /* keeps float2 rows aligned; spreads the transposing stores over banks */
#define LS_PER_THREAD (LS_T * LS_K / LS_THREADS)

template <bool QKV>
__global__ void __launch_bounds__(LS_THREADS)
linear_small_kernel(const float *x, const float *w, const float *bias, float *y, int T, int in,
                    int out, fcuda_split_args qa, fcuda_batch b) {
    __shared__ __align__(16) float xs[LS_K][LS_T + LS_PAD]; /* x tile, k-major */
    __shared__ __align__(16) float ws[LS_K][LS_O + LS_PAD]; /* W tile, k-major */
    pdl_trigger();
    const int t0 = blockIdx.y * LS_T, o0 = blockIdx.x * LS_O;
    const int tid = threadIdx.x, kg = tid / LS_GROUP, lt = tid % LS_GROUP;
    const int tt = (lt / 8) * 2, oo = (lt % 8) * 2;
    /* this thread's column pair: its RoPE frequency, loaded now */
    const double freq = QKV && o0 + oo < out ? qkv_inv_freq(qa, o0 + oo) : 0.0;
    float acc[2][2] = {};
    for (int k0 = 0; k0 < in; k0 += LS_K) {
        float xr[LS_PER_THREAD], wr[LS_PER_THREAD];
#pragma unroll
        for (int j = 0; j < LS_PER_THREAD; j++) { /* k fastest: coalesced */
            const int e = tid + LS_THREADS * j, r = e / LS_K, k = e % LS_K;
            wr[j] = k0 + k < in && o0 + r < out ? w[(size_t)(o0 + r) * in + k0 + k] : 0.0f;
        }
        if (k0 == 0) pdl_wait(); /* x may come from the kernel before; the weights do not */
#pragma unroll
        for (int j = 0; j < LS_PER_THREAD; j++) {
            const int e = tid + LS_THREADS * j, r = e / LS_K, k = e % LS_K;
            xr[j] = k0 + k < in && t0 + r < T ? x[(size_t)(t0 + r) * in + k0 + k] : 0.0f;
        }
        __syncthreads(); /* the previous tile is no longer read */
#pragma unroll
        for (int j = 0; j < LS_PER_THREAD; j++) {
            const int e = tid + LS_THREADS * j, r = e / LS_K, k = e % LS_K;
            xs[k][r] = xr[j];
            ws[k][r] = wr[j];
        }
        __syncthreads();
#pragma unroll
        for (int k = kg * (LS_K / LS_KG); k < (kg + 1) * (LS_K / LS_KG); k++) {
            const float2 xv = *(const float2 *)&xs[k][tt], wv = *(const float2 *)&ws[k][oo];
            acc[0][0] += xv.x * wv.x, acc[0][1] += xv.x * wv.y;
            acc[1][0] += xv.y * wv.x, acc[1][1] += xv.y * wv.y;
        }
    }
    /* The k-groups' partial sums meet in shared memory; then half the
     * threads finish one output pair each (token tid / 8, the thread's own
     * column pair), so no thread carries the epilogue's latency twice. */
    __shared__ float2 partial[LS_KG][LS_GROUP][2];
    for (int i = 0; i < 2; i++) partial[kg][lt][i] = make_float2(acc[i][0], acc[i][1]);
    __syncthreads();
    const int t = t0 + tid / 8, o = o0 + oo;
    if (tid >= LS_T * LS_O / 2 || t >= T || o >= out) return;
    const int src = (tid / 16) * 8 + tid % 8, half = (tid / 8) % 2; /* whose acc[half] held it */
    float2 v = make_float2(bias ? bias[o] : 0.0f, bias && o + 1 < out ? bias[o + 1] : 0.0f);
#pragma unroll
    for (int g = 0; g < LS_KG; g++) v.x += partial[g][src][half].x, v.y += partial[g][src][half].y;
    if (QKV) {
        qkv_store_pair(qa, b, batch_seq_of(b, t), t, o, v.x, v.y, freq);
    } else {
        y[(size_t)t * out + o] = v.x;
        if (o + 1 < out) y[(size_t)t * out + o + 1] = v.y;
    }
}

static dim3 grid_of(int tokens, int out) {
    return dim3((out + LS_O - 1) / LS_O, (tokens + LS_T - 1) / LS_T);
}

extern "C" int fcuda_linear_small_fits(int tokens, int in, int out) {
    return tokens <= FCUDA_SMALL_TOKENS && (size_t)in * out <= FCUDA_SMALL_WEIGHTS;
}

extern "C" cudaError_t fcuda_linear_small(const float *x, const float *w, const float *bias, float *y,
                                          int tokens, int in, int out, cudaStream_t stream) {
    const fcuda_split_args none = {};
    const fcuda_batch no_batch = {};
    return pdl_launch(linear_small_kernel<false>, grid_of(tokens, out), dim3(LS_THREADS), 0, stream, x, w,
                      bias, y, tokens, in, out, none, no_batch);
}

extern "C" cudaError_t fcuda_qkv_small(const float *x, const float *w, const float *bias, int in,
                                       const fcuda_split_args *a, const fcuda_batch *b, cudaStream_t stream) {
    const int tokens = b->tok0[b->n], out = (a->heads + 2 * a->kv_heads) * a->head_dim;
    linear_small_kernel<true><<<grid_of(tokens, out), LS_THREADS, 0, stream>>>(x, w, bias, NULL, tokens, in, out, *a, *b);
    return cudaGetLastError();
}

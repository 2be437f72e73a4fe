/* SPDX-License-Identifier: Apache-2.0 */
/* seed_graph_parts.cu: where the seed layer's graph time goes. Times (CUDA
 * events around one replay, as forge bench and torch_ref.py do) graphs of
 * empty kernels, the launch floor, and graphs of each subset of the small
 * call's three kernels (QKV with RoPE and cache write, flash attention,
 * output projection) on the seed shape, called through their launchers.
 * Inputs are zeros: these kernels' time does not depend on the values.
 *   build/seed_graph_parts   (on a machine with a CUDA device) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/kernels/kernels.h"
#include "cuda/kernels/pdl.cuh"

#define WARMUP 100
#define ITERS 1000

__global__ void empty_kernel(void) {
    pdl_trigger();
    pdl_wait();
}

static int compare_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median µs of one replay of the graph that `record` captures on s. */
template <typename Record> static float replay_median_us(cudaStream_t s, Record record) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaEvent_t start, stop;
    static float t[ITERS];
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    record();
    cudaStreamEndCapture(s, &graph);
    cudaGraphInstantiate(&exec, graph, 0);
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    for (int i = 0; i < WARMUP + ITERS; i++) {
        float ms;
        cudaEventRecord(start, s);
        cudaGraphLaunch(exec, s);
        cudaEventRecord(stop, s);
        cudaEventSynchronize(stop);
        cudaEventElapsedTime(&ms, start, stop);
        if (i >= WARMUP) t[i - WARMUP] = ms * 1e3f;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    qsort(t, ITERS, sizeof *t, compare_float);
    return t[ITERS / 2];
}

static void *zeros(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes) == cudaSuccess) cudaMemset(p, 0, bytes);
    return p;
}

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    const int T = 32, C = 128, H = 4, Hk = 4, D = 32, S = 64, QKV = (H + 2 * Hk) * D;
    float *x = (float *)zeros(sizeof(float) * T * C), *w_qkv = (float *)zeros(sizeof(float) * QKV * C);
    float *b_qkv = (float *)zeros(sizeof(float) * QKV), *w_o = (float *)zeros(sizeof(float) * C * H * D);
    float *b_o = (float *)zeros(sizeof(float) * C), *y = (float *)zeros(sizeof(float) * T * C);
    float *q = (float *)zeros(sizeof(float) * T * H * D), *attn = (float *)zeros(sizeof(float) * T * H * D);
    float *k = (float *)zeros(sizeof(float) * Hk * S * D), *v = (float *)zeros(sizeof(float) * Hk * S * D);
    double *inv_freq = (double *)zeros(sizeof(double) * D / 2);
    int *table = (int *)zeros(sizeof(int)); /* the sequence's one page of S tokens: page 0 */
    if (fcuda_flash_f32_init() != cudaSuccess) return 1;

    fcuda_batch b = {};
    b.n = 1, b.tok0[1] = T, b.max_tokens = T;
    fcuda_split_args split = {};
    split.q = q, split.k = k, split.v = v, split.inv_freq = inv_freq, split.table = table;
    split.page_size = S, split.max_pages = 1, split.heads = H, split.kv_heads = Hk, split.head_dim = D;
    split.rope_style = FORGE_ROPE_HALF, split.dtype = FORGE_F32;
    fcuda_attn_args att = {};
    att.q = q, att.k = k, att.v = v, att.out = attn, att.total_q = T, att.total_k = S;
    att.heads = H, att.kv_heads = Hk, att.head_dim = D, att.scale = 1.0f / sqrtf((float)D), att.causal = 1;
    att.dtype = FORGE_F32;
    fcuda_varlen vb = {};
    vb.n = 1, vb.q0[1] = T, vb.nk[0] = T, vb.max_q = T;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);

    printf("graph replay, median of %d (us)\n", ITERS);
    for (int n = 1; n <= 3; n++)
        printf("  %d empty kernel(s)      %6.2f\n", n, replay_median_us(s, [&] {
                   empty_kernel<<<48, 128, 0, s>>>();
                   for (int i = 1; i < n; i++) pdl_launch(empty_kernel, dim3(8), dim3(128), 0, s);
               }));
    static const char *names[] = {"qkv", "flash", "qkv+flash", "output", "qkv+output", "flash+output",
                                  "qkv+flash+output"};
    for (int mask = 1; mask <= 7; mask++)
        printf("  %-22s %6.2f\n", names[mask - 1], replay_median_us(s, [&] {
                   if (mask & 1) fcuda_qkv_small(x, w_qkv, b_qkv, C, &split, &b, s);
                   if (mask & 2) fcuda_flash_f32(&att, &vb, s);
                   if (mask & 4) fcuda_linear_small(attn, w_o, b_o, y, T, H * D, C, s);
               }));
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) fprintf(stderr, "seed_graph_parts: %s\n", cudaGetErrorString(e));
    return e != cudaSuccess;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* tile_bench.cu: times the flash kernels alone, the portable mma.sync one
 * (src/cuda/flash_mma.cu) and the Hopper one (flash_wgmma.cu), at a few
 * prefill shapes, in TFLOP/s (causal FLOPs halved), without the library
 * around them: built once per tile configuration to compare them.
 *   build/tile_bench                         the library's configurations
 *   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -Isrc \
 *        "-DMMA_BN(D)=64" -o bench_bn64 bench/tile_bench.cu
 *                                            another (MMA_WARPS, MMA_MT,
 *                                            MMA_BN, WG_LONG_BN and
 *                                            WG_LONG_STAGES, WG_PINGPONG)
 * Inputs are a fixed pattern of values in [1, 2); the timing does not
 * depend on them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/kernels/flash_mma.cu"
#include "cuda/kernels/flash_wgmma.cu"

#define REPEATS 12

static int compare_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef cudaError_t (*kernel_fn)(const fcuda_attn_args *, const fcuda_varlen *, cudaStream_t);

/* TFLOP/s of a bf16 call over B sequences of S tokens; 0 on an error. */
static double tflops(kernel_fn kernel, int B, int S, int H, int Hk, int D, int causal) {
    const size_t nq = (size_t)B * S * H * D, nk = (size_t)B * S * Hk * D;
    uint16_t *host = (uint16_t *)malloc(2 * (nq > nk ? nq : nk));
    void *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    for (size_t i = 0; i < (nq > nk ? nq : nk); i++) host[i] = 0x3f80 | (uint16_t)((i * 2654435761u >> 24) & 0x7f);
    cudaMalloc(&q, 2 * nq), cudaMalloc(&k, 2 * nk), cudaMalloc(&v, 2 * nk), cudaMalloc(&o, 2 * nq);
    cudaMemcpy(q, host, 2 * nq, cudaMemcpyHostToDevice);
    cudaMemcpy(k, host, 2 * nk, cudaMemcpyHostToDevice);
    cudaMemcpy(v, host, 2 * nk, cudaMemcpyHostToDevice);
    int *work = NULL; /* the Hopper kernel's work counters: zero, and left zero by each launch */
    cudaMalloc(&work, FCUDA_WORK_BYTES);
    cudaMemset(work, 0, FCUDA_WORK_BYTES);
    const fcuda_attn_args a = {q, k, v, o, NULL, B * S, B * S, H, Hk, D, 1.0f / sqrtf((float)D), causal, FORGE_BF16, work};
    fcuda_varlen b = {};
    b.n = B, b.max_q = S;
    for (int i = 0; i <= B; i++) b.q0[i] = i * S;
    for (int i = 0; i < B; i++) b.k0[i] = i * S, b.nk[i] = S;
    cudaEvent_t start, stop;
    cudaEventCreate(&start), cudaEventCreate(&stop);
    float ms[REPEATS];
    for (int i = 0; i < REPEATS; i++) {
        cudaEventRecord(start);
        kernel(&a, &b, 0);
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        cudaEventElapsedTime(&ms[i], start, stop);
    }
    qsort(ms, REPEATS, sizeof *ms, compare_float);
    cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(o), cudaFree(work), free(host);
    cudaEventDestroy(start), cudaEventDestroy(stop);
    if (cudaGetLastError() != cudaSuccess) return 0.0;
    return 4.0 * B * H * (double)S * S * D / (causal ? 2.0 : 1.0) / ms[REPEATS / 2] / 1e9;
}

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    if (fcuda_flash_mma_init() != cudaSuccess || fcuda_flash_wgmma_init() != cudaSuccess) return 1;
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
    const struct {
        const char *name;
        kernel_fn kernel;
    } kernels[] = {{"mma.sync", fcuda_flash_mma}, {"wgmma", fcuda_flash_wgmma}};
    const int n_kernels = major == 9 ? 2 : 1;
    /* B S H Hk D causal: B*S = 16k tokens */
    static const int shapes[][6] = {
        {2, 8192, 32, 32, 64, 1},   {2, 8192, 32, 32, 64, 0},  {8, 2048, 32, 32, 64, 1},
        {16, 1024, 32, 32, 64, 1},  {32, 512, 32, 32, 64, 1},  {32, 512, 32, 32, 64, 0},
        {2, 8192, 16, 16, 128, 1},  {2, 8192, 16, 16, 128, 0}, {8, 2048, 16, 16, 128, 1},
        {16, 1024, 16, 16, 128, 1},
        {16, 1024, 16, 16, 128, 0}, {32, 512, 16, 16, 128, 0}, {8, 2048, 32, 8, 128, 1},
    };
    printf("TFLOP/s, bf16     ");
    for (int i = 0; i < n_kernels; i++) printf(" %9s", kernels[i].name);
    printf("\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int *x = shapes[s];
        printf("D%-3d %2d/%-2d S=%-5d %c", x[4], x[2], x[3], x[1], x[5] ? 'c' : 'n');
        for (int i = 0; i < n_kernels; i++) printf(" %9.1f", tflops(kernels[i].kernel, x[0], x[1], x[2], x[3], x[4], x[5]));
        printf("\n");
    }
    return 0;
}

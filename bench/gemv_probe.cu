/* SPDX-License-Identifier: Apache-2.0 */
/* gemv_probe.cu: one row through the Llama-3-8B shape's projections
 * (y = x W^T, bf16, float32 sums), the decode step's GEMMs at batch 1:
 * cuBLASLt's first heuristic (what forge runs), the fastest of its eight
 * first heuristics timed, and kernels of our own that keep more of W in
 * flight than gemv.cu did (dropped, docs/BENCHMARKS.md: one warp an output
 * row, 4 loads a lane). Ours: a block of 256 threads takes R output rows
 * and splits each row's K among all its threads, every thread issuing its
 * R x (K / 2048) 16-byte loads before it uses any; warp shuffles, then
 * shared memory, sum a row. Each timing cycles through copies of W that
 * together outgrow the 50 MB L2, so that every launch streams from DRAM.
 * Prints microseconds (median of 200 launches) and TB/s of W, and each
 * kernel's largest relative difference from cuBLASLt.
 *   gemv_probe        (on the GPU machine; built by CMake with CUDA) */
#include <algorithm>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

#include "cuda_check.cuh"

typedef __nv_bfloat16 T;
#define THREADS 256

#define LT(x)                                                                                                    \
    do {                                                                                                         \
        cublasStatus_t s_ = (x);                                                                                 \
        if (s_) {                                                                                                \
            printf("%s: cuBLAS status %d\n", #x, (int)s_);                                                       \
            exit(1);                                                                                             \
        }                                                                                                        \
    } while (0)

struct alignas(16) vec8 { T e[8]; };

/* R output rows a block; CH 16-byte chunks of each row a thread (K = CH x
 * THREADS x 8 at most). */
template <int R, int CH> __global__ void __launch_bounds__(THREADS) gemv_rows(T *y, const T *x, const T *w, int in, int out) {
    const int o0 = blockIdx.x * R;
    vec8 wv[R][CH], xv[CH];
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * THREADS + threadIdx.x) * 8;
#pragma unroll
        for (int r = 0; r < R; r++)
            if (k < in && o0 + r < out) {
                const uint4 raw = __ldcs((const uint4 *)(w + (size_t)(o0 + r) * in + k));
                wv[r][c] = *(const vec8 *)&raw;
            }
        if (k < in) xv[c] = *(const vec8 *)(x + k);
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        acc[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; c++)
            if ((c * THREADS + threadIdx.x) * 8 < in)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[r] += (float)wv[r][c].e[e] * (float)xv[c].e[e];
        for (int d = 16; d > 0; d >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], d);
    }
    __shared__ float part[R][THREADS / 32];
    if (threadIdx.x % 32 == 0)
#pragma unroll
        for (int r = 0; r < R; r++) part[r][threadIdx.x / 32] = acc[r];
    __syncthreads();
    if (threadIdx.x < R && o0 + threadIdx.x < out) {
        float s = 0.0f;
        for (int i = 0; i < THREADS / 32; i++) s += part[threadIdx.x][i];
        y[o0 + threadIdx.x] = (T)s;
    }
}

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct shape { const char *name; int out, in; };

/* Times launch(i) (i: the copy of W) 200 times after 20, in microseconds. */
template <typename F> static float time_us(F launch) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int i = 0; i < 220; i++) {
        CK(cudaEventRecord(a));
        launch(i);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (i >= 20) t.push_back(ms * 1e3f);
    }
    CK(cudaGetLastError());
    cudaEventDestroy(a), cudaEventDestroy(b);
    return median(t);
}

static float max_rel(const T *a_dev, const T *b_dev, int n) {
    std::vector<T> a(n), b(n);
    CK(cudaMemcpy(a.data(), a_dev, n * sizeof(T), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), b_dev, n * sizeof(T), cudaMemcpyDeviceToHost));
    float worst = 0.0f, scale = 0.0f;
    for (int i = 0; i < n; i++) scale = fmaxf(scale, fabsf((float)b[i]));
    for (int i = 0; i < n; i++) worst = fmaxf(worst, fabsf((float)a[i] - (float)b[i]) / scale);
    return worst;
}

__global__ void fill(T *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        p[i] = (T)(((float)(h & 0xffff) / 65536.0f - 0.5f) * 0.07f);
    }
}

int main() {
    const shape shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096},
                            {"down", 4096, 14336}, {"lm_head", 128256, 4096}};
    cublasLtHandle_t lt;
    LT(cublasLtCreate(&lt));
    void *ws;
    const size_t ws_bytes = (size_t)32 << 20;
    CK(cudaMalloc(&ws, ws_bytes));
    printf("%-8s %-28s %9s %7s %9s\n", "shape", "kernel", "us", "TB/s", "max rel");
    for (const shape &s : shapes) {
        const size_t wbytes = (size_t)s.out * s.in * sizeof(T);
        const int copies = (int)std::max<size_t>(1, (size_t)(200u << 20) / wbytes + 1);
        std::vector<T *> w(copies);
        for (T *&p : w) {
            CK(cudaMalloc(&p, wbytes));
            fill<<<1024, 256>>>(p, wbytes / sizeof(T), 7u);
        }
        T *x, *ref, *y;
        CK(cudaMalloc(&x, s.in * sizeof(T)));
        CK(cudaMalloc(&ref, s.out * sizeof(T)));
        CK(cudaMalloc(&y, s.out * sizeof(T)));
        fill<<<64, 256>>>(x, s.in, 11u);
        /* cuBLASLt as forge plans it: y^T = W^T(stored [in, out], op T) x^T */
        cublasLtMatmulDesc_t desc;
        cublasLtMatrixLayout_t lw, lx, ly;
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        LT(cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, s.in, s.out, s.in));
        LT(cublasLtMatrixLayoutCreate(&lx, CUDA_R_16BF, s.in, 1, s.in));
        LT(cublasLtMatrixLayoutCreate(&ly, CUDA_R_16BF, s.out, 1, s.out));
        cublasLtMatmulPreference_t pref;
        LT(cublasLtMatmulPreferenceCreate(&pref));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
        cublasLtMatmulHeuristicResult_t res[8];
        int found = 0;
        LT(cublasLtMatmulAlgoGetHeuristic(lt, desc, lw, lx, ly, ly, pref, 8, res, &found));
        const float one = 1.0f, zero = 0.0f;
        auto run_lt = [&](int a, T *dst, int i) {
            LT(cublasLtMatmul(lt, desc, &one, w[i % copies], lw, x, lx, &zero, dst, ly, dst, ly, &res[a].algo, ws,
                              ws_bytes, 0));
        };
        run_lt(0, ref, 0);
        const double gb = wbytes / 1e9;
        float us = time_us([&](int i) { run_lt(0, y, i); });
        printf("%-8s %-28s %9.1f %7.2f %9s\n", s.name, "cuBLASLt heuristic 1", us, gb / us * 1e3, "-");
        int best = 0;
        float best_us = us;
        for (int a = 1; a < found; a++) {
            const float t = time_us([&](int i) { run_lt(a, y, i); });
            if (t < best_us) best_us = t, best = a;
        }
        printf("%-8s cuBLASLt best of %d (#%d)      %9.1f %7.2f %9s\n", s.name, found, best + 1, best_us,
               gb / best_us * 1e3, "-");
        auto ours = [&](const char *name, auto kernel, int rows) {
            const int blocks = (s.out + rows - 1) / rows;
            const float t = time_us([&](int i) { kernel<<<blocks, THREADS>>>(y, x, w[i % copies], s.in, s.out); });
            printf("%-8s %-28s %9.1f %7.2f %9.2e\n", s.name, name, t, gb / t * 1e3, max_rel(y, ref, s.out));
        };
        if (s.in <= 4096) {
            ours("ours: 1 row a block", gemv_rows<1, 2>, 1);
            ours("ours: 2 rows a block", gemv_rows<2, 2>, 2);
            ours("ours: 4 rows a block", gemv_rows<4, 2>, 4);
        } else {
            ours("ours: 1 row a block", gemv_rows<1, 7>, 1);
            ours("ours: 2 rows a block", gemv_rows<2, 7>, 2);
        }
        for (T *p : w) cudaFree(p);
        cudaFree(x), cudaFree(ref), cudaFree(y);
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(lw), cublasLtMatrixLayoutDestroy(lx), cublasLtMatrixLayoutDestroy(ly);
        cublasLtMatmulDescDestroy(desc);
    }
    cublasLtDestroy(lt);
    cudaFree(ws);
    return 0;
}

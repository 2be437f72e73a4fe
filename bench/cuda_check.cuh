/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_check.cuh: the benchmark probes' check of a CUDA call: its error
 * printed with the call, and the probe ended. */
#ifndef FORGE_BENCH_CUDA_CHECK_CUH
#define FORGE_BENCH_CUDA_CHECK_CUH

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                                    \
    do {                                                                                                         \
        cudaError_t e_ = (x);                                                                                    \
        if (e_) {                                                                                                \
            printf("%s: %s\n", #x, cudaGetErrorString(e_));                                                      \
            exit(1);                                                                                             \
        }                                                                                                        \
    } while (0)

#endif

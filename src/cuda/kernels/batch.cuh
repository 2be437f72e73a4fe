/* SPDX-License-Identifier: Apache-2.0 */
/* batch.cuh: the device side of a launch's sequences (fcuda_batch). */
#ifndef FORGE_CUDA_BATCH_CUH
#define FORGE_CUDA_BATCH_CUH

#include "kernels.h"

/* The sequence that owns token t (tok0[s] <= t < tok0[s+1]). */
__device__ inline int batch_seq_of(const fcuda_batch &b, int t) {
    int lo = 0, hi = b.n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b.tok0[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

#endif

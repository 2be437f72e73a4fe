/* SPDX-License-Identifier: Apache-2.0 */
/* window.h: where a sliding window starts, for the host code of every
 * backend and for the kernels alike (a leaf: nothing but C). */
#ifndef FORGE_WINDOW_H
#define FORGE_WINDOW_H

#ifdef __CUDACC__
#define FORGE_HOST_DEVICE __host__ __device__
#else
#define FORGE_HOST_DEVICE
#endif

/* The first of len tokens that the first of n queries at their end sees
 * through a window of `window` tokens (0: no window, every token): what a
 * sequence's attention reads from. */
static inline FORGE_HOST_DEVICE int forge_window_start(int len, int n, int window) {
    const int first = len - n - window + 1;
    return window > 0 && first > 0 ? first : 0;
}

#endif

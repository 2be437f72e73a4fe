/* SPDX-License-Identifier: Apache-2.0 */
/* support.c: the support table, the one list of what runs where. The
 * kernels' own lists (the X-macros of head dims in src/cuda) are tested
 * against it (test_support), the backends' messages are written from it,
 * and the README's table is `forge support`'s print of it (test_cli). */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "support.h"

#define DT(d) (1u << (d))
#define ALL_DTYPES (DT(FORGE_F32) | DT(FORGE_F16) | DT(FORGE_BF16))
#define HALF_DTYPES (DT(FORGE_F16) | DT(FORGE_BF16))

static const forge_support table[SUPPORT_ROWS] = {
    [SUPPORT_CPU] = {"every operation", FORGE_BACKEND_CPU, 0, ALL_DTYPES, 0, {0},
                     "OpenBLAS GEMMs; attention unfused, in fp32", FORGE_ATTN_WINDOW | FORGE_ATTN_SOFTCAP},
    [SUPPORT_WGMMA] = {"attention alone, 16-bit layers", FORGE_BACKEND_CUDA, 90, HALF_DTYPES, 2, {64, 128},
                       "Hopper kernel: TMA, wgmma, warp-specialised", 0},
    [SUPPORT_MMA] = {"attention alone, 16-bit layers", FORGE_BACKEND_CUDA, 80, HALF_DTYPES, 5, {32, 64, 96, 128, 256},
                     "portable kernel: mma.sync, cp.async", FORGE_ATTN_WINDOW},
    [SUPPORT_FLASH_F32] = {"fp32 layers (flash)", FORGE_BACKEND_CUDA, 80, DT(FORGE_F32), 6, {32, 64, 80, 96, 128, 256},
                           "fused flash attention on CUDA cores", FORGE_ATTN_WINDOW},
    [SUPPORT_UNFUSED] = {"fp32 layers (unfused)", FORGE_BACKEND_CUDA, 80, DT(FORGE_F32), 0, {0},
                         "cuBLAS QK^T, softmax, cuBLAS PV", FORGE_ATTN_WINDOW},
    [SUPPORT_PAGED_MMA] = {"paged attention", FORGE_BACKEND_CUDA, 80, HALF_DTYPES, 5, {32, 64, 96, 128, 256},
                           "split-KV decode on tensor cores, merged by log-sum-exp", FORGE_ATTN_WINDOW},
    [SUPPORT_PAGED_F32] = {"paged attention", FORGE_BACKEND_CUDA, 80, DT(FORGE_F32), 5, {32, 64, 96, 128, 256},
                           "split-KV decode on CUDA cores, merged by log-sum-exp", FORGE_ATTN_WINDOW},
};

int forge_support_count(void) { return SUPPORT_ROWS; }

const forge_support *forge_support_row(int i) { return i >= 0 && i < SUPPORT_ROWS ? &table[i] : NULL; }

const forge_support *forge_support_of(forge_support_id id) { return &table[id]; }

int forge_support_has(forge_support_id id, int head_dim) {
    const forge_support *r = &table[id];
    if (r->n_head_dims == 0) return head_dim >= 1 && head_dim <= 256;
    for (int i = 0; i < r->n_head_dims; i++)
        if (r->head_dims[i] == head_dim) return 1;
    return 0;
}

const char *forge_support_dims(forge_support_id id, char *buf, size_t n) {
    const forge_support *r = &table[id];
    size_t at = 0;
    buf[0] = '\0';
    if (r->n_head_dims == 0) snprintf(buf, n, "any up to 256");
    for (int i = 0; i < r->n_head_dims && at < n; i++) {
        const char *sep = i == 0 ? "" : i == r->n_head_dims - 1 ? " and " : ", ";
        at += (size_t)snprintf(buf + at, n - at, "%s%d", sep, r->head_dims[i]);
    }
    return buf;
}

/* The options a call asks for that row id lacks. */
static unsigned missing(forge_support_id id, int window, float softcap) {
    const unsigned asked = (window > 0 ? FORGE_ATTN_WINDOW : 0u) | (softcap > 0.0f ? FORGE_ATTN_SOFTCAP : 0u);
    return asked & ~table[id].options;
}

int forge_support_takes(forge_support_id id, int window, float softcap) { return !missing(id, window, softcap); }

forge_status forge_support_check_options(forge_support_id id, int window, float softcap, const char *fn) {
    const unsigned lacks = missing(id, window, softcap);
    if (!lacks) return FORGE_OK;
    const forge_support *r = &table[id];
    const char *what = lacks & FORGE_ATTN_WINDOW ? "a sliding window" : "soft-capping";
    return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %s is not implemented by the %s backend's %s (%s); `forge support` "
                      "lists what runs where", fn, what, forge_backend_name(r->backend), r->operation, r->kernel);
}

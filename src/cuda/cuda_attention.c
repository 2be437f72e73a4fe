/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_attention.c: attention alone (forge_attention_forward) on the
 * tensor-core kernels, and the choice between the Hopper and the portable
 * kernel that 16-bit layers share. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

forge_status cuda_flash_tc(forge_context *ctx, fcuda_mma_args *m, const fcuda_varlen *b, const char *fn) {
    cuda_ctx *c = ctx->impl;
    if (!c->hopper || ctx->kernel == FORGE_KERNEL_PORTABLE || !fcuda_flash_wgmma_supported(m->head_dim)) {
        CUDA_TRY(fn, fcuda_flash_mma(m, b, c->stream));
        return FORGE_OK;
    }
    /* the Hopper kernel's work counters: a context's calls run one after
     * another on its stream, and each launch leaves them zero for the next */
    m->work = c->work;
    CUDA_TRY(fn, fcuda_flash_wgmma(m, b, c->stream));
    return FORGE_OK;
}

/* forge_attention_forward on a tensor-core kernel, FCUDA_MAX_SEQS sequences
 * a launch (their offsets travel as a kernel parameter, so the call makes
 * no host copy and can be captured in a graph). */
forge_status cuda_attention(forge_context *ctx, const forge_attention_args *a, int total_q,
                                   int total_kv) {
    static const char fn[] = "forge_attention_forward";
    if (a->dtype != FORGE_BF16 && a->dtype != FORGE_F16)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend computes attention alone in bf16 and fp16, not %s",
                          fn, forge_dtype_name(a->dtype));
    char dims[64];
    if (!fcuda_flash_mma_supported(a->head_dim))
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the CUDA backend computes attention alone for head dims %s, not %d",
                          fn, forge_support_dims(SUPPORT_MMA, dims, sizeof dims), a->head_dim);
    const void *bufs[] = {a->q, a->k, a->v, a->out, a->lse};
    static const char *names[] = {"q", "k", "v", "out", "lse"};
    for (int i = 0; i < 5; i++)
        if ((uintptr_t)bufs[i] % (i == 4 ? 4 : 16))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s is not %d-byte aligned", fn, names[i],
                              i == 4 ? 4 : 16);
    fcuda_mma_args m = {a->q, total_kv ? a->k : a->q, total_kv ? a->v : a->q, a->out, a->lse, total_q, total_kv,
                        a->heads, a->kv_heads, a->head_dim, a->scale, a->causal, a->dtype == FORGE_BF16, NULL};
    for (int first = 0; first < a->batch; first += FCUDA_MAX_SEQS) {
        fcuda_varlen b = {.n = cuda_launch_seqs(a->batch, first)};
        for (int i = 0; i <= b.n; i++) {
            b.q0[i] = a->q_offsets[first + i];
            if (i > 0 && b.q0[i] - b.q0[i - 1] > b.max_q) b.max_q = b.q0[i] - b.q0[i - 1];
        }
        for (int i = 0; i < b.n; i++) {
            b.k0[i] = a->kv_offsets[first + i];
            b.nk[i] = a->kv_offsets[first + i + 1] - b.k0[i];
        }
        forge_status st;
        if (b.max_q > 0 && (st = cuda_flash_tc(ctx, &m, &b, fn)) != FORGE_OK) return st;
    }
    return FORGE_OK;
}

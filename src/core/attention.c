/* SPDX-License-Identifier: Apache-2.0 */
/* attention.c: forge_attention_forward, attention alone over a varlen batch:
 * every argument checked here, the work done by the context's backend. */
#include <math.h>

#include "core.h"
#include "dtype.h"
#include "error.h"

forge_status forge_attention_forward(forge_context *ctx, const forge_attention_args *a) {
    static const char fn[] = "forge_attention_forward";
    FORGE_CHECK_NOT_NULL(ctx, fn);
    FORGE_CHECK_NAMED(a, "args", fn);
    if (forge_dtype_size(a->dtype) == 0)
        return forge_fail(FORGE_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)a->dtype);
    if (a->batch < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: batch is %d, not >= 1", fn, a->batch);
    if (a->heads < 1 || a->kv_heads < 1 || a->heads % a->kv_heads != 0)
        return forge_fail(FORGE_ERR_SHAPE, "%s: kv_heads %d must be >= 1 and divide heads %d", fn,
                          a->kv_heads, a->heads);
    if (a->head_dim < 1 || a->head_dim > 256)
        return forge_fail(FORGE_ERR_SHAPE, "%s: head_dim %d is outside 1 .. 256", fn, a->head_dim);
    if ((int64_t)a->heads * a->head_dim > FORGE_MAX_DIM) /* a row of q and out: a BLAS leading dimension */
        return forge_fail(FORGE_ERR_SHAPE, "%s: heads %d x head_dim %d is past %d", fn, a->heads, a->head_dim,
                          FORGE_MAX_DIM);
    forge_status st = forge_check_scale(fn, a->scale);
    if (st != FORGE_OK) return st;
    if (a->causal != 0 && a->causal != 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: causal is %d, not 0 or 1", fn, a->causal);
    if ((st = forge_check_score_options(fn, "args->", a->window, a->softcap)) != FORGE_OK) return st;
    if (a->window && !a->causal)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: a window (%d) needs causal: it counts back from each "
                          "query's own position", fn, a->window);
    FORGE_CHECK_NAMED(a->q_offsets, "args->q_offsets", fn);
    FORGE_CHECK_NAMED(a->kv_offsets, "args->kv_offsets", fn);
    int total_q, total_kv;
    st = forge_check_offsets(fn, "q_offsets", a->q_offsets, a->batch, &total_q);
    if (st == FORGE_OK) st = forge_check_offsets(fn, "kv_offsets", a->kv_offsets, a->batch, &total_kv);
    if (st != FORGE_OK) return st;
    if (total_q == 0) return FORGE_OK; /* nothing to compute, nothing to write */
    FORGE_CHECK_NAMED(a->q, "args->q", fn);
    FORGE_CHECK_NAMED(a->out, "args->out", fn);
    if (total_kv > 0) {
        FORGE_CHECK_NAMED(a->k, "args->k", fn);
        FORGE_CHECK_NAMED(a->v, "args->v", fn);
    }
    forge_attention_args resolved = *a;
    if (resolved.scale == 0.0f) resolved.scale = 1.0f / sqrtf((float)a->head_dim);
    return ctx->ops->attention(ctx, &resolved, total_q, total_kv);
}

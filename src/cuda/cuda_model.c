/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_model.c: the CUDA backend's model operations (backend.h): the row
 * kernels of model_ops.cu, and the model's GEMMs through cuBLASLt, planned
 * once a shape and kept in the context's few plans, replaced in turn. */
#include "cuda_backend.h"

forge_status cuda_model_rmsnorm(forge_context *ctx, forge_dtype dtype, void *out, void *x, const void *res,
                                const void *w, long rows, int dim, float eps) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_model_step", fcuda_rmsnorm(dtype, out, x, res, w, rows, dim, eps, 1, dim, c->stream));
    return FORGE_OK;
}

forge_status cuda_model_linear(forge_context *ctx, forge_dtype dtype, void *y, const void *x, const void *w, long rows,
                               int in, int out) {
    static const char fn[] = "forge_model_step";
    cuda_ctx *c = ctx->impl;
    cuda_model_plan *p = NULL;
    for (int i = 0; i < CUDA_MODEL_PLANS && !p; i++) {
        cuda_model_plan *q = &c->plans[i];
        if (q->g.tokens == rows && q->dtype == dtype && q->in == in && q->out == out) p = q;
    }
    if (!p) {
        p = &c->plans[c->next_plan];
        c->next_plan = (c->next_plan + 1) % CUDA_MODEL_PLANS;
        lt_linear_free(&p->g);
        p->dtype = dtype, p->in = in, p->out = out;
        forge_status st = lt_linear_plan(c, &p->g, dtype, NULL, (int)rows, in, out, fn);
        if (st != FORGE_OK) return st;
    }
    return lt_linear_run(c, &p->g, y, x, w, fn);
}

forge_status cuda_model_silu_mul(forge_context *ctx, forge_dtype dtype, void *out, const void *gate_up, long rows,
                                 int inter) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_model_step", fcuda_silu_mul(dtype, out, gate_up, rows, inter, c->stream));
    return FORGE_OK;
}

forge_status cuda_model_gather_rows(forge_context *ctx, void *out, const void *table, const int32_t *ids, long rows,
                                    size_t row_bytes) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_model_step", fcuda_gather_rows(out, table, ids, rows, row_bytes, c->stream));
    return FORGE_OK;
}

forge_status cuda_model_argmax_rows(forge_context *ctx, forge_dtype dtype, int32_t *out, const void *x, long rows,
                                    int cols) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_model_step_greedy", fcuda_argmax_rows(dtype, out, x, rows, cols, c->stream));
    return FORGE_OK;
}

forge_status cuda_model_sample_front(forge_context *ctx, forge_dtype dtype, void *out, const void *logits,
                                     const forge_sample_row *settings, const uint32_t *seen, long rows, int vocab,
                                     int cap) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_model_step_sample", fcuda_sample_front(dtype, out, logits, settings, seen, rows, vocab, cap, c->stream));
    return FORGE_OK;
}

void cuda_model_free(cuda_ctx *c) {
    for (int i = 0; i < CUDA_MODEL_PLANS; i++) lt_linear_free(&c->plans[i].g);
}

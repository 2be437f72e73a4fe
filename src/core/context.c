/* SPDX-License-Identifier: Apache-2.0 */
/* context.c: backend choice, streams, buffers and the fallback policy. */
#include <stdlib.h>

#include "clock.h"
#include "core.h"
#include "error.h"
#include "testing.h"

/* The ops of a backend, or an error saying why it cannot be had here (its
 * message begins with fn). AUTO takes CUDA where it can be used. */
static forge_status pick_backend(const char *fn, forge_backend backend, const forge_backend_ops **ops) {
    switch (backend) {
    case FORGE_BACKEND_CPU: *ops = &forge_cpu_backend; return FORGE_OK;
    case FORGE_BACKEND_AUTO:
    case FORGE_BACKEND_CUDA: {
        const forge_module *cuda;
        forge_status st = forge_cuda_module_get(fn, &cuda);
        if (st == FORGE_OK) st = cuda->available(fn);
        if (st == FORGE_OK) {
            *ops = cuda->ops;
            return FORGE_OK;
        }
        if (backend == FORGE_BACKEND_CUDA) return st; /* message set */
        *ops = &forge_cpu_backend;
        return FORGE_OK;
    }
    }
    return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: unknown backend %d", fn, (int)backend);
}

forge_status forge_backend_available(forge_backend backend) {
    const forge_backend_ops *ops;
    return pick_backend("forge_backend_available", backend, &ops);
}

forge_status forge_context_create(forge_backend backend, forge_context **out) {
    FORGE_CHECK_NOT_NULL(out, "forge_context_create");
    const forge_backend_ops *ops = NULL;
    forge_status st = pick_backend("forge_context_create", backend, &ops);
    if (st != FORGE_OK) return st;
    forge_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_context_create: out of memory");
    ctx->ops = ops;
    ctx->fail_stage = -1;
    if (ops->context_init && (st = ops->context_init(ctx)) != FORGE_OK) {
        free(ctx);
        return st;
    }
    /* every other backend keeps a CPU twin for fallbacks and self-checks */
    if (ops != &forge_cpu_backend && (st = forge_context_create(FORGE_BACKEND_CPU, &ctx->cpu)) != FORGE_OK) {
        forge_context_destroy(ctx);
        return st;
    }
    *out = ctx;
    return FORGE_OK;
}

void forge_context_destroy(forge_context *ctx) {
    if (!ctx) return;
    forge_context_destroy(ctx->cpu);
    if (ctx->ops->context_free) ctx->ops->context_free(ctx);
    free(ctx);
}

forge_backend forge_context_backend(const forge_context *ctx) {
    return ctx ? ctx->ops->kind : FORGE_BACKEND_AUTO;
}

forge_status forge_context_set_stream(forge_context *ctx, void *stream) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_context_set_stream");
    return ctx->ops->set_stream ? ctx->ops->set_stream(ctx, stream) : FORGE_OK;
}

forge_status forge_context_synchronize(forge_context *ctx) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_context_synchronize");
    return ctx->ops->synchronize ? ctx->ops->synchronize(ctx) : FORGE_OK;
}

forge_status forge_stopwatch_start(forge_context *ctx) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_stopwatch_start");
    if (ctx->ops->stopwatch_start) return ctx->ops->stopwatch_start(ctx);
    ctx->stopwatch_start_us = forge_now_us();
    return FORGE_OK;
}

forge_status forge_stopwatch_stop(forge_context *ctx, double *us) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_stopwatch_stop");
    FORGE_CHECK_NOT_NULL(us, "forge_stopwatch_stop");
    if (ctx->ops->stopwatch_stop) return ctx->ops->stopwatch_stop(ctx, us);
    *us = forge_now_us() - ctx->stopwatch_start_us;
    return FORGE_OK;
}

forge_status forge_context_set_fallback(forge_context *ctx, forge_fallback policy) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_context_set_fallback");
    if (policy != FORGE_FALLBACK_ERROR && policy != FORGE_FALLBACK_CPU)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_context_set_fallback: unknown policy %d",
                          (int)policy);
    ctx->fallback = policy;
    return FORGE_OK;
}

forge_status forge_context_set_kernel(forge_context *ctx, forge_kernel kernel) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_context_set_kernel");
    if (kernel != FORGE_KERNEL_AUTO && kernel != FORGE_KERNEL_PORTABLE)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_context_set_kernel: unknown kernel %d", (int)kernel);
    ctx->kernel = kernel;
    return FORGE_OK;
}

forge_status forge_context_fallback_counts(const forge_context *ctx,
                                           uint64_t counts[FORGE_STAGE_COUNT]) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_context_fallback_counts");
    FORGE_CHECK_NOT_NULL(counts, "forge_context_fallback_counts");
    for (int i = 0; i < FORGE_STAGE_COUNT; i++) counts[i] = ctx->fallback_counts[i];
    return FORGE_OK;
}

void forge_testing_fail_stage(forge_context *ctx, int stage) { ctx->fail_stage = stage; }


forge_status forge_buffer_alloc(forge_context *ctx, size_t bytes, void **out) {
    FORGE_CHECK_NOT_NULL(ctx, "forge_buffer_alloc");
    FORGE_CHECK_NOT_NULL(out, "forge_buffer_alloc");
    if (bytes == 0) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_buffer_alloc: 0 bytes");
    return ctx->ops->buffer_alloc(ctx, bytes, out);
}

void forge_buffer_free(forge_context *ctx, void *buffer) {
    if (ctx && buffer) ctx->ops->buffer_free(ctx, buffer);
}

static forge_status copy(const char *fn, forge_context *ctx, void *dst, const void *src,
                         size_t bytes, int to_host) {
    FORGE_CHECK_NOT_NULL(ctx, fn);
    if (bytes == 0) return FORGE_OK;
    FORGE_CHECK_NOT_NULL(dst, fn);
    FORGE_CHECK_NOT_NULL(src, fn);
    return ctx->ops->buffer_copy(ctx, dst, src, bytes, to_host);
}

forge_status forge_buffer_upload(forge_context *ctx, void *dst, const void *src, size_t bytes) {
    return copy("forge_buffer_upload", ctx, dst, src, bytes, 0);
}

forge_status forge_buffer_download(forge_context *ctx, void *dst, const void *src, size_t bytes) {
    return copy("forge_buffer_download", ctx, dst, src, bytes, 1);
}

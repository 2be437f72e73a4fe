/* context.c: backend choice; a context is the backend a layer runs on. */
#include <stdlib.h>

#include "backend.h"
#include "error.h"

const char *forge_backend_name(forge_backend backend) {
    switch (backend) {
    case FORGE_BACKEND_AUTO: return "auto";
    case FORGE_BACKEND_CPU: return "cpu";
    case FORGE_BACKEND_CUDA: return "cuda";
    }
    return "unknown";
}

forge_status forge_context_create(forge_backend backend, forge_context **out) {
    FORGE_CHECK_NOT_NULL(out, "forge_context_create");
    const forge_backend_ops *ops;
    switch (backend) {
    case FORGE_BACKEND_AUTO:
    case FORGE_BACKEND_CPU: ops = &forge_cpu_backend; break;
    case FORGE_BACKEND_CUDA:
        return forge_fail(FORGE_ERR_UNSUPPORTED,
                          "forge_context_create: this build of Forge has no CUDA backend");
    default:
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "forge_context_create: unknown backend %d", (int)backend);
    }
    forge_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_context_create: out of memory");
    ctx->ops = ops;
    *out = ctx;
    return FORGE_OK;
}

void forge_context_destroy(forge_context *ctx) { free(ctx); }

forge_backend forge_context_backend(const forge_context *ctx) {
    return ctx ? ctx->ops->kind : FORGE_BACKEND_AUTO;
}

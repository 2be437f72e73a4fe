/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_context.c: the CUDA backend's context: whether a device can be used,
 * its handles and stream, the stopwatch, and device buffers. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

forge_status forge_cuda_available(const char *fn) {
    int count = 0, device = 0, ptx = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: no CUDA device (%s)", fn,
                          e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    struct cudaDeviceProp prop;
    if ((e = cudaGetDevice(&device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return cuda_err(fn, "cudaGetDeviceProperties", e);
    if (prop.major < 8)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %s is sm_%d%d; Forge's CUDA kernels need sm_80 or newer",
                          fn, prop.name, prop.major, prop.minor);
    if ((e = fcuda_device_check(&ptx)) != cudaSuccess)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: this build has no code for %s (sm_%d%d): %s; rebuild with "
                          "it in CMAKE_CUDA_ARCHITECTURES", fn, prop.name, prop.major, prop.minor,
                          cudaGetErrorString(e));
    return FORGE_OK;
}

void cuda_context_free(forge_context *ctx) {
    cuda_ctx *c = ctx->impl;
    if (!c) return;
    cuda_model_free(c);
    if (c->blas) cublasDestroy(c->blas);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->own_stream) cudaStreamDestroy(c->own_stream);
    for (int i = 0; i < 2; i++)
        if (c->watch[i]) cudaEventDestroy(c->watch[i]);
    cudaFree(c->workspace);
    cudaFree(c->work);
    free(c);
    ctx->impl = NULL;
}

/* The sm_90a kernels run on compute capability 9.0 alone, in builds that
 * have them (sm_90 among the architectures). */
static int hopper_kernels_run(int major, int minor) {
#ifdef FORGE_HAVE_SM90A
    return major == 9 && minor == 0;
#else
    return (void)major, (void)minor, 0;
#endif
}

forge_status cuda_context_init(forge_context *ctx) {
    static const char fn[] = "forge_context_create";
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!c) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    ctx->impl = c;
    forge_status st = FORGE_OK;
    cudaError_t e;
    cublasStatus_t b;
    int major = 0, minor = 0, ptx = 0;
    if ((e = cudaGetDevice(&c->device)) != cudaSuccess) st = cuda_err(fn, "cudaGetDevice", e);
    else if ((e = fcuda_flash_f32_init()) != cudaSuccess) st = cuda_err(fn, "fcuda_flash_f32_init", e);
    else if ((e = fcuda_flash_mma_init()) != cudaSuccess) st = cuda_err(fn, "fcuda_flash_mma_init", e);
    else if ((e = fcuda_paged_init()) != cudaSuccess) st = cuda_err(fn, "fcuda_paged_init", e);
    else if ((e = cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, c->device)) != cudaSuccess)
        st = cuda_err(fn, "cudaDeviceGetAttribute", e);
    else if ((e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->device)) != cudaSuccess ||
             (e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, c->device)) != cudaSuccess)
        st = cuda_err(fn, "cudaDeviceGetAttribute", e);
    else if ((e = fcuda_device_check(&ptx)) != cudaSuccess) st = cuda_err(fn, "fcuda_device_check", e);
    else if ((c->hopper = hopper_kernels_run(major, minor)) && (e = fcuda_flash_wgmma_init()) != cudaSuccess)
        st = cuda_err(fn, "fcuda_flash_wgmma_init", e);
    else if ((e = cudaStreamCreateWithFlags(&c->own_stream, cudaStreamNonBlocking)) != cudaSuccess)
        st = cuda_err(fn, "cudaStreamCreateWithFlags", e);
    else if ((e = cudaMalloc((void **)&c->work, FCUDA_WORK_BYTES)) != cudaSuccess) st = cuda_err(fn, "cudaMalloc", e);
    else if ((e = cudaMemset(c->work, 0, FCUDA_WORK_BYTES)) != cudaSuccess) st = cuda_err(fn, "cudaMemset", e);
    else if ((e = cudaEventCreate(&c->watch[0])) != cudaSuccess || (e = cudaEventCreate(&c->watch[1])) != cudaSuccess)
        st = cuda_err(fn, "cudaEventCreate", e);
    else if ((e = cudaMalloc(&c->workspace, WORKSPACE_BYTES)) != cudaSuccess) st = cuda_err(fn, "cudaMalloc", e);
    else if ((b = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS) st = blas_err(fn, "cublasCreate", b);
    else if ((b = cublasLtCreate(&c->lt)) != CUBLAS_STATUS_SUCCESS) st = blas_err(fn, "cublasLtCreate", b);
    else if ((b = cublasSetWorkspace(c->blas, c->workspace, WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS)
        st = blas_err(fn, "cublasSetWorkspace", b);
    c->stream = c->own_stream;
    if (st == FORGE_OK) fcuda_pdl_enable(major, ptx);
    if (st != FORGE_OK) cuda_context_free(ctx);
    return st;
}

forge_status cuda_set_stream(forge_context *ctx, void *stream) {
    cuda_ctx *c = ctx->impl;
    c->stream = stream ? (cudaStream_t)stream : c->own_stream;
    return FORGE_OK;
}

forge_status cuda_synchronize(forge_context *ctx) {
    CUDA_TRY("forge_context_synchronize", cudaStreamSynchronize(((cuda_ctx *)ctx->impl)->stream));
    return FORGE_OK;
}

forge_status cuda_stopwatch_start(forge_context *ctx) {
    cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_stopwatch_start", cudaEventRecord(c->watch[0], c->stream));
    return FORGE_OK;
}

forge_status cuda_stopwatch_stop(forge_context *ctx, double *us) {
    static const char fn[] = "forge_stopwatch_stop";
    cuda_ctx *c = ctx->impl;
    float ms;
    CUDA_TRY(fn, cudaEventRecord(c->watch[1], c->stream));
    CUDA_TRY(fn, cudaEventSynchronize(c->watch[1]));
    CUDA_TRY(fn, cudaEventElapsedTime(&ms, c->watch[0], c->watch[1]));
    *us = ms * 1e3;
    return FORGE_OK;
}

forge_status cuda_buffer_alloc(forge_context *ctx, size_t bytes, void **out) {
    CUDA_TRY("forge_buffer_alloc", cudaMalloc(out, bytes));
    return FORGE_OK;
}

void cuda_buffer_free(forge_context *ctx, void *p) { cudaFree(p); }

forge_status cuda_buffer_copy(forge_context *ctx, void *dst, const void *src, size_t bytes,
                                     int to_host) {
    cudaStream_t s = ((cuda_ctx *)ctx->impl)->stream;
    const char *fn = to_host ? "forge_buffer_download" : "forge_buffer_upload";
    CUDA_TRY(fn, cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, s));
    CUDA_TRY(fn, cudaStreamSynchronize(s));
    return FORGE_OK;
}

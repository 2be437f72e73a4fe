/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_comm.c: a split model's ranks on several GPUs: each rank's thread
 * bound to its device, and the collectives between them through NCCL.
 * NCCL is loaded when a split model first asks for it (FORGE_NCCL names
 * the file, else libnccl.so.2 from the library path; PyTorch's wheels carry
 * one), so that the module links no NCCL and runs without it on one GPU.
 * The few declarations used are NCCL 2's stable ABI, as nccl.h has them.
 * NVLink multicast (NVLS) stays off unless NCCL_NVLS_ENABLE says otherwise:
 * on some hosts it has taken the GPUs out of service. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "cuda_backend.h"

typedef struct nccl_comm *nccl_comm_t;
typedef int nccl_result;   /* ncclResult_t: 0 is ncclSuccess */
enum { NCCL_SUM = 0 };     /* ncclRedOp_t's ncclSum */
enum { NCCL_F16 = 6, NCCL_F32 = 7, NCCL_BF16 = 9 }; /* ncclDataType_t */

static struct {
    nccl_result (*init_all)(nccl_comm_t *comms, int n, const int *devices);
    nccl_result (*destroy)(nccl_comm_t comm);
    nccl_result (*abort)(nccl_comm_t comm);
    nccl_result (*all_reduce)(const void *send, void *recv, size_t count, int type, int op, nccl_comm_t comm,
                              cudaStream_t stream);
    nccl_result (*all_gather)(const void *send, void *recv, size_t count, int type, nccl_comm_t comm,
                              cudaStream_t stream);
    const char *(*error)(nccl_result r);
    const char *failure; /* why it could not be loaded, or NULL */
} nccl;

static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;

/* A rank's communicator: NCCL's, and whether it was aborted (which frees
 * it: it is then not destroyed again). */
typedef struct {
    nccl_comm_t nccl;
    int aborted;
} cuda_comm;

static void nccl_load(void) {
    const char *path = getenv("FORGE_NCCL");
    void *lib = dlopen(path && *path ? path : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        nccl.failure = "libnccl.so.2 is not on the library path (set FORGE_NCCL to its file)";
        return;
    }
    *(void **)&nccl.init_all = dlsym(lib, "ncclCommInitAll");
    *(void **)&nccl.destroy = dlsym(lib, "ncclCommDestroy");
    *(void **)&nccl.abort = dlsym(lib, "ncclCommAbort");
    *(void **)&nccl.all_reduce = dlsym(lib, "ncclAllReduce");
    *(void **)&nccl.all_gather = dlsym(lib, "ncclAllGather");
    *(void **)&nccl.error = dlsym(lib, "ncclGetErrorString");
    if (!nccl.init_all || !nccl.destroy || !nccl.abort || !nccl.all_reduce || !nccl.all_gather || !nccl.error)
        nccl.failure = "the NCCL library found lacks ncclCommInitAll, ncclAllReduce or another call Forge uses";
}

static forge_status nccl_err(const char *fn, const char *what, nccl_result r) {
    return forge_fail(FORGE_ERR_BACKEND, "%s: %s: %s", fn, what, nccl.error(r));
}

forge_status cuda_use_device(const forge_context *ctx, int offset, const char *fn) {
    const cuda_ctx *c = ctx->impl;
    int count = 0;
    CUDA_TRY(fn, cudaGetDeviceCount(&count));
    if (offset >= count)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: rank %d needs %d CUDA devices, this machine has %d", fn, offset,
                          offset + 1, count);
    CUDA_TRY(fn, cudaSetDevice((c->device + offset) % count));
    return FORGE_OK;
}

forge_status cuda_comm_create(forge_context **ctxs, int n, void **comms, const char *fn) {
    pthread_once(&nccl_once, nccl_load);
    if (nccl.failure) return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: tensor parallelism needs NCCL: %s", fn, nccl.failure);
    int devices[64];
    if (n > 64) return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: %d ranks, past NCCL's 64 here", fn, n);
    for (int r = 0; r < n; r++) devices[r] = ((const cuda_ctx *)ctxs[r]->impl)->device;
    cuda_comm *each[64] = {0};
    int held = 0;
    while (held < n && (each[held] = calloc(1, sizeof *each[held]))) held++;
    if (held < n) {
        while (held > 0) free(each[--held]);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    setenv("NCCL_NVLS_ENABLE", "0", 0); /* unless the caller set it */
    int current = 0;
    nccl_comm_t made[64];
    const cudaError_t e = cudaGetDevice(&current);
    const nccl_result r = e ? 0 : nccl.init_all(made, n, devices);
    if (!e) cudaSetDevice(current); /* NCCL moves the caller's thread between the devices */
    for (int k = 0; k < n; k++) {
        if (e || r) free(each[k]);
        else each[k]->nccl = made[k], comms[k] = each[k];
    }
    if (e) return cuda_err(fn, "cudaGetDevice", e);
    return r ? nccl_err(fn, "ncclCommInitAll", r) : FORGE_OK;
}

void cuda_comm_abort(void *comm) {
    cuda_comm *c = comm;
    if (!c->aborted) nccl.abort(c->nccl);
    c->aborted = 1;
}

void cuda_comm_free(void *comm) {
    cuda_comm *c = comm;
    if (!c->aborted) nccl.destroy(c->nccl);
    free(c);
}

static int nccl_type(forge_dtype dtype) {
    return dtype == FORGE_BF16 ? NCCL_BF16 : dtype == FORGE_F16 ? NCCL_F16 : NCCL_F32;
}

forge_status cuda_all_reduce(forge_context *ctx, void *comm, forge_dtype dtype, void *buf, size_t count) {
    const cuda_ctx *c = ctx->impl;
    const nccl_result r = nccl.all_reduce(buf, buf, count, nccl_type(dtype), NCCL_SUM, ((cuda_comm *)comm)->nccl,
                                          c->stream);
    return r ? nccl_err("forge_model_step", "ncclAllReduce", r) : FORGE_OK;
}

forge_status cuda_all_gather(forge_context *ctx, void *comm, forge_dtype dtype, void *out, const void *in,
                             size_t count) {
    const cuda_ctx *c = ctx->impl;
    const nccl_result r = nccl.all_gather(in, out, count, nccl_type(dtype), ((cuda_comm *)comm)->nccl, c->stream);
    return r ? nccl_err("forge_model_step", "ncclAllGather", r) : FORGE_OK;
}

forge_status cuda_copy_2d(forge_context *ctx, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                          size_t width, size_t height) {
    const cuda_ctx *c = ctx->impl;
    CUDA_TRY("forge_model_step",
             cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, height, cudaMemcpyDeviceToDevice, c->stream));
    return FORGE_OK;
}

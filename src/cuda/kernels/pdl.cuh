/* SPDX-License-Identifier: Apache-2.0 */
/* pdl.cuh: programmatic dependent launch (sm_90). A kernel launched with
 * pdl_launch may start while the kernel before it on the stream still runs;
 * it calls pdl_wait() before it reads anything that kernel wrote, and may do
 * independent work (index math, loading weights) first. Elsewhere (a HIP
 * build, GPUs before Hopper, code from PTX older than sm_90) both are plain
 * launches and no-ops. */
#ifndef FORGE_CUDA_PDL_CUH
#define FORGE_CUDA_PDL_CUH

#include <cuda_runtime.h>

__device__ inline void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Lets the kernel after this one (if launched with pdl_launch) start now;
 * its pdl_wait still waits for this whole kernel to finish. */
__device__ inline void pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

/* Whether launches may overlap (device.cu: set by fcuda_pdl_enable when a
 * context starts, from the device and the code the build has for it). */
extern int fcuda_pdl_enabled;

/* The launch configuration that lets a kernel overlap the previous kernel
 * on the stream where that is safe; attr is its one attribute's storage. */
inline cudaLaunchConfig_t pdl_config(dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                     cudaLaunchAttribute *attr) {
    attr->id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr->val.programmaticStreamSerializationAllowed = fcuda_pdl_enabled;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cfg;
}

/* Launches kernel<<<grid, block, smem, stream>>>(args...) allowed to overlap
 * the previous kernel on the stream. */
template <typename... Params, typename... Args>
cudaError_t pdl_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                       cudaStream_t stream, Args... args) {
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = pdl_config(grid, block, smem, stream, &attr);
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
    return e != cudaSuccess ? e : cudaGetLastError();
}

#endif

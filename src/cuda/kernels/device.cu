/* SPDX-License-Identifier: Apache-2.0 */
/* device.cu: what this build's kernels can do on the current device: whether
 * the build holds code the device runs at all, and whether programmatic
 * dependent launch (pdl.cuh) may overlap kernels. */
#include "kernels.h"
#include "pdl.cuh"

int fcuda_pdl_enabled = 0;

/* Any kernel of the build will do: they are all built for the same
 * architectures (the sm_90a kernels aside, which run only where asked). */
__global__ void image_probe_kernel(void) {}

extern "C" cudaError_t fcuda_device_check(int *ptx_version) {
    cudaFuncAttributes a;
    const cudaError_t e = cudaFuncGetAttributes(&a, image_probe_kernel);
    if (e != cudaSuccess) return e;
    *ptx_version = a.ptxVersion;
    return cudaSuccess;
}

extern "C" void fcuda_pdl_enable(int major, int ptx_version) {
    /* pdl_wait is griddepcontrol.wait only in code compiled for sm_90 or
     * newer; in code from older PTX (JIT-compiled on a Hopper GPU) it is a
     * no-op, and overlapping would let a kernel read what the one before it
     * has not yet written. */
    fcuda_pdl_enabled = major >= 9 && ptx_version >= 90;
}

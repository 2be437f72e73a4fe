/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_errors.c: the messages of failed CUDA and cuBLAS calls, which every
 * file of the backend gives (apart, so that none calls back into another). */
#include "cuda_backend.h"

forge_status cuda_err(const char *where, const char *what, cudaError_t e) {
    return forge_fail(FORGE_ERR_BACKEND, "%s: %s: %s (%s)", where, what, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

forge_status blas_err(const char *where, const char *what, cublasStatus_t e) {
    return forge_fail(FORGE_ERR_BACKEND, "%s: %s: cuBLAS status %d", where, what, (int)e);
}

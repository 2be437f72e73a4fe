/* SPDX-License-Identifier: Apache-2.0 */
/* module.c: the CUDA backend as a module loaded at run time (cuda_load.c):
 * its one exported symbol, and forge_fail forwarded to the core that loaded
 * it, so that messages land in the core's forge_last_error. */
#include <string.h>

#include "cuda_backend.h"

static const forge_module_host *host;

forge_status forge_fail(forge_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    status = host->vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

__attribute__((visibility("default"))) const forge_module *forge_cuda_module(const forge_module_host *h) {
    static const forge_module cuda = {&forge_cuda_backend, forge_cuda_available};
    if (strcmp(h->build_id, FORGE_BUILD_ID) != 0) return NULL;
    host = h;
    return &cuda;
}

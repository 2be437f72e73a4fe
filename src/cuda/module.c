/* SPDX-License-Identifier: Apache-2.0 */
/* module.c: the CUDA backend as a module loaded at run time (cuda_load.c):
 * its one exported symbol, and the core functions it calls, forwarded to
 * the core that loaded it (messages land in the core's forge_last_error). */
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

forge_status forge_paged_step_make(forge_paged_step *step, const forge_layer *layer, const forge_seq *seqs,
                                   int n_seqs) {
    return host->paged_step_make(step, layer, seqs, n_seqs);
}

void forge_paged_step_free(forge_paged_step *step) { host->paged_step_free(step); }

__attribute__((visibility("default"))) const forge_module *forge_cuda_module(const forge_module_host *h) {
    static const forge_module cuda = {&forge_cuda_backend, forge_cuda_available};
    if (strcmp(h->build_id, FORGE_BUILD_ID) != 0) return NULL;
    host = h;
    return &cuda;
}

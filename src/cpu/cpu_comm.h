/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_comm.h: the CPU backend's collectives between the threads of a
 * split model's ranks (cpu_comm.c); backend.h's comm_* and all_* entries. */
#ifndef FORGE_CPU_COMM_H
#define FORGE_CPU_COMM_H

#include "backend.h"

forge_status cpu_comm_create(forge_context **ctxs, int n, void **comms, const char *fn);
void cpu_comm_abort(void *comm);
void cpu_comm_free(void *comm);
forge_status cpu_all_reduce(forge_context *ctx, void *comm, forge_dtype dtype, void *buf, size_t count);
forge_status cpu_all_gather(forge_context *ctx, void *comm, forge_dtype dtype, void *out, const void *in,
                            size_t count);

#endif

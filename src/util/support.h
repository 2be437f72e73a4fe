/* SPDX-License-Identifier: Apache-2.0 */
/* support.h: the rows of the support table (support.c) that the backends
 * look up, for their dispatch checks and messages. */
#ifndef FORGE_SUPPORT_H
#define FORGE_SUPPORT_H

#include <stddef.h>

#include "forge.h"

typedef enum {
    SUPPORT_CPU,        /* every operation on the CPU                  */
    SUPPORT_WGMMA,      /* attention alone, 16-bit layers: Hopper      */
    SUPPORT_MMA,        /* the same: the portable tensor-core kernel   */
    SUPPORT_FLASH_F32,  /* fp32 layers: flash on CUDA cores            */
    SUPPORT_UNFUSED,    /* fp32 layers: the unfused path               */
    SUPPORT_PAGED_MMA,  /* paged attention, 16-bit caches              */
    SUPPORT_PAGED_F32,  /* paged attention, fp32 caches                */
    SUPPORT_ROWS
} forge_support_id;

const forge_support *forge_support_of(forge_support_id id);

/* Whether the row takes head_dim. */
int forge_support_has(forge_support_id id, int head_dim);

/* Whether the row takes the scores' options that a call asks for (a
 * window > 0, a softcap > 0); and FORGE_OK when it does, else
 * FORGE_ERR_UNSUPPORTED naming the first it lacks and the row. */
int forge_support_takes(forge_support_id id, int window, float softcap);
forge_status forge_support_check_options(forge_support_id id, int window, float softcap, const char *fn);

/* The row's head dims as words, "32, 64, 96, 128 and 256", into buf. */
const char *forge_support_dims(forge_support_id id, char *buf, size_t n);

#endif

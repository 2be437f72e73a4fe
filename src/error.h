/* SPDX-License-Identifier: Apache-2.0 */
/* error.h: setting the per-thread error message that forge_last_error() returns. */
#ifndef FORGE_ERROR_H
#define FORGE_ERROR_H

#include "forge.h"

/* Formats the message for forge_last_error() and returns status, so that a
 * failing check reads: return forge_fail(FORGE_ERR_SHAPE, "...", ...); */
forge_status forge_fail(forge_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns FORGE_ERR_INVALID_ARGUMENT naming `what` when p is NULL. */
#define FORGE_CHECK_NOT_NULL(p, fn)                                                          \
    do {                                                                                     \
        if ((p) == NULL)                                                                     \
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, #p);         \
    } while (0)

#endif

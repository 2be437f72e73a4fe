/* SPDX-License-Identifier: Apache-2.0 */
/* error.h: setting the per-thread error message that forge_last_error() returns. */
#ifndef FORGE_ERROR_H
#define FORGE_ERROR_H

#include <stdarg.h>

#include "forge.h"

/* Formats the message for forge_last_error() and returns status, so that a
 * failing check reads: return forge_fail(FORGE_ERR_SHAPE, "...", ...); */
forge_status forge_fail(forge_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

forge_status forge_vfail(forge_status status, const char *fmt, va_list ap);

/* Returns FORGE_ERR_INVALID_ARGUMENT, "fn: name is NULL", when p is NULL;
 * name is the API's own word for it (an argument, or a field of one). */
#define FORGE_CHECK_NAMED(p, name, fn)                                                       \
    do {                                                                                     \
        if ((p) == NULL)                                                                     \
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, name);       \
    } while (0)

/* The same where p is spelt as the API's argument is. */
#define FORGE_CHECK_NOT_NULL(p, fn) FORGE_CHECK_NAMED(p, #p, fn)

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* status.c: the library's version, status strings and the per-thread message
 * of the last failure. */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

static _Thread_local char last_error[512];

#define FORGE_STR_(x) #x
#define FORGE_STR(x) FORGE_STR_(x)

const char *forge_version(void) {
    return FORGE_STR(FORGE_VERSION_MAJOR) "." FORGE_STR(FORGE_VERSION_MINOR) "." FORGE_STR(FORGE_VERSION_PATCH);
}

const char *forge_status_str(forge_status status) {
    switch (status) {
    case FORGE_OK: return "ok";
    case FORGE_ERR_INVALID_ARGUMENT: return "invalid argument";
    case FORGE_ERR_SHAPE: return "shape mismatch";
    case FORGE_ERR_DTYPE: return "dtype mismatch";
    case FORGE_ERR_CAPACITY: return "KV cache capacity exceeded";
    case FORGE_ERR_OUT_OF_MEMORY: return "out of memory";
    case FORGE_ERR_IO: return "I/O error";
    case FORGE_ERR_FORMAT: return "corrupt file";
    case FORGE_ERR_NOT_FOUND: return "not found";
    case FORGE_ERR_UNSUPPORTED: return "unsupported";
    case FORGE_ERR_BACKEND: return "backend failure";
    }
    return "unknown status";
}

const char *forge_last_error(void) { return last_error; }

forge_status forge_vfail(forge_status status, const char *fmt, va_list ap) {
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return status;
}

forge_status forge_fail(forge_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    forge_vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

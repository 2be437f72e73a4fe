/* SPDX-License-Identifier: Apache-2.0 */
/* clock.c: the monotonic wall clock. */
#include <time.h>

#include "clock.h"

double forge_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* clock.h: the monotonic wall clock, a leaf every layer may use. */
#ifndef FORGE_CLOCK_H
#define FORGE_CLOCK_H

/* Microseconds since an arbitrary start. */
double forge_now_us(void);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* testing.h: hooks for the tests only; not part of the public API. */
#ifndef FORGE_TESTING_H
#define FORGE_TESTING_H

#include "forge.h"

/* Makes the given stage of every forward call of this context's backend fail
 * as a device error would (-1: none), to exercise the fallback policy. */
void forge_testing_fail_stage(forge_context *ctx, int stage);

#endif

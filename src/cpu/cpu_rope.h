/* SPDX-License-Identifier: Apache-2.0 */
/* rope.h: rotary position embedding on float32 rows (CPU backend). */
#ifndef FORGE_CPU_ROPE_H
#define FORGE_CPU_ROPE_H

#include "forge.h"

/* cs[0 .. head_dim/2) = cos and cs[head_dim/2 .. head_dim) = sin of the angles
 * pos * inv_freq[i] (forge_rope_inv_freq), computed in double so that large positions keep float32
 * accuracy. */
void cpu_rope_angles(int pos, int head_dim, const double *inv_freq, float *cs);

/* Rotates n_heads consecutive vectors of head_dim floats in place. */
void cpu_rope_rotate(float *x, int n_heads, int head_dim, forge_rope_style style, const float *cs);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* rope.h: rotary position embedding on float32 rows (CPU backend). */
#ifndef FORGE_CPU_ROPE_H
#define FORGE_CPU_ROPE_H

#include "forge.h"

/* inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2, once per layer. */
void cpu_rope_inv_freq(int head_dim, float theta, double *inv_freq);

/* cs[0 .. head_dim/2) = cos and cs[head_dim/2 .. head_dim) = sin of the angles
 * pos * inv_freq[i], computed in double so that large positions keep float32
 * accuracy. */
void cpu_rope_angles(int pos, int head_dim, const double *inv_freq, float *cs);

/* Rotates n_heads consecutive vectors of head_dim floats in place. */
void cpu_rope_rotate(float *x, int n_heads, int head_dim, forge_rope_style style, const float *cs);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* rope.c: rotary position embedding on float32 rows (CPU backend). */
#include <math.h>

#include "cpu_rope.h"

void cpu_rope_angles(int pos, int head_dim, const double *inv_freq, float *cs) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double angle = (double)pos * inv_freq[i];
        cs[i] = (float)cos(angle);
        cs[half + i] = (float)sin(angle);
    }
}

void cpu_rope_rotate(float *x, int n_heads, int head_dim, forge_rope_style style, const float *cs) {
    int half = head_dim / 2;
    const float *cosv = cs, *sinv = cs + half;
    for (int h = 0; h < n_heads; h++, x += head_dim) {
        for (int i = 0; i < half; i++) {
            /* the pair (a, b) rotated by the i-th angle */
            int ia = style == FORGE_ROPE_HALF ? i : 2 * i;
            int ib = style == FORGE_ROPE_HALF ? i + half : 2 * i + 1;
            float a = x[ia], b = x[ib];
            x[ia] = a * cosv[i] - b * sinv[i];
            x[ib] = b * cosv[i] + a * sinv[i];
        }
    }
}

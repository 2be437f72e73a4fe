/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_ops.c: RMSNorm and SwiGLU's gate on float32 rows (CPU backend). */
#include <math.h>

#include "cpu_ops.h"

void cpu_rmsnorm(float *out, const float *x, const float *w, long rows, int dim, float eps) {
    for (long r = 0; r < rows; r++, x += dim, out += dim) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
        const float inv = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++) out[i] = x[i] * inv * w[i];
    }
}

void cpu_silu_mul(float *out, const float *gate_up, long rows, int inter) {
    for (long r = 0; r < rows; r++, gate_up += 2 * (long)inter, out += inter)
        for (int i = 0; i < inter; i++) {
            const float g = gate_up[i];
            out[i] = g / (1.0f + expf(-g)) * gate_up[inter + i];
        }
}

/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_ops.c: projections, RMSNorm and SwiGLU's gate on float32 rows (CPU backend). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu_ops.h"

void cpu_linear(float *y, const float *x, const float *w, const float *bias, long rows, int in, int out) {
    if (bias)
        for (long r = 0; r < rows; r++) memcpy(y + r * out, bias, (size_t)out * sizeof *y);
    const float beta = bias ? 1.0f : 0.0f;
    if (rows > CPU_LINEAR_GEMV_ROWS) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, out, in, 1.0f, x, in, w, in, beta, y, out);
        return;
    }
    long block = CPU_LINEAR_BLOCK_BYTES / ((long)in * (long)sizeof *w);
    block = block < 1 ? 1 : block;
    for (long o = 0; o < out; o += block) {
        const int n = (int)(out - o < block ? out - o : block);
        for (long r = 0; r < rows; r++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, in, 1.0f, w + o * in, in, x + r * in, 1, beta,
                        y + r * out + o, 1);
    }
}

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

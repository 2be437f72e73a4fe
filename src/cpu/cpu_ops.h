/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_ops.h: the CPU backend's row operations of a transformer, on float32:
 * RMSNorm and SwiGLU's gate (cpu_ops.c). */
#ifndef FORGE_CPU_OPS_H
#define FORGE_CPU_OPS_H

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for rows of dim floats (the
 * mean in double); out may be x. */
void cpu_rmsnorm(float *out, const float *x, const float *w, long rows, int dim, float eps);

/* out[r][i] = silu(gate_up[r][i]) * gate_up[r][inter + i]: rows of
 * gate_up hold the gate's inter columns, then up's. */
void cpu_silu_mul(float *out, const float *gate_up, long rows, int inter);

#endif

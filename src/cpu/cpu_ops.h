/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_ops.h: the CPU backend's row operations of a transformer, on float32:
 * projections, RMSNorm and SwiGLU's gate (cpu_ops.c). */
#ifndef FORGE_CPU_OPS_H
#define FORGE_CPU_OPS_H

/* y = x W^T + bias: x [rows, in], W [out, in], y [rows, out]; bias [out] or
 * NULL. OpenBLAS's sgemm first packs W, which costs a decode step (a row or
 * a few, where streaming W once is the whole cost) two more passes over W:
 * up to CPU_LINEAR_GEMV_ROWS rows go through sgemv instead, a block of W's
 * rows at a time, each row of x in turn while the block stays in cache
 * (measured with forge bench model on SmolLM2-135M's shape, 2 cores: 11 tok/s
 * at batch 1 and 26 at batch 4 through sgemm; 27 and 55-60 this way; sgemm
 * wins from 16 rows). */
#define CPU_LINEAR_GEMV_ROWS 8
/* a block split between two threads stays within each core's L2 */
#define CPU_LINEAR_BLOCK_BYTES (512L << 10)
void cpu_linear(float *y, const float *x, const float *w, const float *bias, long rows, int in, int out);

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for rows of dim floats (the
 * mean in double); out may be x. */
void cpu_rmsnorm(float *out, const float *x, const float *w, long rows, int dim, float eps);

/* out[r][i] = silu(gate_up[r][i]) * gate_up[r][inter + i]: rows of
 * gate_up hold the gate's inter columns, then up's. */
void cpu_silu_mul(float *out, const float *gate_up, long rows, int inter);

#endif

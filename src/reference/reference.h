/* SPDX-License-Identifier: Apache-2.0 */
/* reference.h: an independent float64 model of the attention layer (plain
 * loops, no BLAS, no code shared with the backends), the oracle of the tests
 * and of `forge run`. */
#ifndef FORGE_REFERENCE_H
#define FORGE_REFERENCE_H

#include "forge.h"

/* One sequence of n_tokens at positions pos0 .. pos0+n_tokens-1, each token
 * attending to itself and the tokens before it in x: the layer without a
 * cache, or with one when x holds the whole history and pos0 is 0.
 * Weights are float32 (cfg->dtype is ignored); x [n_tokens, hidden];
 * y [n_tokens, hidden] in double; *max_score (if not NULL) the largest
 * |q.k / sqrt(head_dim)| seen. Returns 0, or -1 when out of memory. */
int ref_layer_forward(const forge_layer_config *cfg, const forge_layer_weights *w, const float *x,
                      int n_tokens, int pos0, double *y, double *max_score);

/* Attention alone of one sequence, as forge_attention_forward defines it:
 * q [n, heads, head_dim], k and v [m, kv_heads, head_dim] (float32 values),
 * out [n, heads, head_dim] and lse [heads, lse_stride] (lse may be NULL) in
 * double. With causal, query i sees keys 0 .. m - n + i. */
void ref_attention(const float *q, const float *k, const float *v, int n, int m, int heads, int kv_heads,
                   int head_dim, double scale, int causal, double *out, double *lse, int lse_stride);

/* The same with x in double. */
int ref_layer_forward_d(const forge_layer_config *cfg, const forge_layer_weights *w, const double *x,
                        int n_tokens, int pos0, double *y, double *max_score);

/* RoPE's i-th frequency of a layer (its theta and rope_scaling), and RoPE
 * of one head vector in place at position pos, in double. */
double ref_rope_freq(const forge_layer_config *cfg, int i);
void ref_rope(double *v, const forge_layer_config *cfg, int pos);

/* v[i] = v[i] / sqrt(mean(v^2) + eps) * w[i], in double. */
void ref_rmsnorm(double *v, const float *w, int n, double eps);

#endif

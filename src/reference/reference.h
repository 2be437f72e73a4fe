/* SPDX-License-Identifier: Apache-2.0 */
/* reference.h: an independent float64 model of the attention layer (plain
 * loops, no BLAS, no code shared with the backends), the oracle of the tests
 * and of `forge run`. */
#ifndef FORGE_REFERENCE_H
#define FORGE_REFERENCE_H

#include "forge.h"

/* One sequence of n_tokens at positions pos0 .. pos0+n_tokens-1, each token
 * attending to itself and the tokens before it in x (the last cfg->window
 * of them, itself included, where the layer has a window): the layer without a
 * cache, or with one when x holds the whole history and pos0 is 0.
 * Weights are float32 (cfg->dtype is ignored); x [n_tokens, hidden];
 * y [n_tokens, hidden] in double; *max_score (if not NULL) the largest
 * |q.k / sqrt(head_dim)| seen. Returns 0, or -1 when out of memory. */
int ref_layer_forward(const forge_layer_config *cfg, const forge_layer_weights *w, const float *x,
                      int n_tokens, int pos0, double *y, double *max_score);

/* One sequence's attention as forge_attention_forward defines it: n
 * queries over m keys, query i at key position m - n + i; causal, window and
 * softcap as there. */
typedef struct {
    int n, m;
    int heads, kv_heads, head_dim;
    double scale;
    int causal, window;
    double softcap;
} ref_attention_shape;

/* q [n, heads, head_dim], k and v [m, kv_heads, head_dim] (float32 values),
 * out [n, heads, head_dim] and lse [heads, lse_stride] (lse may be NULL) in
 * double. */
void ref_attention(const ref_attention_shape *s, const float *q, const float *k, const float *v, double *out,
                   double *lse, int lse_stride);

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

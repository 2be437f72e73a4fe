/* SPDX-License-Identifier: Apache-2.0 */
/* ref_model.c: the float64 reference of a whole decoder, plain loops over
 * the definition, each block through ref_layer_forward_d. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_model.h"
#include "reference.h"

/* out[o] = sum_i w[o, i] in[i] for o < n_out. */
static void matvec(double *out, const float *w, const double *in, int n_in, int n_out) {
    for (int o = 0; o < n_out; o++) {
        double acc = 0.0;
        for (int i = 0; i < n_in; i++) acc += (double)w[(size_t)o * n_in + i] * in[i];
        out[o] = acc;
    }
}

int ref_model_forward(const forge_model_config *cfg, const ref_model *w, const int32_t *tokens, int n, double *logits) {
    const int H = cfg->hidden, I = cfg->intermediate;
    forge_layer_config lc = forge_layer_config_default(cfg->hidden, cfg->heads, cfg->kv_heads, cfg->head_dim);
    lc.max_seq = n;
    lc.rope_theta = cfg->rope_theta;
    lc.rope_scaling = cfg->rope_scaling;
    lc.bias = cfg->bias;
    lc.qk_norm = cfg->qk_norm;
    lc.norm_eps = cfg->norm_eps;
    double *x = malloc(sizeof *x * (size_t)n * H), *a = malloc(sizeof *a * (size_t)n * H);
    double *y = malloc(sizeof *y * (size_t)n * H), *g = malloc(sizeof *g * (size_t)I), *u = malloc(sizeof *u * (size_t)I);
    const int ok = x && a && y && g && u;
    for (int t = 0; ok && t < n; t++)
        for (int i = 0; i < H; i++) x[(size_t)t * H + i] = w->embed[(size_t)tokens[t] * H + i];
    int failed = !ok;
    for (int l = 0; !failed && l < cfg->layers; l++) {
        const ref_block *b = &w->blocks[l];
        memcpy(a, x, sizeof *a * (size_t)n * H);
        for (int t = 0; t < n; t++) ref_rmsnorm(a + (size_t)t * H, b->attn_norm, H, cfg->norm_eps);
        lc.window = l >= cfg->max_window_layers ? cfg->sliding_window : 0;
        failed = ref_layer_forward_d(&lc, &b->attn, a, n, 0, y, NULL) != 0;
        for (size_t i = 0; i < (size_t)n * H; i++) x[i] += y[i];
        for (int t = 0; !failed && t < n; t++) {
            double *at = a + (size_t)t * H, *xt = x + (size_t)t * H;
            memcpy(at, xt, sizeof *at * (size_t)H);
            ref_rmsnorm(at, b->mlp_norm, H, cfg->norm_eps);
            matvec(g, b->gate, at, H, I);
            matvec(u, b->up, at, H, I);
            for (int i = 0; i < I; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i]; /* silu(gate) * up */
            matvec(y, b->down, g, I, H);
            for (int i = 0; i < H; i++) xt[i] += y[i];
        }
    }
    for (int t = 0; !failed && t < n; t++) {
        ref_rmsnorm(x + (size_t)t * H, w->final_norm, H, cfg->norm_eps);
        matvec(logits + (size_t)t * cfg->vocab_size, w->lm_head, x + (size_t)t * H, H, cfg->vocab_size);
    }
    free(x);
    free(a);
    free(y);
    free(g);
    free(u);
    return failed ? -1 : 0;
}

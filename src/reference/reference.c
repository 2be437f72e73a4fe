/* SPDX-License-Identifier: Apache-2.0 */
/* reference.c: the float64 reference of the attention layer. Written for
 * clarity, not speed: every stage a plain loop, in the order of the
 * layer's definition (QKV projection, split, RMSNorm of each head of Q and
 * K where asked, RoPE, QK^T, scale, causal mask, softmax, times V,
 * flatten, output projection). */
#include <math.h>
#include <stdlib.h>

#include "reference.h"

double ref_rope_freq(const forge_layer_config *cfg, int i) {
    const double f = 1.0 / pow(cfg->rope_theta, (2.0 * i) / cfg->head_dim);
    const forge_rope_scaling *s = &cfg->rope_scaling;
    if (s->type != FORGE_ROPE_SCALING_LLAMA3) return f;
    /* Llama 3.1: long wavelengths slowed by factor, short ones kept, the
     * band between interpolated on original / wavelength */
    const double wavelength = 2.0 * acos(-1.0) / f;
    const double low = s->original_max_positions / (double)s->low_freq_factor;
    const double high = s->original_max_positions / (double)s->high_freq_factor;
    if (wavelength < high) return f;
    if (wavelength > low) return f / s->factor;
    const double t = (s->original_max_positions / wavelength - s->low_freq_factor) /
                     ((double)s->high_freq_factor - s->low_freq_factor);
    return t * f + (1.0 - t) * f / s->factor;
}

void ref_rope(double *v, const forge_layer_config *cfg, int pos) {
    if (cfg->rope_style == FORGE_ROPE_NONE) return;
    const int half = cfg->head_dim / 2;
    for (int i = 0; i < half; i++) {
        const double angle = pos * ref_rope_freq(cfg, i);
        const double c = cos(angle), s = sin(angle);
        const int a = cfg->rope_style == FORGE_ROPE_HALF ? i : 2 * i;
        const int b = cfg->rope_style == FORGE_ROPE_HALF ? i + half : 2 * i + 1;
        const double va = v[a], vb = v[b];
        v[a] = va * c - vb * s;
        v[b] = vb * c + va * s;
    }
}

void ref_rmsnorm(double *v, const float *w, int n, double eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += v[i] * v[i];
    const double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) v[i] = v[i] * inv * w[i];
}

/* Keys [*first, *end) of m that a query at key position pos sees. */
static void visible_keys(int causal, int window, int pos, int m, int *first, int *end) {
    *end = causal ? (pos + 1 < m ? pos + 1 : m) : m;
    if (*end < 0) *end = 0;
    *first = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
    if (*first > *end) *first = *end;
}

/* A score after soft-capping (cap 0: as it is). */
static double capped(double s, double cap) { return cap > 0 ? cap * tanh(s / cap) : s; }

/* out[o] = sum_i w[o, i] in[i] + bias[o], for o < n_out. */
static void ref_linear(double *out, const float *w, const float *bias, const double *in, int n_in,
                       int n_out) {
    for (int o = 0; o < n_out; o++) {
        double acc = bias ? bias[o] : 0.0;
        for (int i = 0; i < n_in; i++) acc += (double)w[(size_t)o * n_in + i] * in[i];
        out[o] = acc;
    }
}

int ref_layer_forward(const forge_layer_config *cfg, const forge_layer_weights *w, const float *x,
                      int n_tokens, int pos0, double *y, double *max_score) {
    double *xd = malloc(sizeof(double) * (size_t)n_tokens * cfg->hidden + 1);
    if (!xd) return -1;
    for (size_t i = 0; i < (size_t)n_tokens * cfg->hidden; i++) xd[i] = x[i];
    const int r = ref_layer_forward_d(cfg, w, xd, n_tokens, pos0, y, max_score);
    free(xd);
    return r;
}

int ref_layer_forward_d(const forge_layer_config *cfg, const forge_layer_weights *w, const double *x,
                        int n_tokens, int pos0, double *y, double *max_score) {
    const int S = n_tokens, H = cfg->heads, Hk = cfg->kv_heads, D = cfg->head_dim;
    const int hidden = cfg->hidden, group = H / Hk;
    double *xd = malloc(sizeof(double) * hidden);
    double *q = malloc(sizeof(double) * S * H * D);  /* (S, H, D)  */
    double *k = malloc(sizeof(double) * S * Hk * D); /* (S, Hk, D) */
    double *v = malloc(sizeof(double) * S * Hk * D); /* (S, Hk, D) */
    double *o = malloc(sizeof(double) * S * H * D);  /* (S, H*D), flattened heads */
    double *p = malloc(sizeof(double) * S);          /* one row of scores */
    int ok = xd && q && k && v && o && p;
    for (int t = 0; ok && t < S; t++) {
        for (int i = 0; i < hidden; i++) xd[i] = x[(size_t)t * hidden + i];
        ref_linear(q + (size_t)t * H * D, w->q_proj, w->q_bias, xd, hidden, H * D);
        ref_linear(k + (size_t)t * Hk * D, w->k_proj, w->k_bias, xd, hidden, Hk * D);
        ref_linear(v + (size_t)t * Hk * D, w->v_proj, w->v_bias, xd, hidden, Hk * D);
        for (int h = 0; h < H; h++) {
            if (cfg->qk_norm) ref_rmsnorm(q + ((size_t)t * H + h) * D, w->q_norm, D, cfg->norm_eps);
            ref_rope(q + ((size_t)t * H + h) * D, cfg, pos0 + t);
        }
        for (int h = 0; h < Hk; h++) {
            if (cfg->qk_norm) ref_rmsnorm(k + ((size_t)t * Hk + h) * D, w->k_norm, D, cfg->norm_eps);
            ref_rope(k + ((size_t)t * Hk + h) * D, cfg, pos0 + t);
        }
    }
    const double scale = 1.0 / sqrt((double)D);
    double largest = 0.0;
    for (int h = 0; ok && h < H; h++) {
        const int g = h / group; /* the kv head this query head reads */
        for (int i = 0; i < S; i++) {
            const double *qi = q + ((size_t)i * H + h) * D;
            double max = -INFINITY;
            int first, end; /* causal mask: keys j > i are left out; a window, keys j <= i - window */
            visible_keys(1, cfg->window, i, S, &first, &end);
            for (int j = first; j < end; j++) {
                const double *kj = k + ((size_t)j * Hk + g) * D;
                double dot = 0.0;
                for (int d = 0; d < D; d++) dot += qi[d] * kj[d];
                largest = fabs(dot * scale) > largest ? fabs(dot * scale) : largest;
                p[j] = capped(dot * scale, cfg->softcap);
                max = p[j] > max ? p[j] : max;
            }
            double sum = 0.0;
            for (int j = first; j < end; j++) sum += (p[j] = exp(p[j] - max));
            double *oi = o + (size_t)i * H * D + (size_t)h * D;
            for (int d = 0; d < D; d++) {
                double acc = 0.0;
                for (int j = first; j < end; j++) acc += p[j] * v[((size_t)j * Hk + g) * D + d];
                oi[d] = acc / sum;
            }
        }
    }
    for (int t = 0; ok && t < S; t++)
        ref_linear(y + (size_t)t * hidden, w->o_proj, w->o_bias, o + (size_t)t * H * D, H * D,
                   hidden);
    if (max_score) *max_score = largest;
    free(xd);
    free(q);
    free(k);
    free(v);
    free(o);
    free(p);
    return ok ? 0 : -1;
}

void ref_attention(const ref_attention_shape *s, const float *q, const float *k, const float *v, double *out,
                   double *lse, int lse_stride) {
    const int D = s->head_dim, H = s->heads, Hk = s->kv_heads, group = H / Hk;
    for (int h = 0; h < H; h++) {
        const int g = h / group;
        for (int i = 0; i < s->n; i++) {
            const float *qi = q + ((size_t)i * H + h) * D;
            int first, end;
            visible_keys(s->causal, s->window, s->m - s->n + i, s->m, &first, &end);
            double *o = out + ((size_t)i * H + h) * D;
            for (int d = 0; d < D; d++) o[d] = 0.0;
            double max = -INFINITY, sum = 0.0;
            for (int pass = 0; pass < 2; pass++) /* the largest score, then the weighted sum */
                for (int j = first; j < end; j++) {
                    const float *kj = k + ((size_t)j * Hk + g) * D;
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += (double)qi[d] * kj[d];
                    const double score = capped(dot * s->scale, s->softcap);
                    if (pass == 0) {
                        max = score > max ? score : max;
                        continue;
                    }
                    const double p = exp(score - max);
                    sum += p;
                    for (int d = 0; d < D; d++) o[d] += p * v[((size_t)j * Hk + g) * D + d];
                }
            for (int d = 0; d < D && end > first; d++) o[d] /= sum;
            if (lse) lse[(size_t)h * lse_stride + i] = end > first ? max + log(sum) : -INFINITY;
        }
    }
}

/* SPDX-License-Identifier: Apache-2.0 */
/* testdata.c: seeded random data (splitmix64, Box-Muller) and error measures. */
#include <math.h>
#include <stdlib.h>

#include "testdata.h"

ref_rng ref_rng_seed(uint64_t seed) {
    ref_rng r = {seed * 0x9e3779b97f4a7c15ull + 1};
    return r;
}

static uint64_t next_u64(ref_rng *r) { /* splitmix64 */
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double ref_rng_uniform(ref_rng *r) { return (next_u64(r) >> 11) * 0x1p-53; }

double ref_rng_normal(ref_rng *r) {
    double u = 1.0 - ref_rng_uniform(r); /* (0, 1]: log stays finite */
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * ref_rng_uniform(r));
}

void ref_rng_fill(ref_rng *r, float *dst, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)(scale * ref_rng_normal(r));
}

void ref_random_layer_free(ref_random_layer *l) {
    float *arrays[] = {l->q_proj, l->k_proj, l->v_proj, l->o_proj,
                       l->q_bias, l->k_bias, l->v_bias, l->o_bias};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) free(arrays[i]);
    for (int i = 0; i < 8; i++) free(l->narrow[i]);
    *l = (ref_random_layer){0};
}

/* n floats of deviation scale, or NULL when `want` is 0 (and *ok kept). */
static float *random_array(ref_rng *r, size_t n, double scale, int want, int *ok) {
    if (!want) return NULL;
    float *a = malloc(n * sizeof *a);
    if (!a) *ok = 0;
    else ref_rng_fill(r, a, n, scale);
    return a;
}

int ref_random_layer_make(ref_random_layer *l, const forge_layer_config *cfg, uint64_t seed) {
    ref_rng r = ref_rng_seed(seed);
    size_t hidden = (size_t)cfg->hidden, q_out = (size_t)cfg->heads * cfg->head_dim,
           kv_out = (size_t)cfg->kv_heads * cfg->head_dim;
    int ok = 1;
    *l = (ref_random_layer){0};
    l->q_proj = random_array(&r, q_out * hidden, 1.0 / sqrt((double)hidden), 1, &ok);
    l->k_proj = random_array(&r, kv_out * hidden, 1.0 / sqrt((double)hidden), 1, &ok);
    l->v_proj = random_array(&r, kv_out * hidden, 1.0 / sqrt((double)hidden), 1, &ok);
    l->o_proj = random_array(&r, hidden * q_out, 1.0 / sqrt((double)q_out), 1, &ok);
    l->q_bias = random_array(&r, q_out, 0.1, cfg->bias & FORGE_BIAS_Q, &ok);
    l->k_bias = random_array(&r, kv_out, 0.1, cfg->bias & FORGE_BIAS_K, &ok);
    l->v_bias = random_array(&r, kv_out, 0.1, cfg->bias & FORGE_BIAS_V, &ok);
    l->o_bias = random_array(&r, hidden, 0.1, cfg->bias & FORGE_BIAS_O, &ok);
    if (!ok) {
        ref_random_layer_free(l);
        return -1;
    }
    l->w = (forge_layer_weights){l->q_proj, l->k_proj, l->v_proj, l->o_proj,
                                 l->q_bias, l->k_bias, l->v_bias, l->o_bias, NULL, NULL};
    l->model = l->w;
    if (cfg->dtype == FORGE_F32) return 0;
    /* the model in the layer's dtype, and the floats rounded to its values */
    float *arrays[8] = {l->q_proj, l->k_proj, l->v_proj, l->o_proj, l->q_bias, l->k_bias, l->v_bias, l->o_bias};
    const size_t sizes[8] = {q_out * hidden, kv_out * hidden, kv_out * hidden, hidden * q_out,
                             q_out, kv_out, kv_out, hidden};
    const void **w[8] = {&l->model.q_proj, &l->model.k_proj, &l->model.v_proj, &l->model.o_proj,
                         &l->model.q_bias, &l->model.k_bias, &l->model.v_bias, &l->model.o_bias};
    for (int i = 0; i < 8; i++) {
        if (!arrays[i]) continue;
        void *narrow = malloc(sizes[i] * forge_dtype_size(cfg->dtype));
        if (!narrow || forge_convert(narrow, cfg->dtype, arrays[i], FORGE_F32, sizes[i]) != FORGE_OK ||
            forge_convert(arrays[i], FORGE_F32, narrow, cfg->dtype, sizes[i]) != FORGE_OK) {
            free(narrow);
            ref_random_layer_free(l);
            return -1;
        }
        *w[i] = l->narrow[i] = narrow;
    }
    return 0;
}

ref_error ref_compare(const float *got, const double *want, size_t n) {
    ref_error e = {0};
    double diff2 = 0.0, want2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            e.nonfinite++;
            continue;
        }
        double d = fabs((double)got[i] - want[i]);
        e.max_abs = d > e.max_abs ? d : e.max_abs;
        diff2 += d * d;
        want2 += want[i] * want[i];
    }
    e.rel_l2 = want2 > 0.0 ? sqrt(diff2 / want2) : sqrt(diff2);
    return e;
}

double ref_tolerance(forge_dtype dtype) {
    switch (dtype) {
    case FORGE_F32: return 1e-5; /* float32 rounding through two GEMMs and a softmax */
    case FORGE_F16: return 5e-3;
    case FORGE_BF16: return 1e-2;
    }
    return 0.0;
}

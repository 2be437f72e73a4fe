/* SPDX-License-Identifier: Apache-2.0 */
/* test_rope.c: RoPE against its closed form, at positions up to 2^24 - 1.
 *
 * The closed form rotates pair i by pos * theta^(-2i/d) in long double. The
 * CPU backend computes its angles in double, so a float32 result must stay
 * within a few float32 ulps of it even where pos * freq is in the millions
 * of radians (an angle computed in float32 would be off by about 0.1 rad). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_rope.h"
#include "reference.h"
#include "rope_freq.h"
#include "test_util.h"

static void closed_form(long double *out, const float *x, int d, long pos, long double theta,
                        forge_rope_style style) {
    for (int i = 0; i < d / 2; i++) {
        long double angle = (long double)pos * powl(theta, -2.0L * i / d);
        int a = style == FORGE_ROPE_HALF ? i : 2 * i, b = style == FORGE_ROPE_HALF ? i + d / 2 : 2 * i + 1;
        out[a] = x[a] * cosl(angle) - x[b] * sinl(angle);
        out[b] = x[b] * cosl(angle) + x[a] * sinl(angle);
    }
}

static void test_rope_closed_form(void **state) {
    const long positions[] = {0, 1, 7, 4095, 65536, 1000003, 16777215};
    const int dims[] = {2, 32, 128, 256};
    const forge_rope_style styles[] = {FORGE_ROPE_HALF, FORGE_ROPE_INTERLEAVED};
    const float thetas[] = {10000.0f, 500000.0f};
    for (size_t s = 0; s < 2; s++)
        for (size_t t = 0; t < 2; t++)
            for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
                for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
                    const int d = dims[di];
                    float *x = tl_random((size_t)d, 7 * p + di, 1.0), *y = malloc(sizeof *y * d);
                    float cs[256];
                    double inv_freq[128], yd[256];
                    long double want[256];
                    memcpy(y, x, sizeof *y * d);
                    forge_layer_config cfg = forge_layer_config_default(d, 1, 1, d);
                    cfg.rope_theta = thetas[t], cfg.rope_style = styles[s];
                    forge_rope_inv_freq(&cfg, inv_freq);
                    cpu_rope_angles((int)positions[p], d, inv_freq, cs);
                    cpu_rope_rotate(y, 1, d, styles[s], cs);
                    closed_form(want, x, d, positions[p], thetas[t], styles[s]);
                    for (int i = 0; i < d; i++) yd[i] = x[i];
                    ref_rope(yd, &cfg, (int)positions[p]);
                    for (int i = 0; i < d; i++) {
                        /* |x| <= ~5, so a few float32 ulps of 5 */
                        if (fabsl(y[i] - want[i]) > 4e-6L)
                            fail_msg("cpu rope d %d pos %ld style %d: [%d] = %.9g, closed form %.9Lg",
                                     d, positions[p], (int)styles[s], i, y[i], want[i]);
                        /* a double angle of pos radians is good to about pos * 2^-53 */
                        if (fabsl(yd[i] - want[i]) > 1e-12L + 1e-15L * positions[p])
                            fail_msg("reference rope d %d pos %ld: [%d] = %.12g, closed form %.12Lg",
                                     d, positions[p], i, yd[i], want[i]);
                    }
                    free(x);
                    free(y);
                }
}

/* The property RoPE exists for: q.k after rotation depends only on the
 * distance between the positions. */
static void test_rope_relative(void **state) {
    const int d = 64;
    float *q = tl_random(d, 1, 1.0), *k = tl_random(d, 2, 1.0);
    double inv_freq[32];
    const forge_layer_config cfg = forge_layer_config_default(d, 1, 1, d);
    forge_rope_inv_freq(&cfg, inv_freq);
    double base = 0.0;
    const int starts[] = {0, 100, 70000, 3000000};
    for (int s = 0; s < 4; s++) {
        float qr[64], kr[64], cs[64];
        memcpy(qr, q, sizeof qr);
        memcpy(kr, k, sizeof kr);
        cpu_rope_angles(starts[s] + 5, d, inv_freq, cs);
        cpu_rope_rotate(qr, 1, d, FORGE_ROPE_HALF, cs);
        cpu_rope_angles(starts[s], d, inv_freq, cs);
        cpu_rope_rotate(kr, 1, d, FORGE_ROPE_HALF, cs);
        double dot = 0.0;
        for (int i = 0; i < d; i++) dot += (double)qr[i] * kr[i];
        if (s == 0) base = dot;
        else if (fabs(dot - base) > 1e-4) fail_msg("q.k at distance 5 from %d: %g, from 0: %g", starts[s], dot, base);
    }
    free(q);
    free(k);
}

/* Llama 3.1's frequency scaling, the library's against the reference's
 * (written apart), and against the rule itself: the highest frequencies
 * kept, the lowest divided by the factor, none faster than unscaled. */
static void test_rope_llama3_scaling(void **state) {
    (void)state;
    forge_layer_config cfg = forge_layer_config_default(4096, 32, 8, 128);
    cfg.rope_theta = 500000.0f;
    cfg.rope_scaling = (forge_rope_scaling){FORGE_ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 8192};
    assert_int_equal(forge_layer_config_check(&cfg), FORGE_OK);
    double got[64];
    forge_rope_inv_freq(&cfg, got);
    int kept = 0, divided = 0, blended = 0;
    for (int i = 0; i < 64; i++) {
        const double want = ref_rope_freq(&cfg, i), plain = pow(500000.0, -2.0 * i / 128);
        if (fabs(got[i] - want) > 1e-12 * want) fail_msg("inv_freq[%d] = %.17g, reference %.17g", i, got[i], want);
        if (got[i] > plain * (1 + 1e-12)) fail_msg("inv_freq[%d] = %g is above unscaled %g", i, got[i], plain);
        kept += fabs(got[i] - plain) <= 1e-15 * plain;
        divided += fabs(got[i] - plain / 8) <= 1e-15 * plain;
        blended += got[i] < plain * (1 - 1e-12) && got[i] > plain / 8 * (1 + 1e-12);
    }
    /* at this shape all three bands are populated */
    if (!kept || !divided || !blended) fail_msg("bands: %d kept, %d divided, %d blended", kept, divided, blended);
    cfg.rope_scaling.high_freq_factor = 0.5f; /* below low_freq_factor */
    assert_int_equal(forge_layer_config_check(&cfg), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "rope_scaling"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_closed_form),
        cmocka_unit_test(test_rope_relative),
        cmocka_unit_test(test_rope_llama3_scaling),
    };
    return cmocka_run_group_tests_name("rope", tests, NULL, NULL);
}

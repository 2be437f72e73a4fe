/* SPDX-License-Identifier: Apache-2.0 */
/* rope_freq.c: RoPE's frequencies, with Llama 3.1's scaling: a frequency
 * whose wavelength is longer than original / low_freq_factor positions is
 * divided by factor, one shorter than original / high_freq_factor is kept,
 * and those between blend the two by where the wavelength falls (as
 * transformers' _compute_llama3_parameters). */
#include <math.h>

#include "rope_freq.h"

void forge_rope_inv_freq(const forge_layer_config *cfg, double *inv_freq) {
    const int half = cfg->head_dim / 2;
    const forge_rope_scaling *s = &cfg->rope_scaling;
    for (int i = 0; i < half; i++) {
        double f = pow((double)cfg->rope_theta, -2.0 * i / cfg->head_dim);
        if (s->type == FORGE_ROPE_SCALING_LLAMA3) {
            const double wavelen = 6.283185307179586 / f, original = s->original_max_positions;
            if (wavelen > original / s->low_freq_factor) {
                f /= s->factor;
            } else if (wavelen >= original / s->high_freq_factor) {
                const double smooth = (original / wavelen - s->low_freq_factor) / (s->high_freq_factor - s->low_freq_factor);
                f = (1 - smooth) * f / s->factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

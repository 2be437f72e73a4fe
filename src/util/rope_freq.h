/* SPDX-License-Identifier: Apache-2.0 */
/* rope_freq.h: RoPE's frequencies of a layer (a leaf). */
#ifndef FORGE_ROPE_FREQ_H
#define FORGE_ROPE_FREQ_H

#include "forge.h"

/* inv_freq[i] for i < head_dim / 2: theta^(-2i / head_dim), scaled as
 * cfg->rope_scaling says, in double. */
void forge_rope_inv_freq(const forge_layer_config *cfg, double *inv_freq);

#endif

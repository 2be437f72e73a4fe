/* SPDX-License-Identifier: Apache-2.0 */
/* ref_model.h: an independent float64 model of a whole decoder (token
 * embedding, blocks of RMSNorm, the attention layer of reference.c and a
 * SwiGLU MLP, a final norm and the LM head), the oracle of the model tests. */
#ifndef FORGE_REF_MODEL_H
#define FORGE_REF_MODEL_H

#include <stdint.h>

#include "forge.h"

typedef struct {
    const float *attn_norm, *mlp_norm; /* [hidden]                        */
    forge_layer_weights attn;          /* float32, as the layer takes them */
    const float *gate, *up;            /* [intermediate, hidden]           */
    const float *down;                 /* [hidden, intermediate]           */
} ref_block;

typedef struct {
    const float *embed;      /* [vocab, hidden]                 */
    const float *final_norm; /* [hidden]                        */
    const float *lm_head;    /* [vocab, hidden]; embed when tied */
    const ref_block *blocks; /* [layers]                        */
} ref_model;

/* logits [n, vocab] (double) of every token of one sequence from position
 * 0. Returns 0, or -1 when out of memory. */
int ref_model_forward(const forge_model_config *cfg, const ref_model *w, const int32_t *tokens, int n, double *logits);

#endif
